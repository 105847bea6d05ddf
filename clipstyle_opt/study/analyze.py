"""`clipstyle study analyze`: the study's statistics as CSV and Markdown tables and plots in one folder.

Files: ``ratings.csv`` (the export of the raters kept), ``mos.csv`` or ``preference.csv`` +
``bradley_terry.csv``, ``agreement.csv``, ``excluded.csv``, ``report.md`` (every table), ``mos.png`` or
``bradley_terry.png``, and with a metrics file ``correlation.csv`` (through `clipstyle correlate`).
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ..errors import ConfigError, OutputPathError
from ..imageio import atomic_write, check_output_file
from .analysis import bradley_terry, krippendorff_alpha, mos_table, preference_table
from .export import export_rows, export_text
from .records import StudyRecords

QUESTIONS = ("style", "content")


@dataclass
class Analysis:
    """What `analyze` wrote: the Markdown report's text and every file (CSV, Markdown, PNG) it wrote."""

    markdown: str
    files: list[Path] = field(default_factory=list)


def excluded_raters(records: StudyRecords, keep_inconsistent: bool = False) -> dict[int, list[str]]:
    """rater id -> reasons, for raters failing a control, or (unless ``keep_inconsistent``) a repeat."""
    out = {}
    for rater_id, reasons in records.failures().items():
        kept = [r for r in reasons if not (keep_inconsistent and r.startswith("repeat"))]
        if kept:
            out[rater_id] = kept
    return out


