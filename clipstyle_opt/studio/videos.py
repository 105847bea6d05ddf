"""A saved U-Net applied to an uploaded video, as ``clipstyle apply unet.pt clip.mp4 -o out.mp4`` does (every
frame at its own size, the same frame rate and timestamps, audio kept), with the upload bounded like a photo:
in bytes (the studio's limit) and in pixels per frame (``$CLIPSTYLE_MAX_PIXELS``, from the header before any
frame is decoded). Needs PyAV (the ``video`` extra); without it, one line says how to install it. Nothing here
imports gradio."""
from __future__ import annotations

import uuid
from pathlib import Path

import torch

from ..devices import resolve_device
from ..errors import ConfigError, ImageReadError
from ..imageio import MAX_PIXELS_ENV, max_pixels
from ..sizing import OutputSize, target_hw
from ..unet.io import load_unet, training_size_of
from ..unet.restyle import Restyler
from ..unet.video import OUTPUT_SUFFIXES, VIDEO_SUFFIXES, import_av, probe, stylize_video
from .security import UploadLimits


def check_video_upload(path: str | Path | None, limits: UploadLimits) -> Path:
    """The uploaded video at ``path`` once its suffix, size in bytes and frame size in pixels are within bounds and
    PyAV reads its header; else a one-line error that names "the video", not the server's temporary path."""
    if path is None or str(path) == "":
        raise ImageReadError("give a video")
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ConfigError(f"the video must be one of {', '.join(VIDEO_SUFFIXES)}, got {path.suffix or 'no suffix'}")
    import_av()  # the install hint before anything else about the file
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise ImageReadError(f"video too large: {size:,} bytes, over the studio's limit of {limits.max_bytes:,} "
                             "bytes (clipstyle serve --max-upload-mb)")
    try:
        info = probe(path)
    except ImageReadError as exc:
        raise ImageReadError(str(exc).replace(str(path), "the video")) from None
    if info.width * info.height > max_pixels():
        raise ImageReadError(f"video too large: its frames are {info.width}x{info.height} = "
                             f"{info.width * info.height:,} px, over the limit of {max_pixels():,} px "
                             f"({MAX_PIXELS_ENV})")
    return path


def restyle_video(unet: str | Path, video: str | Path, output_dir: str | Path, limits: UploadLimits,
                  device: str = "auto") -> Path:
    """Write ``video`` restyled by the saved U-Net ``unet`` (read with weights_only) into ``output_dir`` as
    ``<video>_<unet>[-<id>].mp4`` (a new name, never overwriting); returns its path."""
    source = check_video_upload(video, limits)
    model, metadata = load_unet(unet)
    info = probe(source)
    hw = target_hw(info.height, info.width, OutputSize())
    torch_device: torch.device = resolve_device(device)
    restyler = Restyler(model, OutputSize(), device=torch_device, training_size=training_size_of(metadata))
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = source.suffix.lower() if source.suffix.lower() in OUTPUT_SUFFIXES else ".mp4"
    target = folder / f"{source.stem}_{Path(unet).name.split('.')[0]}-{uuid.uuid4().hex[:8]}{suffix}"
    stylize_video(source, target, restyler.image, hw)
    return target


__all__ = ["check_video_upload", "restyle_video"]
