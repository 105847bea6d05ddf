"""Wall time of one whole `--preset preview` stylization of a 512 px photo.

CLIP ViT-B/32 architecture with random weights (cost does not depend on
weight values), bundled VGG16, auto precision. Reports model set-up, the
optimization, the final full-resolution render and the total, against the
3-minute target for this preset on a 2-core CPU.

    python benchmarks/bench_preview.py [--device cpu]
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
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "bench_preview.json"))
    args = parser.parse_args()

    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clip = ClipEncoder(CLIP(*RANDOM_CLIP_SIZES["ViT-B/32"]), name="ViT-B/32 (random weights)")
    config = preset_config("preview", device=args.device)
    stylizer = Stylizer(config, clip=clip)
    setup_s = time.perf_counter() - started
    result = stylizer.stylize(args.photo, "a watercolor painting")
    total_s = time.perf_counter() - started
    report = {
        "preset": "preview", "config": config.to_dict(), "device": result.device, "precision": result.precision,
        "photo": Path(args.photo).name, "output_size": list(result.tensor.shape[-2:]),
        "setup_s": round(setup_s, 1), "train_s": result.timings["train_s"], "apply_s": result.timings["apply_s"],
        "step_median_s": result.timings["step_median_s"], "total_s": round(total_s, 1),
        "torch_threads": torch.get_num_threads(),
    }
    print(f"preview preset on {result.device} ({result.precision}, {torch.get_num_threads()} threads): "
          f"set-up {setup_s:.1f} s, {config.steps} steps {result.timings['train_s']:.1f} s "
          f"({result.timings['step_median_s']:.2f} s/step), render {result.timings['apply_s']:.1f} s, "
          f"total {total_s:.1f} s (target <= 180 s: {'met' if total_s <= 180 else 'MISSED'})")
    Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
