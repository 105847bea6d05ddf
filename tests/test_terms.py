"""The table of loss terms (`clipstyle_opt.objective.terms.TERMS`) is what the objective computes.

Each row's weight field exists on `StyleConfig`; a zero weight takes the term out of the total;
the one-graph path (`StyleObjective.terms`) and the chunked path (`StyleObjective.backward`) give
the same values through the same term functions; the history, results and sweeps list the
table's names.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from clipstyle_opt import StyleConfig
from clipstyle_opt.imageio import load_image, resize
from clipstyle_opt.objective import TERM_NAMES, TERMS
from clipstyle_opt.objective import terms as terms_module
from clipstyle_opt.objective.augment import sample_crop_params
from clipstyle_opt.objective.style_objective import StyleObjective
from clipstyle_opt.testing import tolerances

RTOL = tolerances.reordered()
CONFIG_FIELDS = {field.name: field for field in dataclasses.fields(StyleConfig)}


def test_every_term_has_a_weight_field_on_the_config():
    for term in TERMS:
        assert term.weight_field in CONFIG_FIELDS, term
        assert isinstance(getattr(StyleConfig(), term.weight_field), (int, float)), term


def test_the_table_is_consistent():
    names = [term.name for term in TERMS]
    assert len(set(names)) == len(names)
    assert TERM_NAMES == tuple(names)
    assert {term.needs for term in TERMS} <= {"clip", "vgg", "none"}
    assert sorted(terms_module.SUM_ORDER) == sorted(TERM_NAMES)  # the total adds every term once
    assert set(terms_module.CLIP_TERMS) | set(terms_module.PIXEL_TERMS) == set(TERMS)
    assert all(callable(term.compute) and term.compute.__doc__ for term in TERMS)


def test_the_history_names_are_the_tables():
    from clipstyle_opt.objective.style_objective import TERM_NAMES as objective_names

    assert objective_names is TERM_NAMES


@pytest.fixture(scope="module")
def setup(tiny_clip, vgg16, tiny_config):
    from pathlib import Path

    content = resize(load_image(Path(__file__).resolve().parent.parent / "examples" / "astronaut.png"), (40, 64))
    style = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(4))
    output = torch.rand(1, 3, 40, 64, generator=torch.Generator().manual_seed(1))
    params = sample_crop_params(7, (40, 64), 32, 0.5, torch.Generator().manual_seed(2))
    return tiny_clip, vgg16, tiny_config.replace(threshold=0.0), content, style, output, params


def _objective(setup, **weights) -> StyleObjective:
    clip, vgg, config, content, style, _, _ = setup
    return StyleObjective(clip, vgg, config.replace(**weights), content, "fire", style_image=style)


@pytest.mark.parametrize("term", TERMS, ids=lambda term: term.name)
def test_a_zero_weight_removes_the_terms_contribution(setup, term):
    *_, output, params = setup
    full = _objective(setup).terms(output, params)
    without = _objective(setup, **{term.weight_field: 0.0}).terms(output, params)
    weights = terms_module.term_weights(_objective(setup).config)
    expected = sum(float(weights[name] * full[name]) for name in TERM_NAMES if name != term.name)
    assert float(without["total"]) == pytest.approx(expected, rel=RTOL, abs=RTOL)
    assert float(full["total"]) == pytest.approx(expected + float(weights[term.name] * full[term.name]), rel=RTOL)


def test_both_clip_weights_zero_skips_the_clip_terms(setup):
    *_, output, params = setup
    off = _objective(setup, **{t.weight_field: 0.0 for t in terms_module.CLIP_TERMS}).terms(output, params)
    assert all(float(off[t.name]) == 0.0 for t in terms_module.CLIP_TERMS) and "patch_kept" not in off


@pytest.mark.parametrize("clip_batch", [0, 3, 1])
def test_both_paths_give_the_same_values_through_the_table(setup, clip_batch):
    """`terms` on one graph and `backward` chunk by chunk: the same keys, the same values
    (to float rounding: the chunked patch loss is a sum of per-chunk parts)."""
    *_, output, params = setup
    objective = _objective(setup)
    one_graph = objective.terms(output.clone().requires_grad_(True), params)
    chunked = objective.backward(output.clone().requires_grad_(True), params, clip_batch=clip_batch)
    assert list(one_graph) == list(chunked)
    assert list(one_graph)[:len(TERM_NAMES)] == list(TERM_NAMES)
    for key, value in one_graph.items():
        assert chunked[key] == pytest.approx(float(value.detach()), rel=RTOL, abs=RTOL), key


def test_the_paths_call_the_tables_functions(setup, monkeypatch):
    """Both paths compute each term with its row's function, so a change there reaches both."""
    *_, output, params = setup
    objective = _objective(setup)
    calls: list[str] = []
    rows = []
    for term in TERMS:
        def counted(inputs, _term=term):
            value = _term.compute(inputs)
            if value is not None:  # a CLIP term on a chunk without what it reads gives None
                calls.append(_term.name)
            return value
        rows.append(dataclasses.replace(term, compute=counted))
    from clipstyle_opt.objective import style_objective

    monkeypatch.setattr(style_objective, "CLIP_TERMS", tuple(r for r in rows if r.needs == "clip"))
    monkeypatch.setattr(style_objective, "PIXEL_TERMS", tuple(r for r in rows if r.needs != "clip"))
    objective.terms(output.clone().requires_grad_(True), params)
    assert sorted(calls) == sorted(TERM_NAMES)
    calls.clear()
    objective.backward(output.clone().requires_grad_(True), params, clip_batch=3)  # 8 views: 3 chunks
    assert calls.count("dir") == 1 and calls.count("patch") == 3
    assert sorted(set(calls)) == sorted(TERM_NAMES)


def test_the_total_adds_the_terms_in_the_reference_order():
    """patch, content, tv, dir as the reference code's sum (float addition is not associative)."""
    assert terms_module.SUM_ORDER[:4] == ("patch", "content", "tv", "dir")
    values = {name: torch.tensor(1e-8 * (index + 1)) for index, name in enumerate(TERM_NAMES)}
    weights = {name: 1.0 + index for index, name in enumerate(TERM_NAMES)}
    expected = weights["patch"] * values["patch"]
    for name in terms_module.SUM_ORDER[1:]:
        expected = expected + weights[name] * values[name]
    assert torch.equal(terms_module.weighted_total(weights, values), expected)
