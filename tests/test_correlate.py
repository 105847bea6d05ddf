"""`clipstyle correlate`: metrics against human ratings, on a hand-made table whose coefficients are
worked out by hand in the comments."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from clipstyle_opt.cli import cli
from clipstyle_opt.errors import ImageReadError
from clipstyle_opt.sweeps.correlate import correlate, kendall_many, kendall_w, spearman_many

HEADER = ["rater", "content_image", "output", "label", "prompt", "blind", "shuffle_seed", "position",
          "style_rating", "content_rating"]
OUTPUTS = [f"runs/{name}.png" for name in "abcde"]
STYLE = {"ann": [1, 3, 2, 5, 4], "bob": [1, 3, 2, 5, 4]}
CONTENT = {"ann": [5, 4, 3, 2, 1], "bob": [4, 5, 3, 1, 2]}


@pytest.fixture
def tables(tmp_path):
    """Two raters' exports concatenated (header repeated, as `cat` makes it), an unrated and an unknown output,
    and a results table where m_up rises with the output's index and m_down falls."""
    lines = []
    for rater in ("ann", "bob"):
        lines.append(",".join(HEADER))
        for i, output in enumerate(OUTPUTS):
            lines.append(f"{rater},chelsea.png,{output},{output},\"fire, hot\",1,7,{i + 1},"
                         f"{STYLE[rater][i]},{CONTENT[rater][i]}")
        lines.append(f"{rater},chelsea.png,runs/unrated.png,x,fire,1,7,6,,")
    lines.append("ann,chelsea.png,elsewhere/zzz.png,x,fire,1,7,7,3,3")
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("\n".join(lines) + "\n")
    results = tmp_path / "results.csv"
    with open(results, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run_id", "status", "image", "lambda_patch", "m_up", "m_down", "train_s"])
        for i, output in enumerate(OUTPUTS):
            writer.writerow([output[5], "ok", output, 9000, i + 1, 5 - i, 1.0])
    return ratings, results


def test_coefficients_match_the_hand_computed_values(tables):
    report = correlate(*tables, n_boot=500, seed=1)
    assert report.outputs == 5 and report.raters == ["ann", "bob"] and report.unmatched == ["elsewhere/zzz.png"]
    rows = {(r["metric"], r["target"]): r for r in report.rows}
    assert {m for m, _ in rows} == {"m_up", "m_down"}  # not the axis, not the timing
    # style means [1, 3, 2, 5, 4] against 1..5: d = [0, 1, -1, 1, -1], rho = 1 - 6*4/(5*24) = 0.8;
    # two discordant pairs of ten: tau = (8 - 2)/10 = 0.6.
    assert rows["m_up", "style_rating"]["spearman"] == pytest.approx(0.8)
    assert rows["m_up", "style_rating"]["kendall"] == pytest.approx(0.6)
    assert rows["m_down", "style_rating"]["spearman"] == pytest.approx(-0.8)
    # content means [4.5, 4.5, 3, 1.5, 1.5]: rho = -9/sqrt(9*10); 8 discordant pairs, 2 tied in the ratings:
    # tau_b = -8/sqrt((10 - 2) * 10).
    assert rows["m_up", "content_rating"]["spearman"] == pytest.approx(-9 / math.sqrt(90))
    assert rows["m_up", "content_rating"]["kendall"] == pytest.approx(-8 / math.sqrt(80))
    for row in report.rows:
        for name in ("spearman", "kendall"):
            assert -1 <= row[f"{name}_lo"] <= row[name] + 1e-12 and row[name] - 1e-12 <= row[f"{name}_hi"] <= 1
    # Agreement: identical style ratings, W = 1; content rank totals [9, 9, 6, 3, 3], S = 36,
    # W = 12*36/(2^2*(5^3-5)) = 0.9, and the raters' Spearman is 1 - 6*4/120 = 0.8.
    assert report.agreement["style"]["kendall_w"] == pytest.approx(1.0)
    assert report.agreement["content"]["kendall_w"] == pytest.approx(0.9)
    assert report.agreement["content"]["mean_pairwise_spearman"] == pytest.approx(0.8)


def test_vectorized_bootstrap_statistics_equal_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 5, size=(30, 9)).astype(float)
    y = rng.integers(1, 4, size=(30, 9)).astype(float)
    x[0], y[0] = np.arange(9), np.arange(9)[::-1]
    expected_rho = [stats.spearmanr(a, b).statistic for a, b in zip(x, y)]
    expected_tau = [stats.kendalltau(a, b).statistic for a, b in zip(x, y)]
    np.testing.assert_allclose(spearman_many(x, y), expected_rho, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kendall_many(x, y, chunk=7), expected_tau, rtol=1e-12, atol=1e-12)


def test_kendall_w_of_reversed_raters_is_zero():
    assert kendall_w(np.array([[1, 2, 3, 4], [4, 3, 2, 1]])) == pytest.approx(0.0)


def test_cli_prints_the_table_and_draws_the_plots(tables, tmp_path):
    result = CliRunner().invoke(cli, ["correlate", *map(str, tables), "--bootstrap", "200", "--plot",
                                      str(tmp_path / "plots"), "--csv", str(tmp_path / "corr.csv")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "5 rated outputs matched, 2 rater(s); 1 rated output(s) not in the results" in result.output
    line = next(l for l in result.output.splitlines() if l.startswith("m_up") and " style " in l)
    assert "+0.800" in line and "+0.600" in line
    assert "rater agreement (content): Kendall's W +0.900 over 5 outputs" in result.output
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["correlate_m_down.png", "correlate_m_up.png"]
    assert len((tmp_path / "corr.csv").read_text().splitlines()) == 5


def test_a_table_that_matches_too_few_outputs_is_refused(tables, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("image,m\nx.png,1\n")
    with pytest.raises(ImageReadError, match="only 0 of the 6 rated outputs"):
        correlate(tables[0], other)
