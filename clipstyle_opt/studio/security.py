"""What a page or an API call may hand the server: bounded, checked uploads and the models it may name.

Uploads are bounded in bytes (`UploadLimits.max_bytes`) and in pixels (``$CLIPSTYLE_MAX_PIXELS``, read from
the header before decoding) and decoded by the command line's safe loader (`clipstyle_opt.imageio.read_image`),
so a file that is not an image, a 1x1 image or a decompression bomb ends in the same one-line message the
command line gives. A model name typed in a page cannot read arbitrary files: `ModelPolicy` admits the models
``clipstyle models`` knows, the ``--clip-model`` values given at start, and files or ``local-dir:`` folders
under the ``--model-dir`` folders given at start, nothing else.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError, ImageReadError
from ..imageio import MIN_SIDE, check_min_size, read_image
from . import DEFAULT_MAX_UPLOAD_MB



@dataclass(frozen=True)
class UploadLimits:
    """max_bytes: the largest file accepted (> 0); pixels are bounded by ``$CLIPSTYLE_MAX_PIXELS``."""

    max_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024


def check_image_upload(path: str | os.PathLike | None, what: str, limits: UploadLimits) -> Path:
    """The uploaded file at ``path``, once it is known to be a readable image of at least 16 px a side within the
    byte and pixel limits; else a one-line `ImageReadError` naming ``what`` ("photo") but not the server's
    temporary path."""
    if path is None or str(path) == "":
        raise ImageReadError(f"give a {what}")
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        raise ImageReadError(f"the {what} upload did not arrive; upload it again") from None
    if size > limits.max_bytes:
        raise ImageReadError(f"{what} too large: {size:,} bytes, over the studio's limit of {limits.max_bytes:,} "
                             "bytes (clipstyle serve --max-upload-mb)")
    try:
        image = read_image(path, what)
        check_min_size(image.height, image.width, what)
    except ImageReadError as exc:  # the loader names the file: say "the photo" instead of a server path
        raise ImageReadError(str(exc).replace(f": {path}", "").replace(str(path), f"the {what}")) from None
    return path


@dataclass
class ModelPolicy:
    """Which ``clip_model`` strings this server loads.

    offered: the ``--clip-model`` values given at start (the page's choices; files among them are allowed as
    given); folders: the ``--model-dir`` folders, under which checkpoint files and ``local-dir:`` folders may
    be named; catalogue: the names ``clipstyle models`` lists (read once, on first need).
    """

    offered: Sequence[str]
    folders: Sequence[str | os.PathLike] = ()
    _catalogue: set[str] | None = field(default=None, repr=False)

    def catalogue(self) -> set[str]:
        """The names ``clipstyle models`` knows, with and without their ``openai:`` scheme."""
        if self._catalogue is None:
            from ..encoders.registry import known_models

            names = {row["model"] for row in known_models()}
            self._catalogue = names | {name.split(":", 1)[1] for name in names if name.startswith("openai:")}
        return self._catalogue

    def _under_folders(self, target: Path) -> bool:
        resolved = target.resolve()
        return any(resolved.is_relative_to(Path(folder).resolve()) and resolved != Path(folder).resolve()
                   for folder in self.folders)

    def check(self, name: str | None) -> str:
        """``name`` if this server may load it (None or "": the first offered model); else a one-line
        `ConfigError` listing what it offers."""
        if name is None or not str(name).strip():
            return self.offered[0]
        name = str(name).strip()
        if name in self.offered or name in self.catalogue():
            return name
        local = name[len("local-dir:"):] if name.startswith("local-dir:") else name
        looks_like_path = name.startswith("local-dir:") or os.sep in name or name.endswith((".pt", ".pth"))
        if looks_like_path and self.folders and self._under_folders(Path(local)):
            return name
        where = f" or a file under {', '.join(str(f) for f in self.folders)}" if self.folders else ""
        raise ConfigError(f"clip_model {name!r} is not offered by this server: choose one of "
                          f"{', '.join(self.offered)}, a name `clipstyle models` lists{where}", "clip_model")


__all__ = ["DEFAULT_MAX_UPLOAD_MB", "MIN_SIDE", "ModelPolicy", "UploadLimits", "check_image_upload"]
