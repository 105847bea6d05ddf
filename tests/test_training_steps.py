"""The kinds of training step behind one interface (`clipstyle_opt.training.steps`): same values through the
same calls, one learning-rate schedule, and one NaN fallback that keeps the last good output for every kind."""
from __future__ import annotations

import math

import pytest
import torch

from clipstyle_opt import Stylizer
from clipstyle_opt.errors import ConfigError, NonFiniteLossError
from clipstyle_opt.imageio import load_image, resize
from clipstyle_opt.objective import augment
from clipstyle_opt.objective.style_objective import StyleObjective
from clipstyle_opt.testing import tolerances
from clipstyle_opt.training import loop
from clipstyle_opt.training.guards import KeptWeights
from clipstyle_opt.training.steps import make_step, resolve_kind
from clipstyle_opt.unet.model import seeded_unet

EPS = tolerances.eps()
KINDS = ("plain", "reference", "captured")
_MAKE_STEP = loop.make_step


def _first_values(kind, tiny_clip, vgg16, tiny_config, photo):
    content = resize(load_image(photo), (40, 64))
    config = tiny_config.replace(threshold=0.0)
    objective = StyleObjective(tiny_clip, vgg16, config, content, "fire", batched=kind != "reference")
    unet = seeded_unet(8, 0)
    step = make_step(resolve_kind(kind, config, torch.device("cpu"), objective), unet, objective, content, config,
                     torch.device("cpu"), KeptWeights(unet))
    params = augment.sample_crop_params(6, (40, 64), 32, 0.5, torch.Generator().manual_seed(3))
    values, finite, output = step.step(params, config.lr)
    return values, finite, output.detach().clone(), step.fallback_state()


def test_every_kind_answers_the_same_calls_with_the_same_values(tiny_clip, vgg16, tiny_config, photo):
    """Step 1 from the same weights on the same crops: the same keys, the same terms to float noise (the
    captured step's warp rounds its coordinates apart: 16 * 32 eps, as in test_cuda_graph), the same output
    (the U-Net forward before any update), and no fallback yet."""
    plain = _first_values("plain", tiny_clip, vgg16, tiny_config, photo)
    for kind in ("reference", "captured"):
        values, finite, output, fallback = _first_values(kind, tiny_clip, vgg16, tiny_config, photo)
        assert finite and fallback is None
        assert set(values) == set(plain[0]), kind
        bound = max(tolerances.reordered(), 16 * 32 * EPS)
        for key in ("dir", "patch", "content", "tv", "total"):
            assert abs(values[key] - plain[0][key]) <= bound * max(1.0, abs(plain[0][key])), (kind, key)
        assert torch.equal(output, plain[2]), kind


def test_resolve_kind_keeps_today_s_rule(tiny_clip, vgg16, tiny_config, photo):
    content = resize(load_image(photo), (40, 64))
    batched = StyleObjective(tiny_clip, vgg16, tiny_config, content, "fire")
    unbatched = StyleObjective(tiny_clip, vgg16, tiny_config, content, "fire", batched=False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_kind("auto", tiny_config, cpu, batched) == "plain"
    assert resolve_kind("auto", tiny_config, cuda, batched) == "captured"
    assert resolve_kind("auto", tiny_config.replace(cuda_graph=False), cuda, batched) == "plain"
    assert resolve_kind("captured", tiny_config, cpu, batched) == "captured"  # uncaptured off CUDA
    for kind in ("auto", "plain", "captured"):
        assert resolve_kind(kind, tiny_config, cuda, unbatched) == "reference"
    with pytest.raises(ConfigError, match="step_kind must be one of"):
        resolve_kind("graph", tiny_config, cpu, batched)
    with pytest.raises(ConfigError, match="step_kind must be one of"):
        Stylizer(tiny_config, clip=tiny_clip, vgg=vgg16, step_kind="graph")


def _poison_at(monkeypatch, bad_step: int) -> None:
    """Every kind's step, seen through the loop, reports a NaN patch loss at run step ``bad_step``."""
    made = _MAKE_STEP
    calls = []

    class Poisoned:
        def __init__(self, inner):
            self.inner = inner

        def step(self, params, lr):
            values, finite, output = self.inner.step(params, lr)
            calls.append(1)
            if len(calls) == bad_step:
                values = {**values, "patch": math.nan}
            return values, finite, output

        def fallback_state(self):
            return self.inner.fallback_state()

    monkeypatch.setattr(loop, "make_step", lambda *args, **kwargs: Poisoned(made(*args, **kwargs)))


@pytest.mark.parametrize("kind", KINDS)
def test_a_nan_keeps_the_output_of_the_last_good_step_for_every_kind(kind, tiny_config, tiny_clip, vgg16, photo,
                                                                     monkeypatch):
    stylizer = Stylizer(tiny_config, clip=tiny_clip, vgg=vgg16, step_kind=kind)
    settings = dict(max_output_size=64)
    after_one = stylizer.stylize(photo, "fire", steps=1, **settings)
    _poison_at(monkeypatch, 3)
    with pytest.raises(NonFiniteLossError) as caught:
        stylizer.stylize(photo, "fire", steps=5, **settings)
    assert (caught.value.step, caught.value.term) == (3, "patch")
    assert caught.value.result.extra["steps_done"] == 2
    assert len(caught.value.result.history) == 2
    # step 2 evaluated the weights after step 1: its output is what a 1-step run renders
    assert torch.equal(caught.value.result.tensor, after_one.tensor)


@pytest.mark.parametrize("kind", KINDS)
def test_a_nan_at_the_first_step_keeps_nothing_for_every_kind(kind, tiny_config, tiny_clip, vgg16, photo,
                                                              monkeypatch):
    stylizer = Stylizer(tiny_config, clip=tiny_clip, vgg=vgg16, step_kind=kind)
    _poison_at(monkeypatch, 1)
    with pytest.raises(NonFiniteLossError, match="before any good step") as caught:
        stylizer.stylize(photo, "fire", steps=3)
    assert caught.value.result is None


@pytest.mark.parametrize("kind", KINDS)
def test_a_nan_at_the_fine_phase_s_first_step_keeps_the_coarse_phase_s_output(kind, tiny_config, tiny_clip, vgg16,
                                                                             photo, monkeypatch):
    """The kept weights span phases for every kind (the captured step used to start over per phase)."""
    stylizer = Stylizer(tiny_config, clip=tiny_clip, vgg=vgg16, step_kind=kind)
    settings = dict(size=128, coarse_size=64, max_output_size=64, steps=3)
    kept = []
    for coarse_steps in (2, 1):  # bad at step 3: the fine phase's first step, then its second
        _poison_at(monkeypatch, 3)
        with pytest.raises(NonFiniteLossError) as caught:
            stylizer.stylize(photo, "fire", coarse_steps=coarse_steps, **settings)
        assert caught.value.result is not None and caught.value.result.extra["steps_done"] == 2
        kept.append(caught.value.result.tensor)
    # both keep the weights after one coarse step (the same first crops, the same rate, a fresh Adam)
    assert torch.equal(kept[0], kept[1])
