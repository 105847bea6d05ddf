"""The sweep directory: one atomic record per finished run, the results table, and a lock.

Layout::

    DIR/sweep.json              the spec and the resolved runs of the latest invocation
    DIR/runs/<run_id>.png       each finished run's image ...
    DIR/runs/<run_id>.json      ... and its sidecar (full metadata, plus "sweep": its axes and result row),
                                written together, all or nothing (`imageio.save_image`)
    DIR/failed/<run_id>.json    a failed run's error and traceback (removed when a rerun succeeds)
    DIR/results.csv             every run's row (and results.parquet when pyarrow is installed)
    DIR/.lock                   held (flock) while a sweep writes here

A run is finished when its sidecar holds its row; resuming skips it. A kill
between the image's and the sidecar's rename leaves an image without a row:
that run is simply redone.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import traceback as traceback_module
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from PIL import Image

from ..errors import ClipstyleError
from ..imageio import atomic_write, save_image
from .execute import Outcome
from .spec import Run, SweepSpec

SWEEP_FORMAT = "clipstyle_opt.sweep/1"
#: The sweep directory's manifest (the spec and settings it was started with).
MANIFEST = "sweep.json"
#: One row per run: axes, final losses, timings, metrics.
RESULTS_CSV = "results.csv"
#: The same table as Parquet, written when pyarrow is installed.
RESULTS_PARQUET = "results.parquet"
LOCK = ".lock"
FIRST_COLUMNS = ("run_id", "status", "image")


class SweepLockedError(ClipstyleError):
    """Another sweep is writing into the same directory."""


def is_sweep_dir(directory: str | os.PathLike) -> bool:
    """True if ``directory`` holds a sweep (its ``sweep.json``)."""
    return (Path(directory) / MANIFEST).is_file()


def _clean(value: Any) -> Any:
    """A JSON/CSV-friendly cell: NaN/inf as None, tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple):
        return list(value)
    return value


