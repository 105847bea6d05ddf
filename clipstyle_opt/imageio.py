"""Reading images safely, checking output paths, and writing results atomically with their metadata.

Tensors at this boundary are (1, 3, H, W) float32 RGB in [0, 1].

What reading does with each kind of pixel data (see docs/guides/troubleshooting.md):

- greyscale, palette, CMYK, YCbCr, LAB, HSV, 1-bit and 32-bit integer/float
  images are converted to RGB; 16-bit greyscale is scaled from 0..65535
  (16-bit colour PNGs are read by Pillow at 8 bits per channel);
- transparency (RGBA, LA, PA, palette with a transparent colour) is
  composited onto white: the result is opaque RGB, and outputs carry no alpha;
- EXIF orientation is applied, so the pixels are upright as a viewer shows
  them, and outputs carry no orientation tag;
- an embedded ICC profile is converted to sRGB (Pillow's ImageCms, perceptual
  intent) and then dropped: outputs are plain sRGB. A profile that cannot be
  applied is ignored with a warning and the pixels are read as sRGB.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError
from torch.nn import functional as F

from .errors import (ClipstyleWarning, ConfigError, ImageReadError, OutputExistsError, OutputPathError, WriteError,
                     first_line)

ImageSource = Union[str, os.PathLike, Image.Image, torch.Tensor, np.ndarray]
DEFAULT_MAX_PIXELS = 200_000_000
"""Images with more pixels than this (about 14k x 14k) are refused before decoding: a decompression-bomb guard."""
MAX_PIXELS_ENV = "CLIPSTYLE_MAX_PIXELS"
"""Environment variable that sets another pixel limit (a whole number of pixels)."""
MIN_SIDE = 16
"""Smallest side (px) of an image the method can use: VGG's conv5 layers see it at 1/16."""
WRITABLE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_PIL_LIMIT_LOCK = threading.Lock()


def max_pixels() -> int:
    """The pixel limit for reading images: ``$CLIPSTYLE_MAX_PIXELS`` if set, else `DEFAULT_MAX_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV} must be a whole number of pixels >= 1, got {raw!r}")
    return value


@contextlib.contextmanager
def _our_pixel_limit() -> Iterator[None]:
    """Switch off Pillow's own bomb check (warning at 89 M px, error at 179 M) while we apply ours."""
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


_SRGB = None


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert an image with an embedded ICC profile to sRGB (alpha kept); others are returned as they are."""
    icc = image.info.get("icc_profile")
    if not icc:
        return image
    global _SRGB
    try:
        from PIL import ImageCms
    except ImportError:  # Pillow built without littlecms
        warnings.warn(ClipstyleWarning("this Pillow cannot apply ICC profiles; the image is read as sRGB"), stacklevel=3)
        return image
    alpha = image.convert("RGBA").getchannel("A") if _has_alpha(image) else None
    if image.mode in ("RGB", "CMYK", "L"):
        source = image
    elif image.mode in ("RGBA", "RGBX", "P", "PA", "YCbCr"):
        source = image.convert("RGB")
    elif image.mode in ("LA", "La"):
        source = image.convert("L") if image.mode == "LA" else image.convert("LA").convert("L")
    else:
        warnings.warn(ClipstyleWarning(f"ICC profile ignored for a {image.mode} image; read as sRGB"), stacklevel=3)
        return image
    try:
        if _SRGB is None:
            _SRGB = ImageCms.createProfile("sRGB")
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(source, profile, _SRGB, outputMode="RGB")
    except Exception as exc:  # PyCMSError, OSError, ValueError...: a broken or mismatched profile
        reason = first_line(exc)
        warnings.warn(ClipstyleWarning(f"ICC profile not applied ({reason}); the image is read as sRGB"),
                      stacklevel=3)
        return image
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> HxWx3 float32 in [0, 1]: ICC profile converted to sRGB, alpha composited onto white."""
    array = _pil_to_rgb(image)
    return array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array


