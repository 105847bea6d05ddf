"""The statistics a paper reports from a study: MOS with bootstrap intervals, pairwise preference with
Wilson intervals, a Bradley-Terry ranking, Krippendorff's alpha, and who the attention checks exclude.

Pure functions over plain rows; scipy, choix and krippendorff do the numerics.
"""
from __future__ import annotations

import importlib
import math
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import ClipstyleError

LEVEL = 0.95


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ClipstyleError(f"study analysis needs {name}: pip install 'clipstyle_opt[study]'") from None


def bootstrap_interval(values: Sequence[float], n_boot: int, rng: np.random.Generator,
                       level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its percentile bootstrap interval, resampling the ratings with
    replacement. Treats ratings as independent draws (the usual MOS interval; rater effects are not
    modelled, which narrows the interval when a few raters rate many items)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return math.nan, math.nan, math.nan
    means = data[rng.integers(0, data.size, size=(n_boot, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(data.mean()), float(low), float(high)


def mos_table(rows: Iterable[dict[str, Any]], *, n_boot: int = 2000, seed: int = 0,
              questions: Sequence[str] = ("style", "content")) -> list[dict[str, Any]]:
    """Per method and question: n ratings, MOS (1..5) and its bootstrap 95 % interval.
    rows: {"label", question: value 1..5, ...}; sorted by method in first-seen order."""
    rng = np.random.default_rng(seed)
    rows = list(rows)
    methods = list(dict.fromkeys(r["label"] for r in rows))
    table = []
    for method in methods:
        for question in questions:
            values = [float(r[question]) for r in rows if r["label"] == method and r.get(question) not in (None, "")]
            mean, low, high = bootstrap_interval(values, n_boot, rng)
            table.append({"method": method, "question": question, "n": len(values), "mos": mean, "low": low,
                          "high": high})
    return table


def wilson(successes: int, trials: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion (scipy's binomtest)."""
    if trials == 0:
        return math.nan, math.nan
    stats = _import("scipy.stats")
    interval = stats.binomtest(successes, trials).proportion_ci(confidence_level=level, method="wilson")
    return float(interval.low), float(interval.high)


def preference_table(comparisons: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per question and pair of methods: how often the first (alphabetically) was preferred, with its
    Wilson 95 % interval. comparisons: {"question", "label_a", "label_b", "winner"} (winner: a label)."""
    counts: dict[tuple[str, str, str], list[int]] = {}
    for c in comparisons:
        a, b = sorted((c["label_a"], c["label_b"]))
        tally = counts.setdefault((c["question"], a, b), [0, 0])
        tally[0] += c["winner"] == a
        tally[1] += 1
    table = []
    for (question, a, b), (wins, n) in counts.items():
        low, high = wilson(wins, n)
        table.append({"question": question, "method_a": a, "method_b": b, "n": n, "a_preferred": wins,
                      "rate_a": wins / n, "low": low, "high": high})
    return table


def bradley_terry(comparisons: Iterable[dict[str, Any]], question: str,
                  alpha: float = 0.01) -> list[dict[str, Any]]:
    """Bradley-Terry strengths of the methods for one question (choix's I-LSR maximum likelihood; ``alpha``
    regularizes so that a method that always wins keeps a finite strength), best first. strength: log-scale,
    centred at 0; p_beats_average = 1 / (1 + exp(-strength))."""
    choix = _import("choix")
    rows = [c for c in comparisons if c["question"] == question]
    methods = sorted({c["label_a"] for c in rows} | {c["label_b"] for c in rows})
    if len(methods) < 2:
        return []
    index = {m: i for i, m in enumerate(methods)}
    data = [(index[c["winner"]], index[c["label_b"] if c["winner"] == c["label_a"] else c["label_a"]])
            for c in rows]
    params = choix.ilsr_pairwise(len(methods), data, alpha=alpha)
    params = params - params.mean()
    wins = {m: sum(c["winner"] == m for c in rows) for m in methods}
    played = {m: sum(m in (c["label_a"], c["label_b"]) for c in rows) for m in methods}
    order = sorted(methods, key=lambda m: -params[index[m]])
    return [{"question": question, "rank": rank, "method": m, "strength": float(params[index[m]]),
             "wins": wins[m], "comparisons": played[m]} for rank, m in enumerate(order, 1)]


def krippendorff_alpha(triples: Iterable[tuple[Any, Any, float]], level: str = "ordinal") -> float:
    """Krippendorff's alpha of (rater, unit, value) triples (the krippendorff package); NaN when fewer than
    two raters share a unit or every value is the same."""
    krippendorff = _import("krippendorff")
    triples = list(triples)
    raters = list(dict.fromkeys(t[0] for t in triples))
    units = list(dict.fromkeys(t[1] for t in triples))
    matrix = np.full((len(raters), len(units)), np.nan)
    r_index, u_index = {r: i for i, r in enumerate(raters)}, {u: i for i, u in enumerate(units)}
    for rater, unit, value in triples:
        matrix[r_index[rater], u_index[unit]] = float(value)
    paired = (np.isfinite(matrix).sum(axis=0) >= 2)
    values = matrix[:, paired]
    if values.size == 0 or len(np.unique(values[np.isfinite(values)])) < 2:
        return math.nan
    return float(krippendorff.alpha(reliability_data=values, level_of_measurement=level))
