"""Saving a trained U-Net with the metadata of its run, and loading one back (never running code from the file)."""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import ImageReadError, first_line
from ..imageio import atomic_write, check_output_file
from .model import StyleUNet

UNET_FORMAT = "clipstyle_opt.unet.model/1"
"""The ``format`` tag of a saved U-Net file; `load_unet` reads this version only."""


def save_unet(unet: StyleUNet, path: str | Path, metadata: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Save U-Net weights with the metadata of the run that trained them (atomic, no overwrite by default)."""
    path = check_output_file(path, overwrite, create_dirs=True)
    payload = {"format": UNET_FORMAT, "width": unet.width,
               "state_dict": {k: v.detach().cpu() for k, v in unet.state_dict().items()}, "metadata": metadata}
    buffer = io.BytesIO()  # serialized in memory, so a failing disk write is a plain OSError
    torch.save(payload, buffer)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
    return path


def load_unet(path: str | Path) -> tuple[StyleUNet, dict[str, Any]]:
    """A U-Net saved by `save_unet`, in eval mode, with its metadata.

    Never runs code from the file: it is read with ``torch.load(weights_only=True)``,
    which admits tensors and plain containers only. A missing, empty, corrupt or
    foreign file, or one from another format version, raises a one-line `ImageReadError`.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"U-Net file not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"expected a U-Net file, got a directory: {path}")
    if path.stat().st_size == 0:
        raise ImageReadError(f"U-Net file is empty (0 bytes): {path}")
    try:
        with warnings.catch_warnings():  # torch's notes on unusual pickle protocols: the error below says it all
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError (code or foreign objects refused), RuntimeError (damaged zip), ...
        raise ImageReadError(f"not a clipstyle U-Net file, or a damaged one: {path} "
                             f"({type(exc).__name__}: {first_line(exc)[:120]})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("format"), str) \
            or not payload["format"].startswith("clipstyle_opt.unet.model/"):
        raise ImageReadError(f"not a clipstyle U-Net file: {path} (saved by `clipstyle stylize --save-unet`?)")
    if payload["format"] != UNET_FORMAT:
        raise ImageReadError(f"{path} is a U-Net of another clipstyle_opt version (format {payload['format']!r}); "
                             f"this version reads {UNET_FORMAT!r}: retrain it with this version or use the one that "
                             "saved it")
    try:
        unet = StyleUNet(int(payload["width"]))
        unet.load_state_dict(payload["state_dict"])
    except Exception as exc:  # missing keys, wrong shapes, a bad width
        raise ImageReadError(f"the U-Net in {path} does not fit this version's network "
                             f"({type(exc).__name__}: {first_line(exc)[:120]})") from None
    metadata = payload.get("metadata", {})
    return unet.eval(), metadata if isinstance(metadata, dict) else {}


def training_size_of(metadata: dict) -> Optional[int]:
    """The training long side in px recorded in a saved U-Net's metadata (`save_unet`), or None."""
    size = (metadata.get("config") or {}).get("size") if isinstance(metadata, dict) else None
    return size if isinstance(size, int) and size >= 8 else None


__all__ = ["UNET_FORMAT", "load_unet", "save_unet", "training_size_of"]
