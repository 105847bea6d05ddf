"""The study's design and statistics: balanced sheets, attention checks, and analysis on synthetic
ratings with a known truth (MOS order and interval coverage, Bradley-Terry order, Wilson and
Krippendorff's alpha against published values); a pairwise study rated through the service in-process."""
from __future__ import annotations

import csv
import math
import random
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from clipstyle_opt.errors import ConfigError
from clipstyle_opt.study.analysis import bradley_terry, krippendorff_alpha, mos_table, preference_table, wilson
from clipstyle_opt.study.analyze import analyze_study
from clipstyle_opt.study.create import create_study
from clipstyle_opt.study.design import attention_failures, check_name, make_sheets, place_checks
from clipstyle_opt.study.records import load_records
from clipstyle_opt.study.schema import open_engine
from clipstyle_opt.study.service import StudyService
from study_helpers import answer_for, method_dirs

# Rating distributions on 1..5 with means exactly 4 and 2.
P_MEAN4 = [0, 0, 0.25, 0.5, 0.25]
P_MEAN2 = [0.25, 0.5, 0.25, 0, 0]


def synthetic(rng: np.random.Generator, n: int) -> list[dict]:
    rows = []
    for label, p in (("A", P_MEAN4), ("B", P_MEAN2)):
        for value, content in zip(rng.choice(np.arange(1, 6), size=n, p=p), rng.choice(np.arange(1, 6), size=n, p=p)):
            rows.append({"label": label, "style": int(value), "content": int(content)})
    return rows


def test_mos_orders_a_true_4_above_a_true_2_with_separate_intervals():
    table = mos_table(synthetic(np.random.default_rng(0), 40), n_boot=1000, seed=0)
    a, b = (next(r for r in table if r["method"] == m and r["question"] == "style") for m in "AB")
    assert a["n"] == b["n"] == 40
    assert b["high"] < b["mos"] + 0.5 and b["high"] < a["low"] and a["low"] <= a["mos"] <= a["high"]


def test_bootstrap_intervals_cover_the_true_mos_at_about_95_percent():
    draws, n = 200, 30
    rng = np.random.default_rng(1)
    covered = 0
    for draw in range(draws):
        table = mos_table(synthetic(rng, n), n_boot=800, seed=draw, questions=("style",))
        covered += sum(r["low"] <= {"A": 4.0, "B": 2.0}[r["method"]] <= r["high"] for r in table)
    # 2 * draws independent intervals at a 95 % rate: the count is Binomial(2 * draws, 0.95); accept its
    # central 99.9 % range (a percentile bootstrap on n = 30 runs slightly below 95 %, well inside it).
    low, high = stats.binom.interval(0.999, 2 * draws, 0.95)
    assert low <= covered <= high, (covered, low, high)


def test_wilson_interval_matches_the_published_value():
    low, high = wilson(8, 10)  # Wilson (1927) score interval, 95 %: 0.490 .. 0.943 (e.g. Newcombe 1998)
    assert abs(low - 0.4902) < 5e-4 and abs(high - 0.9433) < 5e-4
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_bradley_terry_orders_three_methods_by_their_true_strength():
    rng = random.Random(4)
    strength = {"A": 1.0, "B": 0.0, "C": -1.0}
    comparisons = []
    for _ in range(300):
        a, b = rng.sample(sorted(strength), 2)
        p_a = 1 / (1 + math.exp(strength[b] - strength[a]))
        comparisons.append({"question": "style", "label_a": a, "label_b": b,
                            "winner": a if rng.random() < p_a else b})
    ranking = bradley_terry(comparisons, "style")
    assert [r["method"] for r in ranking] == ["A", "B", "C"]
    assert abs(sum(r["strength"] for r in ranking)) < 1e-9
    assert sum(r["comparisons"] for r in ranking) == 600 and sum(r["wins"] for r in ranking) == 300
    pairs = {(r["method_a"], r["method_b"]): r for r in preference_table(comparisons)}
    assert pairs[("A", "C")]["low"] > 0.5  # true rate 0.88
    assert pairs[("A", "C")]["low"] < pairs[("A", "C")]["rate_a"] < pairs[("A", "C")]["high"]


