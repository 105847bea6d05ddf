"""Masks from the page: painted on the photo in Gradio's image editor or uploaded, turned into the file the
command line's ``--mask`` (or ``--region MASK PROMPT``) would name, and checked by the same rules.

A painted mask is the brush layers' alpha (any brush colour; white = stylize where painted, black = keep
elsewhere), written as a grey PNG into the server's temporary folder; the engine then reads that file exactly
as it reads ``--mask``. Nothing here imports gradio: the editor's value arrives as the plain dict Gradio passes
(``{"background", "layers", "composite"}``, each a file path, an array or a PIL image).
"""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..objective.masks import load_mask
from .security import UploadLimits, check_image_upload

MASK_KEEP = 0
"""Grey level of a painted mask where nothing was painted (black = keep the photo)."""


def _as_image(layer: Any, what: str, limits: UploadLimits) -> Image.Image:
    """A layer (file path, HxWx{3,4} array or PIL image) as an RGBA PIL image; a path goes through the upload
    checks first (bytes, pixels, the safe loader)."""
    if isinstance(layer, Image.Image):
        return layer.convert("RGBA")
    if isinstance(layer, np.ndarray):
        return Image.fromarray(layer.astype(np.uint8)).convert("RGBA")
    path = check_image_upload(layer, what, limits)
    with Image.open(path) as opened:
        return opened.convert("RGBA")


def painted_alpha(value: Mapping[str, Any] | None, limits: UploadLimits = UploadLimits(),
                  what: str = "painted mask") -> np.ndarray | None:
    """The brush layers of an image editor's value as one HxW uint8 mask: the largest alpha over the layers
    (0..255: 255 where fully painted). None when there is no layer or nothing was painted.

    Layers of different sizes are an error (the editor gives every layer the canvas's size)."""
    if not value:
        return None
    layers = [layer for layer in (value.get("layers") or []) if layer is not None]
    if not layers:
        return None
    alphas = [np.asarray(_as_image(layer, what, limits).getchannel("A")) for layer in layers]
    if len({a.shape for a in alphas}) != 1:
        raise ConfigError(f"{what}: the editor's layers differ in size; clear the mask and paint it again")
    alpha = np.maximum.reduce(alphas)
    return alpha if int(alpha.max()) > MASK_KEEP else None


def write_mask(alpha: np.ndarray, folder: str | Path | None = None) -> Path:
    """Save an HxW uint8 mask as a grey PNG (a new name) under ``folder`` (None: the server's temporary folder,
    ``$GRADIO_TEMP_DIR`` as `clipstyle_opt.studio.server.launch` sets it, else the system's)."""
    where = Path(folder or os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir())
    target = where / "clipstyle-masks" / f"painted-{uuid.uuid4().hex[:12]}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(alpha), mode="L").save(target)
    return target


def mask_file(painted: Mapping[str, Any] | None, uploaded: str | None, what: str,
              limits: UploadLimits = UploadLimits(), folder: str | Path | None = None) -> str | None:
    """The mask file a run gets for one mask input of the page, as ``--mask`` would name it: the painted layers
    (written by `write_mask`) or the uploaded image, never both; None when neither was given. The file is
    checked with the command line's `load_mask` (not an image, all black: its one-line error)."""
    alpha = painted_alpha(painted, limits, f"{what} (painted)")
    if alpha is not None and uploaded:
        raise ConfigError(f"give the {what} once: paint it or upload it, not both")
    path = str(write_mask(alpha, folder)) if alpha is not None else uploaded
    if path is not None:
        try:
            load_mask(path, what)
        except ConfigError as exc:  # the loader names the file: not the server's temporary path, in a page
            raise ConfigError(str(exc).replace(f" {path}", "")) from None
    return path


def region_pairs(rows: Sequence[tuple[str | None, str | None]]) -> list[tuple[str, str]]:
    """``(mask file, prompt)`` pairs from the page's region rows, as ``--region MASK PROMPT`` gives them; empty
    rows are skipped, a row with only one of the two is a one-line error naming it (rows count from 1)."""
    pairs = []
    for index, (mask, prompt) in enumerate(rows, start=1):
        text = (prompt or "").strip()
        if mask is None and not text:
            continue
        if mask is None or not text:
            raise ConfigError(f"region {index}: give both a mask and a prompt")
        pairs.append((mask, text))
    return pairs


__all__ = ["MASK_KEEP", "mask_file", "painted_alpha", "region_pairs", "write_mask"]
