"""One PNG per numeric axis: each metric against the axis, mean with its spread (min..max and +-1 std)
over the other axes. Drawn with matplotlib's Agg canvas (no display, no global backend switch)."""
from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any, Sequence

from ..errors import ClipstyleError
from ..imageio import atomic_write
from .columns import TIMINGS

#: The sweep directory's folder of per-axis plots.
PLOTS_DIR = "plots"
_NOT_METRICS = {"run_id", "status", "image", "content_path", "style_image_path", "error", "seed"}
# Bookkeeping times stay in results.csv but not in the plots: of the timings only train_s (the
# optimization, what a setting costs) is worth a panel beside the metrics.
_NOT_PLOTTED_TIMES = TIMINGS - {"train_s"}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def numeric_axes(rows: Sequence[dict[str, Any]], varying: Sequence[str]) -> list[str]:
    """Varying axes whose values are all numbers, with at least two distinct ones."""
    out = []
    for axis in varying:
        values = [row.get(axis) for row in rows]
        if values and all(_number(v) for v in values) and len(set(values)) > 1:
            out.append(axis)
    return out


def metric_columns(rows: Sequence[dict[str, Any]], axes: Sequence[str]) -> list[str]:
    """Numeric result columns of the finished runs that differ between them (losses, ``train_s``, eval
    metrics), in table order; a column with one value across all runs has nothing to plot."""
    ok = [row for row in rows if row.get("status") == "ok"]
    columns: list[str] = []
    for row in ok:
        columns.extend(k for k in row if k not in columns)
    return [c for c in columns if c not in _NOT_METRICS and c not in _NOT_PLOTTED_TIMES and c not in axes
            and len({row.get(c) for row in ok if _number(row.get(c))}) > 1]


def axis_plots(directory: str | os.PathLike, rows: Sequence[dict[str, Any]], varying: Sequence[str]) -> list[Path]:
    """Write ``DIR/plots/<axis>.png`` for every numeric varying axis; returns the paths."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ClipstyleError("plots need matplotlib: pip install 'clipstyle_opt[sweep]'") from None
    ok = [row for row in rows if row.get("status") == "ok"]
    axes = numeric_axes(rows, varying)
    metrics = metric_columns(ok, varying)
    written = []
    for axis in axes:
        if not metrics:
            break
        columns = min(3, len(metrics))
        lines = math.ceil(len(metrics) / columns)
        figure = Figure(figsize=(4 * columns, 3 * lines), layout="constrained")
        FigureCanvasAgg(figure)
        for index, metric in enumerate(metrics):
            ax = figure.add_subplot(lines, columns, index + 1)
            xs = sorted({row[axis] for row in ok})
            means, lows, highs, stds = [], [], [], []
            for x in xs:
                values = [row[metric] for row in ok if row[axis] == x and _number(row.get(metric))]
                means.append(statistics.fmean(values) if values else math.nan)
                lows.append(min(values) if values else math.nan)
                highs.append(max(values) if values else math.nan)
                stds.append(statistics.pstdev(values) if len(values) > 1 else 0.0)
            ax.fill_between(xs, lows, highs, alpha=0.15, label="min..max")
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label="mean +- std")
            ax.set_xlabel(axis)
            ax.set_title(metric, fontsize=10)
            ax.grid(alpha=0.3)
            if index == 0:
                ax.legend(fontsize=7)
        others = len(ok) // max(1, len({row[axis] for row in ok}))
        figure.suptitle(f"metrics against {axis} (spread over {others} run(s) per value)", fontsize=11)
        target = Path(directory) / PLOTS_DIR / f"{axis}.png"
        atomic_write(target, lambda tmp: figure.savefig(tmp, format="png", dpi=80))
        written.append(target)
    return written


__all__ = ["axis_plots", "numeric_axes", "metric_columns", "PLOTS_DIR"]
