"""Objective against subjective: how well each metric follows the human ratings of the same outputs.

Reads the report page's rating export (``clipstyle report`` -> rating mode -> Export ratings (CSV):
columns ``rater, content_image, output, label, prompt, blind, shuffle_seed, position, style_rating,
content_rating``; several raters' files may be concatenated) and a metrics table (a sweep's
``results.csv`` or ``clipstyle eval --csv``, with an ``image`` column). Per metric it gives Spearman's rho
and Kendall's tau-b against the mean style and mean content rating of each output, each with a
percentile bootstrap 95 % interval (outputs resampled with replacement), and the raters' agreement:
Kendall's W (coefficient of concordance, tie-corrected) and the mean pairwise Spearman between raters.
"""
from __future__ import annotations

import csv
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import ClipstyleError, ConfigError, ImageReadError
from ..imageio import atomic_write, check_output_file, read_user_text
from .columns import TIMINGS

RATING_COLUMNS = ("rater", "output", "style_rating", "content_rating")
TARGETS = ("style", "content")
# "seconds": the scoring time column of `clipstyle eval --csv` tables.
_BOOKKEEPING = {"run_id", "status", "image", "content", "content_path", "style_image", "style_image_path", "prompt",
                "source_text", "error", "width", "height", "seed", "variant", "seconds", *TIMINGS}


def _stats() -> Any:
    try:
        from scipy import stats
    except ImportError:
        raise ClipstyleError("correlate needs scipy: pip install 'clipstyle_opt[sweep]'") from None
    return stats


def _read_csv(path: str | os.PathLike, what: str) -> list[dict[str, str]]:
    text = read_user_text(path, what, ImageReadError, encoding="utf-8-sig")
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    rows = [row for row in reader if any((v or "").strip() for v in row.values())
            and [row.get(h) for h in header] != header]  # concatenated exports repeat their header
    return rows if header else []


