"""Evaluation results as tables and files: metric order and direction, means, CSV, JSON, a text table.

Pure bookkeeping over rows (one dict per image); no model is loaded here.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import ImageReadError
from ..imageio import atomic_write, check_output_file

#: Every metric `evaluate` computes, in the column order of its tables.
METRICS: tuple[str, ...] = ("clip_score", "patch_clip_score", "clip_direction", "lpips_vgg", "lpips_alex",
                            "dists", "ssim", "content_loss")
#: The metrics that need a CLIP model (the others need only VGG/AlexNet weights).
CLIP_METRICS = frozenset({"clip_score", "patch_clip_score", "clip_direction"})
#: For each metric, whether a higher value is better (CLIP scores, SSIM) or worse (distances).
HIGHER_IS_BETTER: dict[str, bool] = {
    "clip_score": True, "patch_clip_score": True, "clip_direction": True, "lpips_vgg": False,
    "lpips_alex": False, "dists": False, "ssim": True, "content_loss": False,
    "warp_error": False, "warp_error_input": False,  # videos only (`clipstyle_opt.evaluate.video`)
}
#: Long side in px at which outputs and photos are compared (``--eval-size``), the reference's 512.
DEFAULT_SIZE = 512


def higher_is_better(column: str) -> bool:
    """Direction of a metric column, per-encoder columns (``clip_score[MODEL]``) included."""
    return HIGHER_IS_BETTER[column.split("[", 1)[0]]


#: The format tag written into metrics JSON files; `read_results` checks it.
EVAL_FORMAT = "clipstyle_opt.eval/1"



def metric_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The metrics present in ``rows``, in canonical order; per-encoder columns (``clip_score[MODEL]``)
    follow their metric, in the order they first appear."""
    present = list(dict.fromkeys(key for row in rows for key in row))
    names = []
    for name in (*METRICS, "warp_error", "warp_error_input"):
        names += [key for key in present if key == name or key.startswith(name + "[")]
    return names


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean of each metric over the rows that have it."""
    out = {}
    for name in metric_names(rows):
        values = [row[name] for row in rows if isinstance(row.get(name), (int, float))]
        if values:
            out[name] = sum(values) / len(values)
    return out


def check_outputs(*paths: str | os.PathLike | None, overwrite: bool = False,
                  inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse, before any work, output files that exist (unless ``overwrite``), that are one of ``inputs``
    (an image, its sidecar, a content photo) or whose directory is missing or unwritable."""
    inputs = list(inputs)
    for path in paths:
        if path is not None:
            check_output_file(path, overwrite, inputs=inputs)


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as CSV: image, content, prompt, source_text, width, height, then the metrics."""
    columns = ["image", "content", "prompt", "source_text", "width", "height", *metric_names(rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def write_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `csv_text` atomically; refuses an existing file unless ``overwrite``."""
    path = check_output_file(path, overwrite)
    text = csv_text(rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def write_json(rows: Sequence[dict[str, Any]], path: str | os.PathLike, *, settings: dict[str, Any] | None = None,
               overwrite: bool = False) -> Path:
    """Write ``{"format", "settings", "results": rows, "mean"}`` atomically (what `report --metrics` reads)."""
    path = check_output_file(path, overwrite)
    payload = {"format": EVAL_FORMAT, "settings": settings or {}, "results": list(rows), "mean": summarize(rows)}
    text = json.dumps(payload, indent=2, allow_nan=True) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of an eval JSON file written by `write_json` (or a bare list of rows), as stored."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImageReadError(f"metrics file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ImageReadError(f"metrics file is not valid JSON: {path}") from None
    rows = payload.get("results") if isinstance(payload, dict) else payload
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "image" in r for r in rows):
        raise ImageReadError(f"{path} is not a `clipstyle eval --json` file")
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: one line per image (file name and prompt), the metrics, and a mean line."""
    names = metric_names(rows)
    arrows = {True: "+", False: "-"}
    header = ["image", "prompt", *[f"{n}({arrows[higher_is_better(n)]})" for n in names]]

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "nan" if math.isnan(value) else f"{value:.4f}"
        return str(value)

    lines = [[Path(r["image"]).name, _clip_text(r.get("prompt", ""), 32), *[cell(r.get(n, "")) for n in names]]
             for r in rows]
    if len(rows) > 1:
        mean = summarize(rows)
        lines.append(["mean", "", *[cell(mean.get(n, "")) for n in names]])
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:  # texts left-aligned, numbers right-aligned
        cells = [str(v).ljust(w) if i < 2 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()
    return "\n".join([fmt(header), *(fmt(line) for line in lines)])


def _clip_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
