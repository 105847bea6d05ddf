"""On a CUDA GPU: does a captured training step compute what the same step computes uncaptured?

The CPU test suite runs `CapturedStep` uncaptured only (no GPU there); this
script is the check of the capture itself, for a device session:

- the warm-up is undone: right after capture the U-Net holds its seeded
  weights exactly and Adam's state is zero;
- from the same seeded U-Net on the same crops, the captured and the
  uncaptured step give the same loss terms at step 1 (same weights, same
  inputs) and close ones after (CUDA's grid_sample and index_add_ backward
  add atomically, so later steps differ by rounding that Adam amplifies);
- the learning rate set between replays reaches the captured Adam (a run at
  lr 0 must leave the weights unchanged).

Random-weight ViT-B/32 and whatever VGG16 weights the cache holds: no quality claim.

    python benchmarks/check_cuda_graph.py [--size 256] [--steps 8]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clipstyle_opt import StyleConfig  # noqa: E402
from clipstyle_opt.objective.augment import sample_crop_params  # noqa: E402
from clipstyle_opt.training.captured import CapturedStep, captured_optimizer  # noqa: E402
from clipstyle_opt.devices import resolve_precision  # noqa: E402
from clipstyle_opt.encoders.clip import ClipEncoder  # noqa: E402
from clipstyle_opt.encoders.vgg import load_vgg  # noqa: E402
from clipstyle_opt.sizing import training_hw  # noqa: E402
from clipstyle_opt.unet.model import seeded_unet  # noqa: E402
from clipstyle_opt.imageio import load_image, resize  # noqa: E402
from clipstyle_opt.objective.style_objective import StyleObjective  # noqa: E402
from clipstyle_opt.testing import CLIP, RANDOM_CLIP_SIZES  # noqa: E402


def run(objective, content, crops, capture: bool, lr: float) -> tuple[list[dict], list[torch.Tensor], dict]:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of this script (nothing is captured)")
    args = parser.parse_args()
    device = torch.device(args.device)
    capture = device.type == "cuda"
    torch.manual_seed(0)
    clip = ClipEncoder(CLIP(*RANDOM_CLIP_SIZES["ViT-B/32"]), name="ViT-B/32 (random weights)").to(device)
    failures = []
    layers = (*StyleConfig().content_layers, *StyleConfig().style_layers)
    vgg = load_vgg("vgg16", layers, device)  # fp32 weights; the objective autocasts it with CLIP's precision
    for precision in ("fp32", "auto"):
        config = StyleConfig(size=args.size, device=args.device, precision=precision)
        clip.autocast_dtype = resolve_precision(precision, device)
        photo = load_image(ROOT / "examples" / "astronaut.png")
        hw = training_hw(*photo.shape[-2:], config)
        content = resize(photo, hw).to(device)
        objective = StyleObjective(clip, vgg, config, content, "a watercolor painting")
        generator = torch.Generator().manual_seed(0)
        crops = [sample_crop_params(config.n_crops, hw, config.crop_size, config.distortion, generator)
                 for _ in range(args.steps)]
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
        failures += [f"{name}: {check}" for check, ok in checks.items() if not ok]
    print("\nFAILED: " + "; ".join(failures) if failures else "\nall checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
