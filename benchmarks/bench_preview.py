"""Wall time of one whole stylization of a 512 px photo (time to a finished image).

CLIP ViT-B/32 architecture with random weights (cost does not depend on
weight values), bundled VGG16, auto precision. Reports model set-up, the
optimization, the final full-resolution render and the total; for the
preview preset against its 3-minute target on a 2-core CPU, for the
reference preset on a GPU against the 3-second target of 200 steps.

    python benchmarks/bench_preview.py [--device cpu]                       # preview preset
    python benchmarks/bench_preview.py --device cuda --preset reference --runs 2 [--compile]

``--runs N`` stylizes N times with one `Stylizer`: the first run pays for
CUDA/cuDNN start-up (and compiling), the later ones are what a user of the
Python API or a sweep sees.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clipstyle_opt import Stylizer, preset_config  # noqa: E402
from clipstyle_opt.encoders.clip import ClipEncoder  # noqa: E402
from clipstyle_opt.testing import CLIP, RANDOM_CLIP_SIZES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--photo", default=str(ROOT / "examples" / "astronaut.png"))
    parser.add_argument("--preset", default="preview", choices=("preview", "reference", "fast"))
    parser.add_argument("--runs", type=int, default=1, help="stylizations with the same loaded models")
    parser.add_argument("--compile", action="store_true", help="torch.compile CLIP's image tower")
    parser.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=True,
                        help="capture each step as a CUDA graph (the default; CUDA only)")
    parser.add_argument("--clip-batch", type=int, default=None, help="override clip_batch (uncaptured steps)")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's steps (smoke tests)")
    parser.add_argument("--size", type=int, default=None, help="override the preset's size (smoke tests)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "bench_preview.json"))
    args = parser.parse_args()

    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clip = ClipEncoder(CLIP(*RANDOM_CLIP_SIZES["ViT-B/32"]), name="ViT-B/32 (random weights)")
    overrides = {k: v for k, v in (("steps", args.steps), ("size", args.size), ("clip_batch", args.clip_batch))
                 if v is not None}
    config = preset_config(args.preset, device=args.device, compile=args.compile, cuda_graph=args.cuda_graph,
                           **overrides)
    stylizer = Stylizer(config, clip=clip)
    setup_s = time.perf_counter() - started
    target_s = 180 if args.preset == "preview" else 3 if stylizer.device.type == "cuda" else None
    runs = []
    for run in range(args.runs):
        run_started = time.perf_counter()
        result = stylizer.stylize(args.photo, "a watercolor painting")
        run_s = time.perf_counter() - run_started
        total_s = run_s + (setup_s if run == 0 else 0.0)
        runs.append({"run": run + 1, "train_s": result.timings["train_s"], "apply_s": result.timings["apply_s"],
                     "step_median_s": result.timings["step_median_s"], "run_s": round(run_s, 2),
                     "total_s": round(total_s, 2)})
        verdict = "" if target_s is None else f" (target <= {target_s} s: {'met' if total_s <= target_s else 'MISSED'})"
        print(f"{args.preset} preset, run {run + 1} on {result.device} ({result.precision}, "
              f"{torch.get_num_threads()} threads{', compiled' if args.compile else ''}"
              f"{', CUDA graph' if config.cuda_graph and stylizer.device.type == 'cuda' else ''}): "
              f"{'set-up %.1f s, ' % setup_s if run == 0 else ''}{config.coarse_steps + config.steps} steps "
              f"at {config.size} px "
              f"{result.timings['train_s']:.2f} s ({result.timings['step_median_s'] * 1000:.1f} ms/step), "
              f"render {result.timings['apply_s']:.2f} s, total {total_s:.2f} s{verdict}", flush=True)
    report = {
        "preset": args.preset, "config": config.to_dict(), "device": result.device,
        "device_name": torch.cuda.get_device_name() if stylizer.device.type == "cuda" else "cpu",
        "precision": result.precision, "photo": Path(args.photo).name,
        "output_size": list(result.tensor.shape[-2:]), "setup_s": round(setup_s, 1), "runs": runs,
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
    }
    Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
