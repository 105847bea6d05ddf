"""Wall time of the 16-run acceptance sweep (2 photos x 2 prompts x lambda_patch {0, 9000} x threshold
{0, 0.7}) with a random-init tiny CLIP at 64 px, locally and on a local Ray with 2 workers, and the
overhead per run beyond the stylization itself.

Stylization = each run's own `Stylizer.stylize` time (set-up, steps, final render: the sidecar's
``total_s``). Overhead = wall time - stylization time, per run: spec expansion, encoder loading,
writing images, sidecars and results.csv after every run, the contact sheet and plots; on Ray also
starting Ray and its workers, and sending images.

    python benchmarks/bench_sweep.py [--steps 2] [--engines local,ray]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clipstyle_opt import sweep  # noqa: E402
from clipstyle_opt.sweeps import store as store_module  # noqa: E402
from clipstyle_opt.testing import make_random_clip  # noqa: E402


def timed_methods() -> dict[str, float]:
    """Wrap the store's writers so their time is summed (the bookkeeping part of the overhead)."""
    totals = {"record_s": 0.0, "tables_s": 0.0}
    for name, key in (("record", "record_s"), ("write_tables", "tables_s")):
        original = getattr(store_module.SweepStore, name)

        def wrapper(self, *args, _original=original, _key=key, **kwargs):
            started = time.perf_counter()
            try:
                return _original(self, *args, **kwargs)
            finally:
                totals[_key] += time.perf_counter() - started
        setattr(store_module.SweepStore, name, wrapper)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--engines", default="local,ray", help="Comma-separated: local, ray (default both).")
    parser.add_argument("--json", default=None, help="Also write the figures here.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    clip = make_random_clip(work / "tiny.pt", "tiny", seed=0)
    spec = {"contents": [str(ROOT / "examples" / "chelsea.png"), str(ROOT / "examples" / "coffee.png")],
            "prompts": ["fire", "water"], "grid": {"lambda_patch": [0, 9000], "threshold": [0, 0.7]},
            "base": {"clip_model": str(clip), "size": 64, "steps": args.steps, "n_crops": 2, "crop_size": 32,
                     "device": "cpu", "precision": "fp32", "max_output_size": 64}}
    totals = timed_methods()
    figures = {}
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        totals.update(record_s=0.0, tables_s=0.0)
        started = time.perf_counter()
        frame = sweep(spec, work / engine, engine=engine, workers=2 if engine == "ray" else None)
        wall = time.perf_counter() - started
        stylize = float(frame["total_s"].sum())
        runs = len(frame)
        parallel = 2 if engine == "ray" else 1
        figures[engine] = {
            "runs": runs, "failed": int(frame.attrs["failed"]), "wall_s": round(wall, 2),
            "stylize_sum_s": round(stylize, 2), "stylize_per_run_s": round(stylize / runs, 3),
            "train_per_run_s": round(float(frame["train_s"].sum()) / runs, 3),
            "overhead_per_run_s": round((wall - stylize / parallel) / runs, 3),
            "encoder_load_s": round(float(frame["load_s"].iloc[0]), 2),
            "record_per_run_s": round(totals["record_s"] / runs, 4),
            "results_table_per_run_s": round(totals["tables_s"] / runs, 4),
        }
        print(f"{engine:5s} {runs} runs in {wall:6.1f} s; stylization {stylize / runs:.2f} s/run "
              f"(train {figures[engine]['train_per_run_s']:.2f}); overhead {figures[engine]['overhead_per_run_s']:.2f} "
              f"s/run (encoder load {figures[engine]['encoder_load_s']:.1f} s once per worker, image+sidecar "
              f"{figures[engine]['record_per_run_s'] * 1000:.0f} ms, results table "
              f"{figures[engine]['results_table_per_run_s'] * 1000:.0f} ms)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
