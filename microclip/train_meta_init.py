#!/usr/bin/env python
"""Meta-learn a U-Net start (Reptile) over many (photo, prompt) stylizations: an experiment of issue 38.

Question: does a start meta-learned for stylization make the style arrive in fewer steps than the shipped
identity start (`--init identity`)? Reptile (Nichol et al. 2018): from meta-weights W, run one task's own
training for k steps to W', then move W a fraction eps toward W' (W <- W + eps (W' - W)); over many tasks
W drifts to weights from which a few steps of any task go far. Here a task is one stylization and its
inner loop is the project's own run (`Stylizer.start(...).advance()`: the real objective, crops, Adam and
learning-rate schedule), started from W instead of the seeded random weights. Not part of the paper.

Start: the shipped identity weights (clipstyle_opt/unet/identity_init.pt).
Tasks (everything here may be used; scikit-image's other sample photos stay held out, as for the identity
start, and so do the `HELD_OUT_PROMPTS`):
  - photos: `microclip.train_identity_init.Sources` at the task size: 1/2 random crops of the bundled photos
    examples/{astronaut,chelsea,coffee}.png (random scale, flip, colour jitter), 1/4 rendered clutter
    compositions (half with a texture blended in), 1/4 procedural textures;
  - prompts: "<colour> <pattern>" over the micro CLIP's 8 colours x 8 patterns, minus `HELD_OUT_PROMPTS`.
Encoder: the micro CLIP (tests/data/micro_clip.pt). A start learned against it is specific to that encoder:
real CLIP weights are not available here, so this cannot be the default for real-CLIP users; the file is
an experiment and is written under build/ (not in the package, not in git).

    python -m microclip.train_meta_init --out build/meta_init.pt --cpu-minutes 30
    python -m microclip.train_meta_init --out build/meta_init.pt --meta-steps 130 --stop-after 20   # issue 38's file

Writes the weights (fp16, `clipstyle_opt.unet.io.save_unet`'s format, so `--init PATH` reads them) every
``--save-every`` meta-steps and at the end, and a JSON report beside them (command, data, CPU time, curve).
Times are process CPU time (`time.process_time()`, one torch thread).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clipstyle_opt import StyleConfig, Stylizer  # noqa: E402
from clipstyle_opt.devices import cpu_model  # noqa: E402
from clipstyle_opt.unet.io import save_unet  # noqa: E402
from clipstyle_opt.unet.start import starting_unet  # noqa: E402
from microclip.textures import COLOURS, PATTERNS  # noqa: E402
from microclip.train_identity_init import TRAINING_PHOTOS, Sources  # noqa: E402

HELD_OUT_PROMPTS = ("blue stripes", "red dots", "green checkerboard", "yellow waves")
"""Never a meta-training task: the first two are benchmarks/bench_quality.py's prompts (the evaluation), the
other two are kept back as well. Their words each appear in other training prompts (e.g. "blue dots")."""

TRAINING_PROMPTS = tuple(f"{c} {p}" for c in COLOURS for p in PATTERNS if f"{c} {p}" not in HELD_OUT_PROMPTS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "build" / "meta_init.pt")
    p.add_argument("--start", default="identity", help="init the meta-weights start from (identity, random, PATH)")
    p.add_argument("--size", type=int, default=128, help="task image side, px (the benchmark's size)")
    p.add_argument("--inner-steps", type=int, default=12, help="k: steps of each task's run (lr decays at k/2)")
    p.add_argument("--n-crops", type=int, default=8, help="patch crops per inner step (crop side: size / 4)")
    p.add_argument("--meta-batch", type=int, default=4, help="tasks averaged into one meta-step")
    p.add_argument("--eps", type=float, default=1.0, help="meta step size at the start (linearly down to eps/10)")
    p.add_argument("--meta-steps", type=int, default=1000, help="meta-steps at most (eps anneals over these)")
    p.add_argument("--stop-after", type=int, default=None, help="stop after N meta-steps (eps still anneals over "
                   "--meta-steps): reproduces a run that was stopped early")
    p.add_argument("--cpu-minutes", type=float, default=30.0, help="stop after this much process CPU time")
    p.add_argument("--clip-model", default=str(ROOT / "tests" / "data" / "micro_clip.pt"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=10, help="write the weights every N meta-steps")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")  # the patch-rejection warning of tiny texture tasks; the report has losses
    config = {"clip_model": args.clip_model, "size": args.size, "output_size": args.size, "steps": args.inner_steps,
              "lr_decay_every": max(args.inner_steps // 2, 1), "n_crops": args.n_crops,
              "crop_size": max(8, args.size // 4), "init": "random"}
    stylizer = Stylizer(StyleConfig(**config))
    meta_unet, _ = starting_unet(16, args.seed, args.start)
    meta = {k: v.detach().clone().float() for k, v in meta_unet.state_dict().items()}
    sources = Sources(args.size, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    kinds = (sources.photo, sources.photo, sources.composition, sources.texture)
    started = time.process_time()
    curve: list[dict[str, float]] = []
    task = 0
    meta_step = 0
    for meta_step in range(1, args.meta_steps + 1):
        eps = args.eps * (1 - 0.9 * (meta_step - 1) / max(args.meta_steps - 1, 1))
        delta = {k: torch.zeros_like(v) for k, v in meta.items()}
        firsts, lasts = [], []
        for _ in range(args.meta_batch):
            task += 1
            image = kinds[int(rng.integers(len(kinds)))]()
            prompt = str(rng.choice(TRAINING_PROMPTS))
            run = stylizer.start(image, prompt, seed=task)
            run.unet.load_state_dict(meta)  # the inner run starts from the meta-weights (its optimizer is fresh)
            run.advance()
            history = run.training.trained.history
            firsts.append(history[0]["total"])
            lasts.append(history[-1]["total"])
            for k, v in run.unet.state_dict().items():
                delta[k] += (v.detach().float() - meta[k]) / args.meta_batch
        for k, value in meta.items():
            if value.is_floating_point():
                value += eps * delta[k]
        cpu = time.process_time() - started
        curve.append({"meta_step": meta_step, "tasks": task, "cpu_s": round(cpu, 1), "eps": round(eps, 4),
                      "first_total": round(float(np.mean(firsts)), 4), "last_total": round(float(np.mean(lasts)), 4)})
        if meta_step % 5 == 0:
            recent = curve[-25:]
            print(f"meta-step {meta_step:4d}  tasks {task:5d}  cpu {cpu:7.0f} s  eps {eps:.3f}  total loss at step 1 "
                  f"{np.mean([c['first_total'] for c in recent]):8.2f}  at step {args.inner_steps} "
                  f"{np.mean([c['last_total'] for c in recent]):8.2f}  (mean of the last {len(recent)})", flush=True)
        if meta_step % args.save_every == 0:
            write(meta, args, argv, curve, cpu)
        if cpu > 60 * args.cpu_minutes or meta_step == args.stop_after:
            break
    write(meta, args, argv, curve, time.process_time() - started)


def write(meta: dict[str, torch.Tensor], args: argparse.Namespace, argv: list[str] | None,
          curve: list[dict[str, float]], cpu: float) -> None:
    """The meta-weights (fp16) and the JSON report beside them."""
    unet, _ = starting_unet(16, args.seed, "random")
    unet.load_state_dict(meta)
    report = {
        "command": " ".join(["python -m microclip.train_meta_init", *(argv if argv is not None else sys.argv[1:])]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": {"photos": [f"examples/{name}.png" for name in TRAINING_PHOTOS] + [("(1/2 of the tasks: random "
                                                                                   "scale, crop, flip, jitter)")],
                 "compositions": "render_clutter, half with a texture blended in (1/4)",
                 "textures": "microclip.textures.render_texture (1/4)",
                 "training_prompts": len(TRAINING_PROMPTS), "held_out_prompts": list(HELD_OUT_PROMPTS),
                 "held_out_photos": "scikit-image's other sample photos (rocket, motorcycle_left, ihc, ...)"},
        "encoder": "micro CLIP (tests/data/micro_clip.pt): the start is specific to it",
        "meta_steps": len(curve), "tasks": curve[-1]["tasks"] if curve else 0,
        "cpu_s": round(cpu, 1), "cpu": cpu_model(), "curve": curve,
    }
    path = save_unet(unet.half(), args.out, {"kind": "meta_init", "trainer": "microclip/train_meta_init.py",
                                             "report": {k: v for k, v in report.items() if k != "curve"}},
                     overwrite=True)
    report["bytes"] = path.stat().st_size
    path.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