def pil_to_rgb8(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> HxWx3 uint8 RGB, converted as `load_image` converts (3 bytes a pixel, never floats
    for 8-bit images). 16-bit and float images are rounded to 8 bits."""
    array = _pil_to_rgb(image)
    if array.dtype == np.uint8:
        return array
    return np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """HxWx3 uint8 for 8-bit data, float32 in [0, 1] for 16-bit and float data (see `_pil_to_array`)."""
    image = _to_srgb(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float32)
        scale = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(values / scale, 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "F":
        grey = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
    if _has_alpha(image):
        rgba = image.convert("LA").convert("RGBA") if image.mode == "La" else image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)


def read_image(path: str | os.PathLike, what: str = "image") -> Image.Image:
    """Open an image file with EXIF orientation applied; one-line `ImageReadError` on failure.

    The file's contents decide its format, not its extension. Images over
    `max_pixels` are refused from their header, before any decoding.
    ``what`` names the file in messages ("photo", "style image").
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{what} not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"expected an image file, got a directory: {path}")
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(f"{what} is an empty file (0 bytes): {path}")
    except OSError as exc:
        raise ImageReadError(f"cannot read {what} {path}: {exc.strerror}") from None
    limit = max_pixels()
    try:
        with _our_pixel_limit(), Image.open(path) as opened:
            width, height = opened.size
            if width * height > limit:
                raise ImageReadError(
                    f"{what} too large: {path} is {width}x{height} = {width * height:,} px, over the limit of "
                    f"{limit:,} px (a guard against decompression bombs); to read it, set "
                    f"{MAX_PIXELS_ENV}={width * height}")
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"not an image (or a format Pillow cannot read): {path}") from None
    except OSError as exc:
        if exc.errno is not None:  # the file system's error (permission denied, I/O error)
            raise ImageReadError(f"cannot read {what} {path}: {exc.strerror}") from None
        raise ImageReadError(f"{what} is truncated or corrupt: {path} ({first_line(exc)})") from None
    except MemoryError:
        raise ImageReadError(f"not enough memory to decode {what} {path}") from None
    except Exception as exc:  # Pillow's decoders raise many kinds of errors on damaged data
        raise ImageReadError(f"{what} is corrupt: {path} ({type(exc).__name__}: {first_line(exc)})") from None
    return image


def check_min_size(height: int, width: int, what: str = "image") -> None:
    """Refuse an image with a side under `MIN_SIDE` px, saying the minimum."""
    if min(height, width) < MIN_SIDE:
        raise ImageReadError(f"{what} is too small: {width}x{height} px; each side must be at least {MIN_SIDE} px")


def read_user_text(path: str | os.PathLike, what: str, error: type[Exception],
                   encoding: str = "utf-8") -> str:
    """The text of a file the user named, or ``error`` with one line: "{what} not found: PATH"
    or "cannot read {what} PATH: reason"."""
    path = Path(path)
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None


def load_image(source: ImageSource, what: str = "image") -> torch.Tensor:
    """Path, PIL image, HxWx3 array or tensor -> (1, 3, H, W) float32 in [0, 1].

    Tensors may be (3, H, W) or (1, 3, H, W), float in [0, 1] or uint8.
    PIL images and files are converted as the module docstring says.
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
        if not bool(torch.isfinite(tensor).all()) or tensor.min() < 0 or tensor.max() > 1:
            raise ImageReadError("float image tensors must hold finite values in [0, 1]")
        return tensor
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3:
            raise ImageReadError(f"image arrays must be HxWx3, got shape {source.shape}")
        return load_image(torch.from_numpy(np.ascontiguousarray(source)).permute(2, 0, 1))
    image = source if isinstance(source, Image.Image) else read_image(source, what)
    try:
        array = _pil_to_array(image)
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"cannot convert the {what} ({image.mode}) to RGB: {first_line(exc)}") from None
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


# --- output checks: one home for every command's "may I write here?" ----------------------------------

def _same_path(a: Path, b: Path) -> bool:
    """True if ``a`` and ``b`` name the same file (through links and relative paths)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _check_directory(directory: Path, target: Path, create: bool) -> None:
    """The directory an output goes into must exist (or, with ``create``, be creatable) and be writable."""
    probe = directory
    if create:
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent  # the nearest existing ancestor, where the directories will be made
    elif not directory.exists():
        raise OutputPathError(f"output directory does not exist: {directory} (create it first)")
    if not probe.is_dir():
        raise OutputPathError(f"{probe} is not a directory, so {target} cannot be written")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputPathError(f"output directory is not writable: {probe}")


