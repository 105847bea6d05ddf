"""How far apart the images of one seed are at different torch thread counts (pixels, not time).

Runs the same stylization (one photo, one prompt, one seed) at each ``--threads`` value, once more at the
first value to show that a repeat is bit-identical, and at the first value with other seeds to compare
the thread-count spread with the seed-to-seed spread, both in pixels and in CLIP metrics (under the
run's own encoder). Prints one table row per pair and per run, and writes them as JSON with ``--json``.

Defaults: the micro CLIP on examples/chelsea.png, "red stripes", the README's pattern settings (128 px,
100 steps, threshold 0, lambda_c 30), seed 0. Timing does not matter here, so run it niced::

    nice -n 10 python tools/thread_spread.py --threads 1,2,4 --seeds 0,1,2 --json build/thread_spread.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clipstyle_opt import StyleConfig, Stylizer  # noqa: E402
from clipstyle_opt.devices import cpu_model  # noqa: E402
from clipstyle_opt.imageio import load_image, to_pil  # noqa: E402

PATTERN = {"clip_model": str(ROOT / "tests" / "data" / "micro_clip.pt"), "size": 128, "output_size": 128,
           "steps": 100, "threshold": 0.0, "lambda_c": 30.0}


def levels(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Mean and max absolute difference of two 8-bit images, in levels (0..255)."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float(diff.mean()), int(diff.max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default=str(ROOT / "examples" / "chelsea.png"))
    parser.add_argument("--prompt", default="red stripes")
    parser.add_argument("--threads", default="1,2,4", help="thread counts, the first is the reference")
    parser.add_argument("--seeds", default="0,1,2", help="seeds at the first thread count (the first: all counts)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--steps", type=int, default=PATTERN["steps"])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-repeat", action="store_true", help="skip the repeat of the first run")
    parser.add_argument("--save", type=Path, default=None, help="folder for each run's image (<name>.png)")
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    config = StyleConfig(**{**PATTERN, "steps": args.steps},
                         device="cpu", precision=args.precision)
    stylizer = Stylizer(config)
    from clipstyle_opt.evaluate import Evaluator

    evaluator = Evaluator(clip_model=config.clip_model, device="cpu", size=None,
                          metrics=("clip_score", "patch_clip_score", "clip_direction"),
                          clip=[encoder for encoder, _ in stylizer.encoders])
    photo = load_image(args.photo, "photo")
    runs: dict[str, dict] = {}

    def run(threads: int, seed: int, name: str) -> np.ndarray:
        result = stylizer.stylize(args.photo, args.prompt, threads=threads, seed=seed)
        pixels = np.asarray(to_pil(result.tensor))
        scores = evaluator.score(load_image(to_pil(result.tensor)), photo, args.prompt)
        runs[name] = {"threads": result.threads, "seed": seed, "precision": result.precision, **scores}
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            to_pil(result.tensor).save(args.save / f"{name}.png")
        print(f"{name:14s} " + " ".join(f"{k} {v:.4f}" for k, v in scores.items()), flush=True)
        return pixels

    images = {f"t{t}_s{seeds[0]}": run(t, seeds[0], f"t{t}_s{seeds[0]}") for t in counts[:2]}
    repeat = run(counts[0], seeds[0], f"t{counts[0]}_s{seeds[0]}_again") if not args.no_repeat else None
    images.update({f"t{t}_s{seeds[0]}": run(t, seeds[0], f"t{t}_s{seeds[0]}") for t in counts[2:]})
    for seed in seeds[1:]:
        images[f"t{counts[0]}_s{seed}"] = run(counts[0], seed, f"t{counts[0]}_s{seed}")
    reference = images[f"t{counts[0]}_s{seeds[0]}"]
    pairs = {f"repeat t{counts[0]}": levels(reference, repeat)} if repeat is not None else {}
    pairs.update({f"threads {counts[0]} vs {t}": levels(reference, images[f"t{t}_s{seeds[0]}"]) for t in counts[1:]})
    if len(counts) > 2:
        pairs[f"threads {counts[1]} vs {counts[2]}"] = levels(images[f"t{counts[1]}_s{seeds[0]}"],
                                                             images[f"t{counts[2]}_s{seeds[0]}"])
    pairs.update({f"seed {seeds[0]} vs {s}": levels(reference, images[f"t{counts[0]}_s{s}"]) for s in seeds[1:]})
    print(f"\n{cpu_model()}, {torch.get_num_threads()} threads by default, torch {torch.__version__}, precision "
          f"{runs[next(iter(runs))]['precision']}; {args.prompt!r} on {Path(args.photo).name}, {args.steps} steps")
    for name, (mean, high) in pairs.items():
        print(f"{name:22s} mean {mean:6.2f}  max {high:4d} levels")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu_model(), "torch": torch.__version__, "args": vars(args) | {
            "json": str(args.json)}, "settings": PATTERN, "runs": runs,
            "pairs": {k: {"mean": m, "max": x} for k, (m, x) in pairs.items()}}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
