"""A self-contained HTML page comparing outputs side by side: what `clipstyle report` writes.

The page needs no server and no network: images are embedded as JPEG data
URIs (shrunk to ``max_side`` px), the data as JSON, the code as inline
JavaScript (template: ``report_template.html`` beside this module).

Per content image it shows the content and each output made from it, with
the prompt, the settings that differ (between the outputs of that content or
from the reference defaults) and, when given, the metrics. Buttons sort the
outputs by any metric. A rating mode collects 1-5 "style" and "content"
ratings per output (the paper's user study), optionally blind (labels,
settings and metrics hidden; order shuffled by a seed), and exports them as
a CSV file (also readable as ``window.ratingsCSV()`` and from the hidden
``#ratings-csv`` textarea).
"""
from __future__ import annotations

import base64
import io
import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Sequence

from PIL import Image

from .config import StyleConfig
from .errors import ConfigError, ImageReadError
from .evaluate import DEFAULT_SIZE, higher_is_better, metric_names, read_results
from .evaluate.evaluator import _find_content
from .imageio import atomic_write, check_output_file, read_image, read_metadata

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
DEFAULT_MAX_SIDE = 512
_TEMPLATE = "report_template.html"
_DATA_MARK = "/*__REPORT_DATA__*/null"
_TITLE_MARK = "__REPORT_TITLE__"


def collect_outputs(directory: str | os.PathLike) -> list[tuple[Path, dict[str, Any]]]:
    """Output images under ``directory`` (recursively) with their metadata, sorted by path.

    An output is an image whose sidecar or PNG metadata records a prompt;
    intermediate step images (``--save-every``) and plain photos are skipped.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ImageReadError(f"not a directory: {root}")
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        metadata = read_metadata(path)
        if isinstance(metadata.get("prompt"), str) and "step" not in metadata:
            found.append((path, metadata))
    return found


def _canonical(value: Any) -> Any:
    """Numbers as floats (150 == 150.0), tuples as lists: how settings compare."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    return str(value)


def _same(a: Any, b: Any) -> bool:
    return _canonical(a) == _canonical(b)


def config_differences(configs: Sequence[dict[str, Any]], defaults: dict[str, Any] | None = None) -> list[str]:
    """Config keys worth showing: values differ between the outputs that record the key, or from the default."""
    defaults = StyleConfig().to_dict() if defaults is None else defaults
    keys: list[str] = []
    for config in configs:
        keys.extend(k for k in config if k not in keys)
    shown = []
    for key in keys:
        values = [config[key] for config in configs if key in config]
        differs_between = any(not _same(v, values[0]) for v in values[1:])
        differs_from_default = key in defaults and any(not _same(v, defaults[key]) for v in values)
        if differs_between or differs_from_default or key not in defaults:
            shown.append(key)
    return shown


def image_data_uri(path: str | os.PathLike, max_side: int = DEFAULT_MAX_SIDE,
                   quality: int = 90) -> tuple[str, int, int]:
    """A JPEG data URI of the image shrunk to ``max_side`` px on its long side; also its original (width, height)."""
    image = read_image(path)
    width, height = image.size
    image = image.convert("RGB")
    if max(width, height) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), width, height


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _match_metrics(outputs: Sequence[Path], rows: Sequence[dict[str, Any]],
                   base: Optional[Path]) -> dict[Path, dict[str, Any]]:
    """Rows keyed by output: the same resolved path (as given, or against ``base``), else the same unique file name."""
    by_path: dict[Path, dict[str, Any]] = {}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        image = Path(str(row["image"]))
        for candidate in (image, (base / image) if base and not image.is_absolute() else None):
            if candidate is not None:
                by_path.setdefault(candidate.resolve(), row)
        by_name.setdefault(image.name, []).append(row)
    matched = {}
    for path in outputs:
        row = by_path.get(path.resolve())
        if row is None and len(by_name.get(path.name, [])) == 1:
            row = by_name[path.name][0]
        if row is not None:
            matched[path] = row
    return matched


