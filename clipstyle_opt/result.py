"""What a stylization gives back: the per-step record (`StepInfo`), the finished `Result`, and saving it."""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Optional

import torch
from PIL import Image

from .config import StyleConfig
from .imageio import save_image, to_pil
from .objective.guidance import Guidance
from .objective.style_objective import TERM_NAMES
from .unet.io import save_unet
from .unet.model import StyleUNet


@dataclass
class StepInfo:
    """What a callback receives after each optimizer step.

    step: 1-based, counting a coarse phase's steps first (``coarse_steps``); steps: all steps of the run,
    coarse ones included; terms: unweighted loss terms and ``total`` (floats);
    output: the current phase's training-size output (1, 3, h, w) in [0, 1], detached (smaller during a
    coarse phase).
    """

    step: int
    steps: int
    terms: dict[str, float]
    lr: float
    seconds: float
    output: torch.Tensor


@dataclass
class Result:
    """A finished stylization.

    tensor: (1, 3, H, W) float32 in [0, 1] on the CPU, at the output size.
    history: one dict per step (loss terms, total, lr, seconds).
    timings: seconds for prepare, train, apply and the median step.
    """

    tensor: torch.Tensor
    prompt: str
    config: StyleConfig
    history: list[dict[str, float]]
    timings: dict[str, float]
    unet: StyleUNet
    content_path: Optional[str] = None
    style_path: Optional[str] = None
    device: str = "cpu"
    precision: str = "fp32"
    training_size: tuple[int, int] = (0, 0)
    extra: dict[str, Any] = field(default_factory=dict)
    guidance: Optional[Guidance] = None
    mask: Optional[torch.Tensor] = None
    """(1, 1, H, W) in [0, 1] at the output size: the mask the output was composited with (None: no mask)."""
    focus_map: Optional[torch.Tensor] = None
    """(1, 1, H, W) in [0, 1] at the output size: the ``focus`` text's relevance map (None without focus)."""
    threads: int = 0
    """Torch CPU threads the run used (``threads`` setting, else torch's default); 0: not recorded."""
    hardware: str = ""
    """The CPU model or GPU name that computed it (`clipstyle_opt.devices.hardware_name`)."""

    @property
    def image(self) -> Image.Image:
        """The result as an 8-bit RGB PIL image."""
        return to_pil(self.tensor)

    def metadata(self) -> dict[str, Any]:
        """Everything needed to know how this image was made (goes into PNG chunks and the sidecar)."""
        last = self.history[-1] if self.history else {}
        return {
            "tool": "clipstyle_opt",
            "prompt": self.prompt,
            "content": self.content_path,
            "style_image": self.style_path,
            "seed": self.config.seed,
            "config": self.config.to_dict(),
            "device": self.device,
            "precision": self.precision,
            # the same seed gives the same bits only with the same threads on the same kind of machine
            "threads": self.threads,
            "hardware": self.hardware,
            "training_size": list(self.training_size),
            "output_size": [int(self.tensor.shape[-2]), int(self.tensor.shape[-1])],
            "final_losses": {k: last.get(k) for k in (*TERM_NAMES, "total") if k in last},
            "timings": self.timings,
            "versions": package_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **(self.guidance.metadata() if self.guidance is not None else {}),
            **self.extra,
        }

    def save(self, path: str | Path, *, overwrite: bool = False, sidecar: bool = True) -> Path:
        """Write the image (format by extension) with metadata and a JSON sidecar; refuses to overwrite.

        With a focus map, it is written beside the image as `focus_map_path` (a grey PNG, white = styled).
        """
        written = save_image(self.tensor, path, self.metadata(), overwrite=overwrite, sidecar=sidecar)
        if self.focus_map is not None:
            save_image(self.focus_map.expand(1, 3, -1, -1), focus_map_path(written),
                       {"focus": self.guidance.focus if self.guidance else None, "image": str(written)},
                       overwrite=overwrite, sidecar=False)
        return written

    def save_unet(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Save the trained U-Net so `clipstyle_opt.apply_unet_file` can restyle other images later."""
        return save_unet(self.unet, path, self.metadata(), overwrite=overwrite)


def focus_map_path(image_path: str | Path) -> Path:
    """Where `Result.save` puts the focus map: ``out.png`` -> ``out_focus.png``."""
    path = Path(image_path)
    return path.with_name(f"{path.stem}_focus.png")


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a result."""
    versions = {"python": platform.python_version()}
    for dist in ("clipstyle_opt", "torch", "torchvision", "kornia", "clip-anytorch", "numpy", "pillow"):
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


__all__ = ["Result", "StepInfo", "focus_map_path", "package_versions"]