def check_output_file(path: str | os.PathLike, overwrite: bool, *, inputs: Iterable[Any] = (),
                      create_dirs: bool = False) -> Path:
    """Refuse, before any work, an output file that cannot or must not be written.

    Refused: a directory; a path that is one of ``inputs`` (files the command
    reads; None entries are skipped); a missing directory (unless
    ``create_dirs``: then the nearest existing ancestor must be writable); an
    unwritable directory; an existing file unless ``overwrite``.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{path} is a directory; give a file name")
    for source in inputs:
        if isinstance(source, (str, os.PathLike)) and _same_path(path, Path(source)):
            raise ConfigError(f"the output {path} is also an input ({source}); writing it would destroy the input: "
                              "choose another output path")
    _check_directory(path.parent, path, create_dirs)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    return path


def check_writable(path: str | os.PathLike, overwrite: bool, *, inputs: Iterable[Any] = (),
                   create_dirs: bool = True) -> Path:
    """`check_output_file` for an output image and its JSON sidecar; the suffix must be a writable format."""
    path = Path(path)
    if path.suffix.lower() not in WRITABLE_SUFFIXES:
        raise ConfigError(f"output must end in one of {', '.join(WRITABLE_SUFFIXES)}: {path}")
    inputs = list(inputs)
    for target in (path, sidecar_path(path)):
        check_output_file(target, overwrite, inputs=inputs, create_dirs=create_dirs)
    return path


# --- atomic writes ------------------------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_all(items: Sequence[tuple[str | os.PathLike, Callable[[str], Any]]]) -> None:
    """Write several files all or nothing: each ``write(tmp_path)`` fills a temp file beside its target,
    then all are renamed into place.

    Readers never see a half-written file. If any write fails (a full disk,
    a vanished directory) no target changes, no temp file and no directory
    made here is left behind, and `WriteError` says which file failed and why.
    Missing parent directories are created. Files get the usual permissions
    (0666 minus the umask).
    """
    temps: list[str] = []
    made: list[Path] = []
    current = Path(items[0][0]) if items else Path()
    try:
        for target, write in items:
            current = Path(target)
            missing = [d for d in (current.parent, *current.parent.parents) if not d.exists()]
            current.parent.mkdir(parents=True, exist_ok=True)
            made.extend(missing)
            fd, tmp = tempfile.mkstemp(prefix=f".{current.name}.", suffix=".tmp", dir=current.parent)
            os.close(fd)
            temps.append(tmp)
            write(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        for (target, _), tmp in zip(items, temps):
            current = Path(target)
            os.replace(tmp, target)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        hint = "; free some space or write elsewhere" if full else ""
        state = "it is unchanged" if current.exists() else "nothing was left behind"
        raise WriteError(f"cannot write {current}: {exc.strerror or first_line(exc)} ({state}){hint}") from None
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if made and not all(Path(t).exists() for t, _ in items):
            for directory in made:  # deepest first
                with contextlib.suppress(OSError):
                    directory.rmdir()


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file (see `atomic_write_all`)."""
    atomic_write_all([(path, write)])


def save_image(image: torch.Tensor | Image.Image, path: str | os.PathLike, metadata: dict[str, Any] | None = None,
               *, overwrite: bool = False, sidecar: bool = True, quality: int = 95) -> Path:
    """Write an image (PNG, JPEG or WebP by extension) and its JSON sidecar, atomically and together.

    PNG files also carry the metadata as text chunks: ``clipstyle`` (all of it
    as JSON), ``prompt`` and ``config``. JPEG files carry it as a comment.
    Either both files are written or neither changes (`atomic_write_all`).
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

    def write_sidecar(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")

    atomic_write_all([(path, write_image), *([(sidecar_path(path), write_sidecar)] if sidecar else [])])
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of an output image: its JSON sidecar, else its PNG ``clipstyle`` chunk, else {}."""
    path = Path(path)
    side = sidecar_path(path)
    if side.is_file():
        try:
            data = json.loads(side.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ImageReadError(f"sidecar is not valid JSON: {side}") from None
        if not isinstance(data, dict):
            raise ImageReadError(f"sidecar is not a JSON object: {side}")
        return data
    try:
        with Image.open(path) as opened:
            text = getattr(opened, "text", {}) or {}
            if "clipstyle" in text:
                data = json.loads(text["clipstyle"])
                return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        pass
    return {}
