"""The CUDA-graph training step (`clipstyle_opt.training.captured`), checked on the CPU.

No GPU here: these tests run the captured step's code uncaptured
(``Stylizer.step_kind = "captured"``) and check that it computes what the plain step
computes: the same crops, terms, gradients, learning rates, and NaN fallback.
What they cannot show is that CUDA captures and replays it faithfully; the
device session's check (`tools/gpu_session.sh`) compares a captured run
against an uncaptured one on the GPU.
"""
from __future__ import annotations

import math

import pytest
import torch

from clipstyle_opt import Stylizer
from clipstyle_opt.objective import augment
from clipstyle_opt.training.captured import CapturedStep
from clipstyle_opt.training.steps import step_lr
from clipstyle_opt.unet.model import seeded_unet
from clipstyle_opt.errors import NonFiniteLossError
from clipstyle_opt.imageio import load_image, resize
from clipstyle_opt.objective.style_objective import StyleObjective
from clipstyle_opt.testing import tolerances

EPS = tolerances.eps()


def warp_tolerance(size: int) -> float:
    """Both warps compute source coordinates in float32: a relative error of a few eps, i.e. up to
    about size * eps px, moving a pixel value by at most that times its largest neighbour difference
    (1 in [0, 1] images). 16x that (as test_augment's bound against torchvision)."""
    return 16 * size * EPS


def static_copy(params: augment.CropParams) -> augment.StaticCrops:
    crops = augment.StaticCrops(len(params), params.size, torch.device("cpu"))
    crops.load(params)
    return crops


def test_static_crops_warp_and_gather_like_the_batched_path():
    image = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0), requires_grad=True)
    params = augment.sample_crop_params(12, (96, 128), 64, 0.5, torch.Generator().manual_seed(5))
    expected = augment.apply_batched(image, params, 48)
    ours = augment.apply_static(image, static_copy(params), 48)
    assert float((ours - expected).detach().abs().max()) <= warp_tolerance(64)
    weights = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1))
    grad_expected, = torch.autograd.grad((expected * weights).sum(), image)
    grad_ours, = torch.autograd.grad((ours * weights).sum(), image)
    # The same per-pixel sums in another order, plus the warp's coordinate rounding times |weights|.
    bound = warp_tolerance(64) * float(weights.abs().sum()) / image[0, 0].numel() + tolerances.reordered_gradient()
    assert float((grad_ours - grad_expected).abs().max()) <= bound * max(1.0, float(grad_expected.abs().max()))


def test_static_crops_are_overwritten_in_place_and_refuse_another_shape():
    generator = torch.Generator().manual_seed(0)
    first = augment.sample_crop_params(4, (64, 64), 32, 0.5, generator)
    second = augment.sample_crop_params(4, (64, 64), 32, 0.5, generator)
    crops = static_copy(first)
    addresses = (crops.tops.data_ptr(), crops.lefts.data_ptr(), crops.inverse.data_ptr())
    crops.load(second)
    assert addresses == (crops.tops.data_ptr(), crops.lefts.data_ptr(), crops.inverse.data_ptr())
    assert torch.equal(crops.tops, second.tops) and torch.equal(crops.lefts, second.lefts)
    with pytest.raises(ValueError, match="do not fit"):
        crops.load(augment.sample_crop_params(5, (64, 64), 32, 0.5, generator))
    with pytest.raises(ValueError, match="do not fit"):
        crops.load(augment.sample_crop_params(4, (64, 64), 16, 0.5, generator))


def test_captured_terms_and_gradients_match_the_plain_objective(tiny_clip, vgg16, tiny_config, photo):
    content = resize(load_image(photo), (40, 64))
    objective = StyleObjective(tiny_clip, vgg16, tiny_config.replace(threshold=0.0), content, "fire")
    params = augment.sample_crop_params(7, (40, 64), 32, 0.5, torch.Generator().manual_seed(3))
    plain_unet, static_unet = seeded_unet(8, 0), seeded_unet(8, 0)
    plain = objective.terms(plain_unet(content), params)
    static = objective.terms(static_unet(content), static_copy(params))
    for key in ("dir", "patch", "patch_kept", "content", "tv", "total"):
        bound = warp_tolerance(32) * max(1.0, abs(float(plain[key].detach())))
        assert abs(float(static[key].detach()) - float(plain[key].detach())) <= bound, key
    plain["total"].backward()
    static["total"].backward()
    flat_plain = torch.cat([p.grad.flatten() for p in plain_unet.parameters()])
    flat_static = torch.cat([p.grad.flatten() for p in static_unet.parameters()])
    assert float((flat_static - flat_plain).norm() / flat_plain.norm()) < tolerances.reordered_gradient() + \
        warp_tolerance(32)


