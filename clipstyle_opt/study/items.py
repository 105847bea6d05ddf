"""What a study rates: the outputs under sweep, report or eval directories, with their content photo,
prompt and method label (all from the sidecar), and the images' bytes as the study stores them.

Outputs are found by `clipstyle_opt.report.collect_outputs` and content photos by the evaluator's
lookup, so a study sees exactly what `clipstyle report` and `clipstyle eval` see.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from PIL import Image

from ..errors import ConfigError, ImageReadError
from ..evaluate.evaluator import _find_content
from ..imageio import read_image
from ..report import collect_outputs

DEFAULT_MAX_SIDE = 1024
_KEPT_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@dataclass(frozen=True)
class Output:
    """One output to rate. ``source``: ``<dir name>/<path under it>``, what the export's ``output`` column
    holds (and `clipstyle correlate` matches against a results table's ``image``)."""
    path: Path
    source: str
    label: str
    prompt: str
    content: Path


@dataclass(frozen=True)
class StoredBytes:
    """An image as the study stores it: its SHA-256 (its key), media type and bytes."""

    sha256: str
    media_type: str
    data: bytes


def _label(metadata: dict[str, Any], label_from: Optional[str], directory: Path, path: Path) -> str:
    if label_from == "dir":
        return directory.resolve().name
    if label_from:
        config = metadata.get("config") if isinstance(metadata.get("config"), dict) else {}
        axes = (metadata.get("sweep") or {}).get("axes") if isinstance(metadata.get("sweep"), dict) else None
        for source in (metadata, config, axes or {}):
            if label_from in source and not isinstance(source[label_from], (dict, list)):
                value = source[label_from]
                return value if isinstance(value, str) else f"{label_from}={value}"
        raise ConfigError(f"--label-from {label_from}: {path} records no {label_from!r} (in its sidecar, "
                          "its config or its sweep axes)")
    return str(metadata.get("method") or metadata.get("label") or directory.resolve().name)


def find_outputs(directories: Sequence[str | os.PathLike], label_from: Optional[str] = None) -> list[Output]:
    """Every output under ``directories`` with its label (``label_from``: None = the sidecar's ``method``
    or ``label``, else the directory's name; ``"dir"`` = the directory's name; a key = that sidecar,
    config or sweep-axis value). One-line error for a missing content photo or an empty directory."""
    found: list[Output] = []
    seen: set[Path] = set()
    for given in directories:
        directory = Path(given)
        outputs = collect_outputs(directory)
        if not outputs:
            raise ImageReadError(f"no outputs with metadata (a JSON sidecar with a prompt) under {directory}")
        for path, metadata in outputs:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            recorded = metadata.get("content")
            content = _find_content(str(recorded), path) if recorded else None
            if content is None:
                raise ImageReadError(f"the content photo of {path} ({recorded or 'not recorded'}) is not found")
            source = f"{directory.resolve().name}/{path.relative_to(directory).as_posix()}"
            found.append(Output(path, source, _label(metadata, label_from, directory, path),
                                str(metadata["prompt"]), content))
    return found


def stored_bytes(path: str | os.PathLike, max_side: int = DEFAULT_MAX_SIDE) -> StoredBytes:
    """The bytes a study keeps of an image: the file as it is when it is a PNG, JPEG or WebP no larger than
    ``max_side`` px (long side), else a PNG shrunk to ``max_side``. Keyed by the sha256 of those bytes."""
    image = read_image(path)
    raw = Path(path).read_bytes()
    if image.format in _KEPT_FORMATS and max(image.size) <= max_side:
        data, media_type = raw, _KEPT_FORMATS[image.format]
    else:
        image = image.convert("RGB")
        if max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data, media_type = buffer.getvalue(), "image/png"
    return StoredBytes(hashlib.sha256(data).hexdigest(), media_type, data)