def _number(text: Any) -> Optional[float]:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_ratings(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rated lines of a rating export: rater, output, and the style/content rating (1..5 or None)."""
    rows = _read_csv(path, "ratings file")
    if not rows or any(c not in rows[0] for c in RATING_COLUMNS):
        raise ImageReadError(f"{path} is not a rating export of `clipstyle report` (needs columns "
                             f"{', '.join(RATING_COLUMNS)})")
    out = []
    for line, row in enumerate(rows, 2):
        ratings = {}
        for target in TARGETS:
            value = _number(row.get(f"{target}_rating"))
            if value is not None and not 1 <= value <= 5:
                raise ImageReadError(f"{path}: line {line}: {target}_rating must be 1..5, got {row[f'{target}_rating']}")
            ratings[target] = value
        if ratings["style"] is None and ratings["content"] is None:
            continue  # shown but not rated
        out.append({"rater": row.get("rater") or "(anonymous)", "output": row["output"], **ratings})
    if not out:
        raise ImageReadError(f"{path} holds no ratings")
    return out


def _norm(path: str) -> str:
    return Path(str(path).replace("\\", "/")).as_posix().lstrip("./")


def match_outputs(outputs: Sequence[str], results: Sequence[dict[str, str]]) -> dict[str, dict[str, str]]:
    """Result row of each rated output: the same path (as the report shows it), one path ending in the other,
    else the only row with that file name."""
    by_path = {_norm(row["image"]): row for row in results if row.get("image")}
    by_name: dict[str, list[dict[str, str]]] = {}
    for row in results:
        if row.get("image"):
            by_name.setdefault(Path(row["image"]).name, []).append(row)
    matched = {}
    for output in outputs:
        key = _norm(output)
        row = by_path.get(key) or next((r for p, r in by_path.items()
                                        if p.endswith("/" + key) or key.endswith("/" + p)), None)
        if row is None and len(by_name.get(Path(output).name, [])) == 1:
            row = by_name[Path(output).name][0]
        if row is not None:
            matched[output] = row
    return matched


def metric_columns(results: Sequence[dict[str, str]], axes: Sequence[str] = ()) -> list[str]:
    """Numeric columns that are metrics: eval metrics and loss terms that vary, not axes or bookkeeping."""
    columns = list(results[0]) if results else []
    out = []
    for column in columns:
        if column in _BOOKKEEPING or column in axes:
            continue
        values = {v for v in (_number(row.get(column)) for row in results) if v is not None}
        if len(values) > 1:
            out.append(column)
    return out


def sweep_axes(results: str | os.PathLike) -> list[str]:
    """The axes of the sweep whose ``results.csv`` this is (from its ``sweep.json``), else []."""
    import json

    manifest = Path(results).parent / "sweep.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    axes = data.get("axes") if isinstance(data, dict) else None
    return [a for a in axes if isinstance(a, str)] if isinstance(axes, list) else []


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank)."""
    return _stats().rankdata(values, axis=-1)


def spearman_many(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of x and y (B, n): the Pearson correlation of their average ranks."""
    rx, ry = _ranks(x), _ranks(y)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (rx * ry).sum(-1) / np.where(denominator > 0, denominator, 1), np.nan)


def kendall_many(x: np.ndarray, y: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Kendall's tau-b of each row pair of x and y (B, n), from the signs of all pairwise differences."""
    out = np.empty(x.shape[0])
    n = x.shape[-1]
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    for start in range(0, x.shape[0], chunk):
        xs, ys = x[start:start + chunk], y[start:start + chunk]
        dx = np.sign(xs[:, :, None] - xs[:, None, :])[:, upper]
        dy = np.sign(ys[:, :, None] - ys[:, None, :])[:, upper]
        s = (dx * dy).sum(-1)
        denominator = np.sqrt((dx != 0).sum(-1).astype(float) * (dy != 0).sum(-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + chunk] = np.where(denominator > 0, s / np.where(denominator > 0, denominator, 1), np.nan)
    return out


def bootstrap_interval(x: np.ndarray, y: np.ndarray, statistic: Any, n_boot: int,
                       rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of ``statistic`` over resampled pairs (NaN resamples dropped)."""
    index = rng.integers(0, len(x), size=(n_boot, len(x)))
    values = statistic(x[index], y[index])
    values = values[np.isfinite(values)]
    if len(values) < n_boot // 2:
        return math.nan, math.nan
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def kendall_w(matrix: np.ndarray) -> float:
    """Kendall's W of an (m raters, n outputs) rating matrix, with the correction for tied ranks."""
    m, n = matrix.shape
    if m < 2 or n < 2:
        return math.nan
    ranks = _ranks(matrix)
    totals = ranks.sum(axis=0)
    s = float(((totals - totals.mean()) ** 2).sum())
    ties = 0.0
    for row in matrix:
        _, counts = np.unique(row, return_counts=True)
        ties += float((counts ** 3 - counts).sum())
    denominator = m * m * (n ** 3 - n) - m * ties
    return 12 * s / denominator if denominator > 0 else math.nan


@dataclass
class Correlation:
    """The result: one row per (metric, target), the agreement per target, and what was matched."""

    rows: list[dict[str, Any]]
    agreement: dict[str, dict[str, Any]]
    raters: list[str]
    outputs: int
    unmatched: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def write_csv(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write one row per metric (coefficients, 95 % intervals, n) as CSV to ``path`` (refuses to
        replace a file unless ``overwrite``); returns the path.
        """
        path = check_output_file(path, overwrite)
        columns = list(self.rows[0]) if self.rows else ["metric"]

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
                writer.writeheader()
                writer.writerows(self.rows)
        atomic_write(path, write)
        return path


def correlate(ratings: str | os.PathLike, results: str | os.PathLike, *, metrics: Optional[Sequence[str]] = None,
              n_boot: int = 2000, seed: int = 0) -> Correlation:
    """Correlate each metric of ``results`` with the mean ratings in ``ratings`` (see the module docstring)."""
    stats = _stats()
    rated = read_ratings(ratings)
    table = _read_csv(results, "results table")
    if not table or "image" not in table[0]:
        raise ImageReadError(f"{results} is not a results table with an image column (a sweep's results.csv "
                             "or `clipstyle eval --csv`)")
    outputs = list(dict.fromkeys(r["output"] for r in rated))
    matched = match_outputs(outputs, table)
    unmatched = [o for o in outputs if o not in matched]
    if len(matched) < 3:
        raise ImageReadError(f"only {len(matched)} of the {len(outputs)} rated outputs are in {results}; need at "
                             "least 3 (outputs are matched by the path the report shows, else by file name)")
    available = metric_columns(table, sweep_axes(results))
    if metrics:
        unknown = [m for m in metrics if m not in table[0]]
        if unknown:
            raise ConfigError(f"--metrics: no column {', '.join(map(repr, unknown))} in {results} "
                              f"(metrics there: {', '.join(available)})")
        chosen = list(metrics)
    else:
        chosen = available
    if not chosen:
        raise ConfigError(f"{results} has no metric columns (run the sweep with --eval, or use `clipstyle eval --csv`)")
    raters = list(dict.fromkeys(r["rater"] for r in rated))
    keys = [o for o in outputs if o in matched]
    means: dict[str, np.ndarray] = {}
    for target in TARGETS:
        values = []
        for output in keys:
            scores = [r[target] for r in rated if r["output"] == output and r[target] is not None]
            values.append(float(np.mean(scores)) if scores else math.nan)
        means[target] = np.array(values)
    rng = np.random.default_rng(seed)
    rows = []
    for metric in chosen:
        column = np.array([_number(matched[o].get(metric)) if _number(matched[o].get(metric)) is not None
                           else math.nan for o in keys])
        for target in TARGETS:
            ok = np.isfinite(column) & np.isfinite(means[target])
            x, y = column[ok], means[target][ok]
            row: dict[str, Any] = {"metric": metric, "target": f"{target}_rating", "n": int(ok.sum())}
            if ok.sum() >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
                row["spearman"] = float(stats.spearmanr(x, y).statistic)
                row["spearman_lo"], row["spearman_hi"] = bootstrap_interval(x, y, spearman_many, n_boot, rng)
                row["kendall"] = float(stats.kendalltau(x, y).statistic)
                row["kendall_lo"], row["kendall_hi"] = bootstrap_interval(x, y, kendall_many, n_boot, rng)
            else:
                row.update({k: math.nan for k in ("spearman", "spearman_lo", "spearman_hi", "kendall", "kendall_lo",
                                                  "kendall_hi")})
            rows.append(row)
    agreement = {target: rater_agreement(rated, target) for target in TARGETS}
    data = {"outputs": keys, "means": {t: means[t].tolist() for t in TARGETS},
            "metrics": {m: [_number(matched[o].get(m)) for o in keys] for m in chosen}}
    return Correlation(rows, agreement, raters, len(keys), unmatched, data)


def rater_agreement(rated: Sequence[dict[str, Any]], target: str) -> dict[str, Any]:
    """Kendall's W over the outputs every rater rated, and the mean Spearman over pairs of raters."""
    by_rater: dict[str, dict[str, float]] = {}
    for r in rated:
        if r[target] is not None:
            by_rater.setdefault(r["rater"], {})[r["output"]] = r[target]
    raters = list(by_rater)
    if len(raters) < 2:
        return {"raters": len(raters), "kendall_w": math.nan, "mean_pairwise_spearman": math.nan, "common": 0}
    common = sorted(set.intersection(*(set(v) for v in by_rater.values())))
    matrix = np.array([[by_rater[r][o] for o in common] for r in raters]) if common else np.zeros((len(raters), 0))
    stats = _stats()
    pairs = []
    for a, b in itertools.combinations(raters, 2):
        shared = sorted(set(by_rater[a]) & set(by_rater[b]))
        x = np.array([by_rater[a][o] for o in shared])
        y = np.array([by_rater[b][o] for o in shared])
        if len(shared) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
            pairs.append(float(stats.spearmanr(x, y).statistic))
    return {"raters": len(raters), "common": len(common),
            "kendall_w": kendall_w(matrix) if len(common) >= 2 else math.nan,
            "mean_pairwise_spearman": float(np.mean(pairs)) if pairs else math.nan}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:+.3f}"
    return str(value)


def format_report(report: Correlation) -> str:
    """The plain-text table ``clipstyle correlate`` prints."""
    lines = [f"{report.outputs} rated outputs matched, {len(report.raters)} rater(s)"
             + (f"; {len(report.unmatched)} rated output(s) not in the results" if report.unmatched else "")]
    header = ["metric", "vs", "n", "spearman", "95% CI", "kendall", "95% CI"]
    table = [header]
    for row in report.rows:
        table.append([row["metric"], row["target"].replace("_rating", ""), str(row["n"]), _cell(row["spearman"]),
                      f"[{_cell(row['spearman_lo'])}, {_cell(row['spearman_hi'])}]", _cell(row["kendall"]),
                      f"[{_cell(row['kendall_lo'])}, {_cell(row['kendall_hi'])}]"])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines += ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
              for r in table]
    for target, agreement in report.agreement.items():
        if agreement["raters"] < 2:
            lines.append(f"rater agreement ({target}): one rater, none to compute")
        else:
            lines.append(f"rater agreement ({target}): Kendall's W {_cell(agreement['kendall_w'])} over "
                         f"{agreement['common']} outputs all {agreement['raters']} raters rated; mean pairwise "
                         f"Spearman {_cell(agreement['mean_pairwise_spearman'])}")
    return "\n".join(lines)


def plot_correlations(report: Correlation, directory: str | os.PathLike, *, overwrite: bool = False) -> list[Path]:
    """One PNG per metric: the metric against the mean style and the mean content rating (scatter)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ClipstyleError("--plot needs matplotlib: pip install 'clipstyle_opt[sweep]'") from None
    directory = Path(directory)
    written = []
    for metric, values in report.data["metrics"].items():
        target_path = directory / f"correlate_{metric.replace('/', '_')}.png"
        check_output_file(target_path, overwrite, create_dirs=True)
        figure = Figure(figsize=(8, 3.4), layout="constrained")
        FigureCanvasAgg(figure)
        for index, target in enumerate(TARGETS):
            ax = figure.add_subplot(1, 2, index + 1)
            x = np.array([math.nan if v is None else v for v in values])
            y = np.array(report.data["means"][target])
            ax.scatter(x, y, s=18)
            row = next(r for r in report.rows if r["metric"] == metric and r["target"] == f"{target}_rating")
            ax.set_title(f"{target}: rho {_cell(row['spearman'])}, tau {_cell(row['kendall'])}", fontsize=10)
            ax.set_xlabel(metric)
            ax.set_ylabel(f"mean {target} rating")
            ax.grid(alpha=0.3)
        atomic_write(target_path, lambda tmp: figure.savefig(tmp, format="png", dpi=80))
        written.append(target_path)
    return written


__all__ = ["correlate", "Correlation", "read_ratings", "match_outputs", "kendall_w", "spearman_many",
           "kendall_many", "format_report", "plot_correlations"]
