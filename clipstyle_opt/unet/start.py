"""Where a run's U-Net starts: random weights (the paper's), the shipped identity weights, or a U-Net file.

``init`` (`StyleConfig.init`):

- "random": `seeded_unet`, fresh weights from the seed, as CLIPstyler (bit for bit the old behaviour);
- "identity": the bundled ``identity_init.pt``, a U-Net trained offline to reproduce its input
  (microclip/train_identity_init.py, records in microclip/README): the run starts with the photo's
  content in place and spends its steps on the style;
- a path: a U-Net saved by ``clipstyle stylize --save-unet`` (or the trainer), continued from.

deviation: CLIPstyler always starts from random weights; "identity" and a path are ours (docs/method.md).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .io import load_unet
from .model import StyleUNet, seeded_unet

IDENTITY_INIT = Path(__file__).with_name("identity_init.pt")
"""The shipped identity weights (fp16, `clipstyle_opt.unet.io.save_unet`'s format, about 1.2 MB)."""

INIT_KINDS = ("random", "identity")
"""The named starts; any other value of ``init`` is a U-Net file."""

EXACT_IDENTITY_NOTE = """The degenerate start (issue 38, benchmarks/bench_first_steps.py): at an exact identity the global
directional loss 1 - cos(E_I(output) - E_I(photo), dT) has no direction, and the gradient torch's cosine gives
there (its eps 1e-8 in the denominator) is huge: 2.9e9 against the patch term's 490 on a held-out photo at
128 px, enough to fill Adam's second moments and freeze the run. The shipped start is not exact: it reproduces
photos with a mean error of about 0.025 (pixel units), and that error alone gives the directional term a
gradient in the range of the others (180, against 460 for the patch and 1300 for the content term), and the
output moves as steadily from step 2 as from a random start. So nothing is added: no perturbation (1e-3 on the
last layer changed nothing measurable, 1e-2 only the starting error) and no warm-up."""


def init_path(init: str) -> Path:
    """The file an ``init`` value loads from (`IDENTITY_INIT` for "identity"); ConfigError for "random"."""
    if init == "random":
        raise ConfigError("init 'random' loads no file")
    return IDENTITY_INIT if init == "identity" else Path(init).expanduser()


def starting_unet(width: int, seed: int, init: str = "random") -> tuple[StyleUNet, dict[str, Any]]:
    """The U-Net a run starts from, and what to record about it (empty for "random").

    width: the U-Net's base width (`StyleConfig.unet_width`); a loaded start must have the same.
    seed: seeds the random weights; a loaded start is the file's weights as they are (`EXACT_IDENTITY_NOTE`
        says why no seeded perturbation is added), so the seed changes only the crops.
    Raises `ImageReadError` for a missing or foreign file, `ConfigError` for a width mismatch.
    """
    if init == "random":
        return seeded_unet(width, seed), {}
    path = init_path(init)
    unet, _ = load_unet(path)
    if unet.width != width:
        raise ConfigError(f"init: the U-Net in {path} has width {unet.width}, but unet_width is {width}; "
                          f"set --unet-width {unet.width}", "init")
    unet = unet.float().train()  # the file is fp16; the run trains fp32 weights
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return unet, {"init": {"kind": init if init in INIT_KINDS else "file", "file": str(path), "sha256": digest}}


__all__ = ["IDENTITY_INIT", "INIT_KINDS", "init_path", "starting_unet"]
