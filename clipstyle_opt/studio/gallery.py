"""The studio's results on disk: each finished run saved in ``--output-dir`` as the command line saves one (the
PNG with its metadata chunks, the JSON sidecar, the U-Net as ``.unet.pt``), and the gallery read back from
there, so it survives a restart."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import StyleConfig
from ..errors import ConfigError, OutputExistsError
from ..imageio import sidecar_path
from ..result import Result


@dataclass(frozen=True)
class Saved:
    """Where a result went: the image, its sidecar and its U-Net."""

    image: Path
    sidecar: Path
    unet: Path


def save_result(result: Result, output_dir: Path, photo_name: str) -> Saved:
    """Write ``result`` into ``output_dir`` (made if missing) as ``<photo>_<UTC time>[_n].png`` with its
    sidecar, and its U-Net as ``.unet.pt``; never overwrites (a name taken gets the next ``_n``)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{Path(photo_name).stem or 'photo'}_{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    for attempt in range(1000):
        image = output_dir / (f"{stem}.png" if attempt == 0 else f"{stem}_{attempt}.png")
        unet = image.with_suffix(".unet.pt")
        if image.exists() or unet.exists() or sidecar_path(image).exists():
            continue
        try:
            written = result.save(image)
            result.save_unet(unet)
        except OutputExistsError:  # another session took the name in between
            continue
        return Saved(written, sidecar_path(written), unet)
    raise OutputExistsError(f"no free file name for {stem}.png in {output_dir}")


@dataclass(frozen=True)
class Item:
    """One gallery entry: the image, its sidecar's metadata, and its U-Net when saved."""

    image: Path
    metadata: dict[str, Any]
    unet: Path | None

    @property
    def caption(self) -> str:
        """The gallery caption: prompt, steps and seed, as the sidecar gives them."""
        steps = (self.metadata.get("config") or {}).get("steps")
        return f"{self.metadata.get('prompt', '?')} · {steps} steps · seed {self.metadata.get('seed')}"

    def config(self) -> StyleConfig | None:
        """The settings the image was made with (None if the sidecar's are not valid here)."""
        try:
            return StyleConfig.from_dict(self.metadata.get("config") or {})
        except (ConfigError, TypeError):
            return None


def read_gallery(output_dir: Path, limit: int = 200) -> list[Item]:
    """The images in ``output_dir`` that have a clipstyle sidecar, newest first (at most ``limit``)."""
    if not output_dir.is_dir():
        return []
    items = []
    for image in sorted(output_dir.glob("*.png"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            metadata = json.loads(sidecar_path(image).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(metadata, dict) or metadata.get("tool") != "clipstyle_opt":
            continue
        unet = image.with_suffix(".unet.pt")
        items.append(Item(image, metadata, unet if unet.exists() else None))
        if len(items) >= limit:
            break
    return items


__all__ = ["Item", "Saved", "read_gallery", "save_result"]
