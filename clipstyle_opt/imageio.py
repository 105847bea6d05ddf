"""Reading images safely and writing results atomically with their metadata.

Tensors at this boundary are (1, 3, H, W) float32 RGB in [0, 1].
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError
from torch.nn import functional as F

from .errors import ConfigError, ImageReadError, OutputExistsError

ImageSource = Union[str, os.PathLike, Image.Image, torch.Tensor, np.ndarray]
MAX_PIXELS = 200_000_000
"""Refuse images larger than this many pixels (about 14k x 14k) before decoding them."""
WRITABLE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> HxWx3 float32 in [0, 1]; alpha is composited onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float32)
        scale = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(values / scale, 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def read_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file with EXIF orientation applied; one-line `ImageReadError` on failure."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"image not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"expected an image file, got a directory: {path}")
    try:
        with Image.open(path) as opened:
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise ImageReadError(f"image too large: {path} is {width}x{height} px (limit {MAX_PIXELS:,} px)")
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except UnidentifiedImageError:
        raise ImageReadError(f"not a readable image: {path}") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"image too large to decode safely: {path}") from None
    except OSError as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from None
    return image


def load_image(source: ImageSource) -> torch.Tensor:
    """Path, PIL image, HxWx3 array or tensor -> (1, 3, H, W) float32 in [0, 1].

    Tensors may be (3, H, W) or (1, 3, H, W), float in [0, 1] or uint8.
    """
    if isinstance(source, torch.Tensor):
        tensor = source.detach()
        if tensor.ndim == 3:
            tensor = tensor.unsqueeze(0)
        if tensor.ndim != 4 or tensor.shape[0] != 1 or tensor.shape[1] != 3:
            raise ImageReadError(f"image tensor must be (3, H, W) or (1, 3, H, W), got {tuple(source.shape)}")
        if tensor.dtype == torch.uint8:
            return tensor.float().div(255.0).cpu()
        tensor = tensor.float().cpu()
        if tensor.min() < 0 or tensor.max() > 1:
            raise ImageReadError("float image tensors must hold values in [0, 1]")
        return tensor
    if isinstance(source, np.ndarray):
        return load_image(torch.from_numpy(np.ascontiguousarray(source)).permute(2, 0, 1))
    image = source if isinstance(source, Image.Image) else read_image(source)
    array = _pil_to_array(image)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> 8-bit RGB PIL image."""
    if tensor.ndim == 4:
        tensor = tensor[0]
    array = tensor.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


def fit_size(height: int, width: int, long_side: int, multiple: int = 8) -> tuple[int, int]:
    """(height, width) scaled so the long side is ``long_side``, each rounded to a multiple of ``multiple`` (>= multiple)."""
    scale = long_side / max(height, width)
    return (max(multiple, round(height * scale / multiple) * multiple),
            max(multiple, round(width * scale / multiple) * multiple))


def resize(image: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of an NCHW image (antialiased when shrinking), clamped to [0, 1]."""
    if tuple(image.shape[-2:]) == tuple(size_hw):
        return image
    shrinking = size_hw[0] < image.shape[-2] or size_hw[1] < image.shape[-1]
    out = F.interpolate(image, size=size_hw, mode="bicubic", align_corners=False, antialias=shrinking)
    return out.clamp(0.0, 1.0)


def sidecar_path(image_path: str | os.PathLike) -> Path:
    """The JSON sidecar beside an output image: ``out.png`` -> ``out.json``."""
    return Path(image_path).with_suffix(".json")


def check_writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """Validate an output path's format and refuse existing files unless ``overwrite``."""
    path = Path(path)
    if path.suffix.lower() not in WRITABLE_SUFFIXES:
        raise ConfigError(f"output must end in one of {', '.join(WRITABLE_SUFFIXES)}: {path}")
    if not overwrite:
        for existing in (path, sidecar_path(path)):
            if existing.exists():
                raise OutputExistsError(f"{existing} exists; pass --overwrite (overwrite=True) to replace it")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_image(image: torch.Tensor | Image.Image, path: str | os.PathLike, metadata: dict[str, Any] | None = None,
               *, overwrite: bool = False, sidecar: bool = True, quality: int = 95) -> Path:
    """Write an image (PNG, JPEG or WebP by extension) and its JSON sidecar, atomically.

    PNG files also carry the metadata as text chunks: ``clipstyle`` (all of it
    as JSON), ``prompt`` and ``config``. JPEG files carry it as a comment.
    """
    path = check_writable(path, overwrite)
    pil = image if isinstance(image, Image.Image) else to_pil(image)
    fmt = WRITABLE_SUFFIXES[path.suffix.lower()]
    metadata = metadata or {}
    blob = json.dumps(metadata, sort_keys=True, default=str)

    def write_image(tmp: str) -> None:
        if fmt == "PNG":
            info = PngImagePlugin.PngInfo()
            info.add_itxt("clipstyle", blob)
            if "prompt" in metadata:
                info.add_itxt("prompt", str(metadata["prompt"]))
            if "config" in metadata:
                info.add_itxt("config", json.dumps(metadata["config"], sort_keys=True))
            pil.save(tmp, format="PNG", pnginfo=info)
        elif fmt == "JPEG":
            pil.save(tmp, format="JPEG", quality=quality, comment=blob.encode("utf-8"))
        else:
            pil.save(tmp, format=fmt, quality=quality)

    atomic_write(path, write_image)
    if sidecar:
        def write_sidecar(tmp: str) -> None:
            Path(tmp).write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")

        atomic_write(sidecar_path(path), write_sidecar)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of an output image: its JSON sidecar, else its PNG ``clipstyle`` chunk, else {}."""
    path = Path(path)
    side = sidecar_path(path)
    if side.is_file():
        try:
            return json.loads(side.read_text())
        except json.JSONDecodeError:
            raise ImageReadError(f"sidecar is not valid JSON: {side}") from None
    try:
        with Image.open(path) as opened:
            text = getattr(opened, "text", {}) or {}
            if "clipstyle" in text:
                return json.loads(text["clipstyle"])
    except (OSError, json.JSONDecodeError):
        pass
    return {}
