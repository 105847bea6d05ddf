"""A sweep run's id: a hash of what determines its image, not of its position in the sweep."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from ..config import StyleConfig, settings

# Settings that change speed or memory only, not the image (beyond float rounding): not part of a run's id,
# so a sweep resumed on another device or with another batch size reuses what exists.
#: Settings that change speed or memory only (device, ``clip_batch``, ``compile``...): left out of run ids.
SPEED_ONLY = tuple(item.name for item in settings() if item.speed_only)
#: Versions the hash behind run ids: a change to what enters it changes this tag.
RUN_ID_FORMAT = "clipstyle_opt.sweep.run/1"
#: Settings added after RUN_ID_FORMAT's tag, with the value that gives the images runs gave before they
#: existed: left out of the id at that value, so resuming a sweep made by an earlier version finds its runs.
ADDED_SINCE_FORMAT = {"init": "random"}
# Written as floats in the id (150 == 150.0); optional ones (coarse_lr) are not, as before they were described.
_FLOAT_FIELDS = {item.name for item in settings() if item.type is float and not item.optional and not item.multiple}


def file_digest(path: str, cache: dict[str, str]) -> str:
    """The sha256 (hex) of the file at ``path``, read once per ``cache`` (a dict kept by the caller)."""
    if path not in cache:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        cache[path] = digest.hexdigest()
    return cache[path]


def canonical_config(config: StyleConfig) -> dict[str, Any]:
    """The settings that shape a run's image: speed-only fields dropped, settings added since the id format
    dropped at their old behaviour's value (`ADDED_SINCE_FORMAT`), float fields as floats (150 == 150.0)."""
    out = {}
    for key, value in config.to_dict().items():
        if key in SPEED_ONLY or ADDED_SINCE_FORMAT.get(key, object()) == value:
            continue
        if key in _FLOAT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[key] = value
    return out


def run_id(content_digest: str, prompt: str, style_digest: Optional[str], config: StyleConfig) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of everything that determines the image."""
    payload = {"format": RUN_ID_FORMAT, "content": content_digest, "prompt": prompt, "style_image": style_digest,
               "config": canonical_config(config)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


__all__ = ["run_id", "canonical_config", "file_digest", "SPEED_ONLY", "RUN_ID_FORMAT", "ADDED_SINCE_FORMAT"]