class SweepStore:
    """Reads and writes one sweep directory. Call `lock` before writing."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.root = Path(directory)
        self.runs_dir = self.root / "runs"
        self.failed_dir = self.root / "failed"
        self._lock_handle: Optional[Any] = None

    # --- the lock -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator["SweepStore"]:
        """Hold the directory's lock (released on exit, and by the OS if the process dies).

        Raises `SweepLockedError` at once if another sweep holds it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / LOCK, "a+")
        try:
            try:
                import fcntl
            except ImportError:  # not POSIX: no lock, as before
                fcntl = None
            if fcntl is not None:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise SweepLockedError(f"another sweep ({holder}) is writing into {self.root}; wait for it to "
                                           "finish or stop it, or choose another output directory") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            self._lock_handle = handle
            self._remove_stale_temps()
            yield self
        finally:
            self._lock_handle = None
            handle.close()

    def _remove_stale_temps(self) -> None:
        """Temp files of atomic writes that a killed sweep left (only the lock holder writes here)."""
        for folder in (self.root, self.runs_dir, self.failed_dir, self.root / "plots"):
            for temp in folder.glob(".*.tmp") if folder.is_dir() else ():
                with contextlib.suppress(OSError):
                    temp.unlink()

    # --- reading ------------------------------------------------------------------------------------
    def image_path(self, run_id: str) -> Path:
        """Where the image of run ``run_id`` is (or will be) stored: ``runs/<id>.png``."""
        return self.runs_dir / f"{run_id}.png"

    def finished(self) -> dict[str, dict[str, Any]]:
        """Rows of the finished runs, by run id (read from their sidecars)."""
        rows: dict[str, dict[str, Any]] = {}
        if not self.runs_dir.is_dir():
            return rows
        for side in sorted(self.runs_dir.glob("*.json")):
            image = side.with_suffix(".png")
            if not image.is_file():
                continue
            try:
                data = json.loads(side.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            row = (data.get("sweep") or {}).get("row") if isinstance(data, dict) else None
            if isinstance(row, dict) and row.get("run_id") == side.stem:
                rows[side.stem] = row
        return rows

    def failures(self) -> dict[str, dict[str, Any]]:
        """Rows of the runs whose last attempt failed, by run id."""
        rows: dict[str, dict[str, Any]] = {}
        if not self.failed_dir.is_dir():
            return rows
        for path in sorted(self.failed_dir.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and isinstance(data.get("row"), dict):
                rows[path.stem] = data["row"]
        return rows

    def manifest(self) -> dict[str, Any]:
        """The ``sweep.json`` of the latest invocation ({} if none)."""
        try:
            data = json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    # --- writing ------------------------------------------------------------------------------------
    def write_manifest(self, spec: SweepSpec, settings: dict[str, Any]) -> None:
        """Record the spec, its axes and runs (rewritten by every invocation, atomically)."""
        payload = {"format": SWEEP_FORMAT, "name": spec.name, "source": str(spec.source) if spec.source else None,
                   "spec": spec.raw, "axes": spec.axes, "varying_axes": spec.varying_axes(), "settings": settings,
                   "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "runs": [run.to_dict() for run in spec.runs]}
        text = json.dumps(payload, indent=1, default=str) + "\n"
        atomic_write(self.root / MANIFEST, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    def _base_row(self, run: Run, status: str) -> dict[str, Any]:
        row: dict[str, Any] = {"run_id": run.run_id, "status": status,
                               "image": f"runs/{run.run_id}.png" if status == "ok" else ""}
        for axis, value in run.axes.items():
            row[axis] = _clean(value)
        row.setdefault("prompt", run.prompt)
        row["content_path"] = run.content
        if run.style_image:
            row["style_image_path"] = run.style_image
        return row

    def record_success(self, run: Run, outcome: Outcome, label: str | None = None) -> dict[str, Any]:
        """Write the run's image and sidecar (with its row) atomically; drop an older failure record.

        label: what the report shows for this output (e.g. the axis values that vary).
        """
        row = self._base_row(run, "ok")
        row.update({k: _clean(v) for k, v in outcome.values.items()})
        metadata = dict(outcome.metadata)
        if label:
            metadata["label"] = label
        metadata["sweep"] = {"run_id": run.run_id, "axes": {k: _clean(v) for k, v in run.axes.items()}, "row": row}
        save_image(Image.fromarray(outcome.pixels, "RGB"), self.image_path(run.run_id), metadata, overwrite=True)
        with contextlib.suppress(FileNotFoundError):
            (self.failed_dir / f"{run.run_id}.json").unlink()
        return row

    def record_failure(self, run: Run, error: str, trace: str = "") -> dict[str, Any]:
        """Record why a run failed (``failed/<run_id>.json``); the sweep goes on."""
        row = self._base_row(run, "failed")
        row["error"] = error
        payload = {"run_id": run.run_id, "row": row, "run": run.to_dict(), "error": error, "traceback": trace,
                   "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        text = json.dumps(payload, indent=1, default=str) + "\n"
        atomic_write(self.failed_dir / f"{run.run_id}.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        return row

    def record(self, run: Run, outcome: Outcome, label: str | None = None) -> dict[str, Any]:
        """Record a finished run: its image and sidecar when it succeeded, ``failed/<id>.json`` when not;
        returns its results row.
        """
        if outcome.status == "ok":
            return self.record_success(run, outcome, label)
        return self.record_failure(run, outcome.error, outcome.traceback)

    # --- the table ----------------------------------------------------------------------------------
    def rows(self, order: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Every run's row (finished, else failed): those in ``order`` first, in that order, then the rest."""
        rows = {**self.failures(), **self.finished()}
        ordered = [rows.pop(run_id) for run_id in order if run_id in rows]
        return ordered + [rows[k] for k in sorted(rows)]

    def write_tables(self, rows: Sequence[dict[str, Any]]) -> list[Path]:
        """``results.csv`` (and ``results.parquet`` with pyarrow), atomically, from ``rows``."""
        columns = columns_of(rows)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else (repr(v) if isinstance(v, float) else
                                                       (json.dumps(v) if isinstance(v, (list, dict)) else v)))
                             for k, v in row.items()})
        text = buffer.getvalue()
        atomic_write(self.root / RESULTS_CSV, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        written = [self.root / RESULTS_CSV]
        try:
            import pandas  # noqa: F401
            import pyarrow  # noqa: F401
        except ImportError:
            return written
        frame = to_frame(rows)
        atomic_write(self.root / RESULTS_PARQUET, lambda tmp: frame.to_parquet(tmp, index=False))
        written.append(self.root / RESULTS_PARQUET)
        return written


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Column order: id, status, image, then every other column in order of first appearance, error last."""
    seen = dict.fromkeys(FIRST_COLUMNS)
    for row in rows:
        seen.update(dict.fromkeys(row))
    columns = [c for c in seen if c != "error"]
    return columns + (["error"] if any("error" in row for row in rows) else [])


def to_frame(rows: Sequence[dict[str, Any]]) -> Any:
    """The rows as a pandas DataFrame (columns as `columns_of`)."""
    pandas = import_pandas()
    frame = pandas.DataFrame([{k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in row.items()}
                              for row in rows], columns=columns_of(rows))
    return frame


def import_pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ClipstyleError("sweeps need pandas: pip install 'clipstyle_opt[sweep]'") from None
    return pandas


def format_traceback() -> str:
    return traceback_module.format_exc()


__all__ = ["SweepStore", "SweepLockedError", "is_sweep_dir", "to_frame", "columns_of", "MANIFEST", "RESULTS_CSV",
           "RESULTS_PARQUET"]