def test_graph_step_trains_like_the_plain_step(tiny_stylizer, photo, monkeypatch):
    """First step: same terms (to the warp's rounding) and the same image; every step: the same learning
    rate through the decays, the same history keys. Later steps are not compared: Adam amplifies
    rounding (see test_fast_path_equivalence)."""
    settings = dict(steps=5, lr_decay_every=2, lr_decay=0.5, max_output_size=64)
    plain = tiny_stylizer.stylize(photo, "fire", **settings)
    one_plain = tiny_stylizer.stylize(photo, "fire", **{**settings, "steps": 1})
    monkeypatch.setattr(tiny_stylizer, "step_kind", "captured")
    graphed = tiny_stylizer.stylize(photo, "fire", **settings)
    one_graphed = tiny_stylizer.stylize(photo, "fire", **{**settings, "steps": 1})
    assert [h["lr"] for h in graphed.history] == pytest.approx([h["lr"] for h in plain.history], rel=1e-12)
    assert [h["lr"] for h in graphed.history] == pytest.approx([5e-4, 5e-4, 2.5e-4, 2.5e-4, 1.25e-4], rel=1e-12)
    assert set(graphed.history[0]) == set(plain.history[0])
    first_plain, first_graphed = plain.history[0], graphed.history[0]
    for key in ("dir", "patch", "content", "tv", "total"):
        assert abs(first_graphed[key] - first_plain[key]) <= warp_tolerance(32) * max(1.0, abs(first_plain[key])), key
    # Adam's first step is lr * sign(gradient): only noise-level gradients can flip, and those
    # (biases feeding an InstanceNorm) cannot move the output.
    assert float((one_graphed.tensor - one_plain.tensor).abs().max()) <= 4 * warp_tolerance(32)
    assert not torch.equal(graphed.tensor, one_graphed.tensor)  # it did train past step 1


def test_graph_step_nan_keeps_the_weights_before_the_last_step(tiny_stylizer, photo, monkeypatch):
    monkeypatch.setattr(tiny_stylizer, "step_kind", "captured")
    settings = dict(max_output_size=64)
    after_one = tiny_stylizer.stylize(photo, "fire", steps=1, **settings)
    original = CapturedStep.step

    def poisoned(self, params, lr):
        values, finite, output = original(self, params, lr)
        if self.steps_done == 3:
            values = {**values, "patch": math.nan}
        return values, finite, output

    monkeypatch.setattr(CapturedStep, "step", poisoned)
    with pytest.raises(NonFiniteLossError) as caught:
        tiny_stylizer.stylize(photo, "fire", steps=5, **settings)
    assert (caught.value.step, caught.value.term) == (3, "patch")
    assert caught.value.result.extra["steps_done"] == 2
    assert torch.equal(caught.value.result.tensor, after_one.tensor)  # the weights whose output was step 2's


def test_graph_step_reports_non_finite_gradients(tiny_stylizer, photo, monkeypatch):
    monkeypatch.setattr(tiny_stylizer, "step_kind", "captured")
    original = CapturedStep.step

    def broken(self, params, lr):
        values, _, output = original(self, params, lr)
        return values, False, output

    monkeypatch.setattr(CapturedStep, "step", broken)
    with pytest.raises(NonFiniteLossError) as caught:
        tiny_stylizer.stylize(photo, "fire", steps=3)
    assert (caught.value.step, caught.value.term) == (1, "gradient")