def test_krippendorff_alpha_equals_the_worked_example_of_its_literature():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers, 12 units, values 1-5,
    # missing data. Published: nominal 0.743, ordinal 0.815, interval 0.849.
    table = {"A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
             "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
             "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
             "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]}
    triples = [(rater, unit, v) for rater, values in table.items() for unit, v in enumerate(values) if v is not None]
    for level, published in (("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)):
        assert abs(krippendorff_alpha(triples, level) - published) < 5e-4, level
    assert math.isnan(krippendorff_alpha([("A", 1, 3), ("B", 2, 4)]))  # no unit rated twice


@pytest.mark.parametrize("units,per_item,per_rater", [(4, 5, 4), (12, 2, 6), (7, 3, 5), (10, 1, 3), (5, 4, 1)])
def test_sheets_give_every_unit_k_ratings_and_never_twice_to_one_rater(units, per_item, per_rater):
    sheets = make_sheets(units, per_item, per_rater, seed=units)
    counts = Counter(u for sheet in sheets for u in sheet)
    assert set(counts) == set(range(units)) and set(counts.values()) == {per_item}
    assert all(len(set(sheet)) == len(sheet) for sheet in sheets)
    assert all(len(sheet) == per_rater for sheet in sheets[:-1]) and 1 <= len(sheets[-1]) <= per_rater
    assert sheets == make_sheets(units, per_item, per_rater, seed=units)  # seeded
    screens = place_checks(list(sheets[0]), random.Random(0))
    kinds = [kind for kind, _ in screens]
    assert Counter(kinds) == {"main": len(sheets[0]), "repeat": 1, "control": 1}
    repeated = next(u for kind, u in screens if kind == "repeat")
    first = screens.index(("main", repeated))
    mains_between = [k for k, _ in screens[first + 1:screens.index(("repeat", repeated))] if k == "main"]
    assert len(mains_between) >= min(2, len(sheets[0]) - 1 - first)


def test_design_refusals():
    for bad in ("../x", "a/b", "a\\b", "", ".hidden", "x" * 65, "a b", "a.b"):
        with pytest.raises(ConfigError):
            check_name(bad)
    with pytest.raises(ConfigError, match="per-rater"):
        make_sheets(3, 2, 4, 0)


def test_attention_failures_name_what_failed():
    expect = {"content": [4, 5], "style": [1, 2, 3]}
    assert attention_failures("mos", "control", expect, {"content": 5, "style": 1}) == []
    assert attention_failures("mos", "control", expect, {"content": 2, "style": 1}) == \
        ["control: content answered 2, expected 4/5"]
    assert attention_failures("mos", "repeat", None, {"style": 3, "content": 3}, {"style": 4, "content": 1}) == \
        ["repeat: content answered 1 then 3"]
    assert attention_failures("pairwise", "repeat", None, {"style": 2, "content": 1}, {"style": 2, "content": 2}) == \
        ["repeat: content chose B then A"]


def test_a_pairwise_study_ranks_methods_and_excludes_a_careless_rater(tmp_path):
    folders = method_dirs(tmp_path / "outs", photos=("chelsea", "coffee"), prompts=("fire",))
    db = str(tmp_path / "p.sqlite")
    made = create_study(db, "pairs", folders, design="pairwise", per_item=4, seed=2)
    assert made.items == 6  # 3 pairs of methods x 2 photos
    service = StudyService(open_engine(db))
    sent = 0
    for rater in range(5):
        token = service.add_rater("pairs", f"P{rater}")["rater"]
        while True:
            screen = service.next_screen("pairs", token)
            if screen.get("done"):
                break
            answers = answer_for(screen)
            is_control = screen["images"][0]["url"] in (screen["images"][1]["url"], screen["images"][2]["url"])
            if rater == 4 and is_control:  # careless: picks the photo for "matches the text better"
                answers = {"style": answers["content"], "content": answers["style"]}
            assert service.submit("pairs", {"rater": token, "item": screen["item"], "answers": answers})["stored"] == 2
            sent += 1
    records = load_records(service.engine, "pairs")
    assert len(records.ratings) == 2 * sent
    result = analyze_study(records, tmp_path / "analysis", n_boot=200)
    excluded = list(csv.DictReader((tmp_path / "analysis" / "excluded.csv").open()))
    # Careful raters answer the repeat by content, whichever side it is shown on: none is inconsistent.
    assert [r["participant"] for r in excluded] == ["P4"] and excluded[0]["reasons"].startswith("control:")
    ranking = list(csv.DictReader((tmp_path / "analysis" / "bradley_terry.csv").open()))
    assert {r["method"] for r in ranking} == {"adain", "ours", "baseline"} and len(ranking) == 6
    assert "Bradley-Terry" in result.markdown and (tmp_path / "analysis" / "bradley_terry.png").stat().st_size > 0
    preference = list(csv.DictReader((tmp_path / "analysis" / "preference.csv").open()))
    assert sum(int(r["n"]) for r in preference if r["question"] == "style") == 4 * 6  # 4 kept raters x 6 pairs