def build_report_data(directory: str | os.PathLike, *, metric_rows: Sequence[dict[str, Any]] | None = None,
                      metrics_base: str | os.PathLike | None = None, max_side: int = DEFAULT_MAX_SIDE,
                      title: str | None = None, axes: Sequence[str] = ()) -> dict[str, Any]:
    """Everything the page shows, as JSON-able data (images as data URIs).

    axes: numeric columns of ``metric_rows`` shown and sortable beside the metrics (a sweep's axes;
    sorted ascending first, with no better direction).
    """
    outputs = collect_outputs(directory)
    if not outputs:
        raise ImageReadError(f"no outputs with metadata (a JSON sidecar with a prompt) under {directory}")
    matched = _match_metrics([p for p, _ in outputs], metric_rows or [],
                             Path(metrics_base) if metrics_base else None)
    metric_keys = metric_names(list(matched.values())) + list(axes)  # per-encoder columns included
    groups: dict[str, dict[str, Any]] = {}
    for path, metadata in outputs:
        recorded = metadata.get("content")
        content_path = _find_content(str(recorded), path) if recorded else None
        key = str(content_path.resolve()) if content_path else str(recorded or "(content not recorded)")
        group = groups.setdefault(key, {"content_path": content_path, "content_name": Path(key).name,
                                        "items": []})
        group["items"].append((path, metadata))

    data_groups = []
    root = Path(directory)
    next_id = 0
    for group_index, group in enumerate(groups.values()):
        configs = [dict(md.get("config") or {}, **({"style_image": md["style_image"]} if md.get("style_image") else {}))
                   for _, md in group["items"]]
        shown = config_differences(configs)
        content = None
        if group["content_path"] is not None:
            src, width, height = image_data_uri(group["content_path"], max_side)
            content = {"src": src, "width": width, "height": height}
        items = []
        for (path, metadata), config in zip(group["items"], configs):
            src, width, height = image_data_uri(path, max_side)
            row = matched.get(path, {})
            items.append({
                "id": next_id, "file": str(path.relative_to(root)),
                "label": str(metadata.get("method") or metadata.get("label") or path.stem),
                "prompt": metadata["prompt"], "src": src, "width": width, "height": height,
                "config": [[k, _show(config[k])] for k in shown if k in config],
                "metrics": {m: row[m] for m in metric_keys
                            if isinstance(row.get(m), (int, float)) and math.isfinite(row[m])},
            })
            next_id += 1
        data_groups.append({"id": group_index, "content_name": group["content_name"], "content": content,
                            "outputs": items})
    return {
        "title": title or f"clipstyle report: {root.resolve().name}",
        "metrics": [{"key": m, "higher_is_better": False, "axis": True} if m in axes
                    else {"key": m, "higher_is_better": higher_is_better(m)} for m in metric_keys],
        "groups": data_groups,
    }


def render_html(data: dict[str, Any]) -> str:
    """The page: the template with ``data`` inlined (``<`` escaped so no text can close the script)."""
    template = resources.files(__package__).joinpath(_TEMPLATE).read_text(encoding="utf-8")
    blob = json.dumps(data, allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    title = (data.get("title") or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # One pass, so nothing inserted (a prompt, the title) is searched for marks again.
    values = {_DATA_MARK: blob, _TITLE_MARK: title}
    return re.sub("|".join(re.escape(mark) for mark in values), lambda m: values[m.group(0)], template)


def write_report(directory: str | os.PathLike, output: str | os.PathLike, *,
                 metrics_file: str | os.PathLike | None = None,
                 clip_model: str | None = None, device: str = "auto", seed: int = 0, size: int | None = DEFAULT_SIZE,
                 max_side: int = DEFAULT_MAX_SIDE, title: str | None = None, overwrite: bool = False) -> Path:
    """Write the report page for the outputs under ``directory``; returns its path.

    Metrics come from ``metrics_file`` (a `clipstyle eval --json` file) or
    are computed here with ``clip_model`` (`clipstyle_opt.evaluate.evaluate`
    with ``device``, ``seed`` and ``size``); with neither, the page shows
    none. Refuses to overwrite unless asked.
    """
    output = Path(output)
    if output.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"the report must be an .html file: {output}")
    check_output_file(output, overwrite, inputs=[metrics_file] if metrics_file is not None else ())
    if metrics_file is not None and clip_model is not None:
        raise ConfigError("give either a metrics file or a CLIP model to compute metrics, not both")
    if not 32 <= max_side <= 4096:
        raise ConfigError(f"max_side must be in 32..4096 px, got {max_side}")
    rows: list[dict[str, Any]] = []
    base = None
    axes: list[str] = []
    from .sweeps.store import is_sweep_dir

    if metrics_file is None and clip_model is None and is_sweep_dir(directory):
        rows, base, axes = sweep_rows(directory)
    elif metrics_file is not None:
        rows, base = read_results(metrics_file), Path(metrics_file).parent
    elif clip_model is not None:
        from .evaluate import evaluate

        outputs = [path for path, _ in collect_outputs(directory)]
        if not outputs:
            raise ImageReadError(f"no outputs with metadata (a JSON sidecar with a prompt) under {directory}")
        rows = evaluate(outputs, clip_model=clip_model, device=device, seed=seed, size=size).rows
    data = build_report_data(directory, metric_rows=rows, metrics_base=base, max_side=max_side, title=title,
                             axes=axes)
    html = render_html(data)
    atomic_write(output, lambda tmp: Path(tmp).write_text(html, encoding="utf-8"))
    return output


def sweep_rows(directory: str | os.PathLike) -> tuple[list[dict[str, Any]], Path, list[str]]:
    """A sweep directory's finished rows (eval metrics included when it ran with ``--eval``), the folder
    their image paths are relative to, and its numeric axes (sortable columns of the page)."""
    from .sweeps.plots import numeric_axes
    from .sweeps.store import SweepStore

    store = SweepStore(directory)
    rows = [row for row in store.rows() if row.get("status") == "ok"]
    axes = numeric_axes(rows, store.manifest().get("varying_axes") or [])
    return rows, Path(directory), axes