def test_the_plain_step_runs_where_the_graph_cannot(tiny_stylizer, photo, monkeypatch):
    monkeypatch.setattr(tiny_stylizer, "step_kind", "captured")
    built = []
    original = CapturedStep.__init__

    def spy(self, *args, **kwargs):
        built.append(kwargs.get("capture"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(CapturedStep, "__init__", spy)
    tiny_stylizer.stylize(photo, "fire", steps=2)
    assert built == [False]  # one per phase, uncaptured on the CPU
    tiny_stylizer.stylize(photo, "fire", steps=2, cuda_graph=False)
    tiny_stylizer.stylize(photo, "fire", steps=2, batched_crops=False)
    left = torch.zeros(1, 1, 40, 64)
    left[..., :32] = 1
    tiny_stylizer.stylize(photo, None, regions=[(left, "fire"), (1 - left, "ice")], steps=2)
    assert built == [False]
    tiny_stylizer.stylize(photo, "fire", steps=2, size=128, coarse_steps=2, coarse_size=64)
    assert built == [False, False, False]


@pytest.mark.parametrize("decay", [0.5, 0.7, 0.3, 0.9, 1.0])
def test_step_lr_is_steplr_bit_for_bit(decay):
    """Every kind of step takes its rate from `step_lr`: it must be StepLR's own floats, not just close."""
    unet = seeded_unet(4, 0)
    optimizer = torch.optim.SGD(unet.parameters(), lr=0.3)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=decay)
    for phase_step in range(1, 40):
        assert step_lr(0.3, decay, 3, phase_step) == optimizer.param_groups[0]["lr"], phase_step
        optimizer.step()
        schedule.step()


class _NoStream:
    def wait_stream(self, other):
        pass


def test_a_failed_capture_warns_undoes_the_warm_up_and_steps_uncaptured(tiny_clip, vgg16, tiny_config, photo,
                                                                         monkeypatch):
    """The warm-up really runs (on the CPU, CUDA's stream calls stubbed out), then capturing raises: the
    step must warn, put back the seeded weights and a fresh Adam, and compute what an uncaptured step does."""
    from clipstyle_opt.training.captured import captured_optimizer
    from clipstyle_opt.errors import ClipstyleWarning

    content = resize(load_image(photo), (40, 64))
    objective = StyleObjective(tiny_clip, vgg16, tiny_config, content, "fire")
    generator = torch.Generator().manual_seed(0)
    crops = [augment.sample_crop_params(4, (40, 64), 32, 0.5, generator) for _ in range(3)]

    def make(capture):
        unet = seeded_unet(8, 0)
        return unet, CapturedStep(unet, objective, content, captured_optimizer(unet, 1e-3, content.device), crops[0],
                                  capture=capture)

    class _RefusedCapture:
        def __init__(self, graph):
            pass

        def __enter__(self):
            raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch.cuda, "Stream", _NoStream)
    monkeypatch.setattr(torch.cuda, "current_stream", _NoStream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: __import__("contextlib").nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: None)
    monkeypatch.setattr(torch.cuda, "graph", _RefusedCapture)
    with pytest.warns(ClipstyleWarning, match=r"could not be captured as a CUDA graph \(operation not permitted "
                                              r"when stream is capturing\); running it uncaptured"):
        unet, failed = make(True)
    assert failed.graph is None
    seeded = seeded_unet(8, 0)
    assert all(torch.equal(a, b) for a, b in zip(unet.parameters(), seeded.parameters()))
    assert all(float(value.abs().max()) == 0 for state in failed.optimizer.state.values()
               for value in state.values() if isinstance(value, torch.Tensor))
    _, plain = make(False)
    for params in crops:
        assert failed.step(params, 1e-3)[0] == plain.step(params, 1e-3)[0]


def test_graph_step_with_an_ensemble_reports_what_the_plain_step_reports(tiny_config, tiny_clip, vgg16, photo):
    """Two members: the same history keys (each member's dir, patch and kept share) and, at step 1,
    the same values (to the warp's rounding)."""
    config = tiny_config.replace(clip_model=[tiny_config.clip_model] * 2, clip_weights=(3, 1))
    stylizer = Stylizer(config, clip=[tiny_clip, tiny_clip], vgg=vgg16)
    plain = stylizer.stylize(photo, "fire", steps=1)
    stylizer.step_kind = "captured"
    graphed = stylizer.stylize(photo, "fire", steps=1)
    assert set(graphed.history[0]) == set(plain.history[0]) >= {"dir[0]", "patch[1]", "patch_kept[1]"}
    for key in ("dir", "patch", "patch_kept", "dir[1]", "patch[0]", "patch_kept[0]", "total"):
        expected = plain.history[0][key]
        assert abs(graphed.history[0][key] - expected) <= warp_tolerance(32) * max(1.0, abs(expected)), key