def _kept(records: StudyRecords, excluded: dict[int, list[str]]) -> StudyRecords:
    return StudyRecords(records.study, records.items, records.sheets,
                        [r for r in records.raters if r["id"] not in excluded],
                        [r for r in records.ratings if r["rater_id"] not in excluded])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table of ``rows`` with ``columns`` in that order (numbers rounded for reading; "(none)" if empty)."""
    if not rows:
        return "(none)\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(row.get(c, "")).replace("|", "\\|") for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()} for row in rows])
    return buffer.getvalue()


def _plot_mos(table: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in table))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(methods) + 2), 3.2))
    width = 0.38
    for offset, question in zip((-width / 2, width / 2), QUESTIONS):
        rows = [next(r for r in table if r["method"] == m and r["question"] == question) for m in methods]
        means = [r["mos"] for r in rows]
        errors = [[max(0.0, r["mos"] - r["low"]) for r in rows], [max(0.0, r["high"] - r["mos"]) for r in rows]]
        ax.bar([i + offset for i in range(len(methods))], means, width, yerr=errors, capsize=3, label=question)
    ax.set_xticks(range(len(methods)), methods, rotation=20, ha="right")
    ax.set_ylim(1, 5)
    ax.set_ylabel("MOS (1-5), 95 % bootstrap CI")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def _plot_bt(table: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(QUESTIONS), figsize=(8, 3.2))
    for ax, question in zip(axes, QUESTIONS):
        rows = [r for r in table if r["question"] == question]
        ax.barh([r["method"] for r in rows][::-1], [r["strength"] for r in rows][::-1])
        ax.set_title(f"{question}: Bradley-Terry strength")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def analyze_study(records: StudyRecords, directory: str | os.PathLike, *, metrics_file: Optional[str] = None,
                  n_boot: int = 2000, seed: int = 0, keep_inconsistent: bool = False,
                  overwrite: bool = False) -> Analysis:
    """Write the analysis of ``records`` into ``directory`` (created) and return its Markdown."""
    if n_boot < 100:
        raise ConfigError(f"--bootstrap must be at least 100, got {n_boot}")
    design = records.study["design"]
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"not a directory: {out}")
    out.mkdir(parents=True, exist_ok=True)
    names = ["ratings.csv", "agreement.csv", "excluded.csv", "report.md"]
    names += ["mos.csv", "mos.png"] if design == "mos" else ["preference.csv", "bradley_terry.csv", "bradley_terry.png"]
    if metrics_file:
        if design != "mos":
            raise ConfigError("--metrics: correlation with metrics needs a mos study (ratings on 1-5)")
        names += ["correlation.csv"] + (["metrics.csv"] if metrics_file.lower().endswith(".json") else [])
    for name in names:
        check_output_file(out / name, overwrite, inputs=[metrics_file] if metrics_file else ())
    excluded = excluded_raters(records, keep_inconsistent)
    kept = _kept(records, excluded)
    rows = export_rows(kept)
    sections = [f"# Study {records.study['name']} ({design})\n",
                f"Raters: {len(records.raters)} joined, {len(excluded)} excluded by the attention checks, "
                f"{len(kept.raters)} kept; {len(rows)} rated screens kept.\n"]
    texts: dict[str, str] = {"ratings.csv": export_text(kept)}
    triples: dict[str, list[tuple[Any, Any, float]]] = {q: [] for q in QUESTIONS}
    for row in rows:
        for question in QUESTIONS:
            value = row[f"{question}_rating"] if design == "mos" else "ab".index(row[f"{question}_choice"]) + 1
            triples[question].append((row["rater"], row["item"], float(value)))
    level = "ordinal" if design == "mos" else "nominal"
    agreement = [{"question": q, "level": level, "alpha": krippendorff_alpha(triples[q], level),
                  "ratings": len(triples[q])} for q in QUESTIONS]
    tables: list[tuple[str, list[dict[str, Any]], list[str]]] = []
    if design == "mos":
        table = mos_table([{"label": r["label"], "style": r["style_rating"], "content": r["content_rating"]}
                           for r in rows], n_boot=n_boot, seed=seed)
        tables.append(("MOS per method (bootstrap 95 % interval)", table,
                       ["method", "question", "n", "mos", "low", "high"]))
        texts["mos.csv"] = _csv(table, tables[-1][2])
    else:
        comparisons = [{"question": q, "label_a": r["label_a"], "label_b": r["label_b"], "winner": r[f"{q}_winner"]}
                       for r in rows for q in QUESTIONS]
        preference = preference_table(comparisons)
        strengths = [row for q in QUESTIONS for row in bradley_terry(comparisons, q)]
        tables.append(("Preference between methods (Wilson 95 % interval of rate_a)", preference,
                       ["question", "method_a", "method_b", "n", "a_preferred", "rate_a", "low", "high"]))
        tables.append(("Bradley-Terry ranking (choix, log strength)", strengths,
                       ["question", "rank", "method", "strength", "wins", "comparisons"]))
        texts["preference.csv"] = _csv(preference, tables[-2][2])
        texts["bradley_terry.csv"] = _csv(strengths, tables[-1][2])
    tables.append((f"Inter-rater agreement (Krippendorff's alpha, {level})", agreement,
                   ["question", "level", "alpha", "ratings"]))
    texts["agreement.csv"] = _csv(agreement, tables[-1][2])
    tokens = {r["id"]: r for r in records.raters}
    excluded_rows = [{"rater": tokens[i]["token"], "participant": tokens[i]["participant"] or "",
                      "reasons": "; ".join(reasons)} for i, reasons in excluded.items()]
    tables.append(("Raters excluded by the attention checks", excluded_rows, ["rater", "participant", "reasons"]))
    texts["excluded.csv"] = _csv(excluded_rows, tables[-1][2])
    for title, table, columns in tables:
        sections.append(f"## {title}\n\n{markdown_table(table, columns)}")
    files = []
    for name, text in texts.items():
        atomic_write(out / name, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
        files.append(out / name)
    if metrics_file:
        sections.append(_correlation(out, metrics_file, n_boot, seed, files))
    plot = out / ("mos.png" if design == "mos" else "bradley_terry.png")
    atomic_write(plot, lambda tmp: (_plot_mos if design == "mos" else _plot_bt)(tables[0][1] if design == "mos"
                                                                                   else tables[1][1], Path(tmp)))
    files.append(plot)
    markdown = "\n".join(sections)
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(markdown, encoding="utf-8"))
    files.append(out / "report.md")
    return Analysis(markdown, files)


def _correlation(out: Path, metrics_file: str, n_boot: int, seed: int, files: list[Path]) -> str:
    """`clipstyle correlate` of the kept ratings against a results table (a sweep's results.csv, an eval
    CSV, or an eval JSON converted to CSV next to the analysis)."""
    from ..evaluate import read_results
    from ..evaluate.results import csv_text
    from ..sweeps.correlate import correlate, format_report

    table = Path(metrics_file)
    if table.suffix.lower() == ".json":
        converted = out / "metrics.csv"
        text = csv_text(read_results(table))
        atomic_write(converted, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        files.append(converted)
        table = converted
    report = correlate(out / "ratings.csv", table, n_boot=n_boot, seed=seed)
    report.write_csv(out / "correlation.csv", overwrite=True)
    files.append(out / "correlation.csv")
    return f"## Correlation of the metrics with the ratings (clipstyle correlate)\n\n```\n{format_report(report)}\n```\n"
