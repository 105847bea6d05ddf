#!/usr/bin/env python
"""Run several micro-model training recipes side by side and tabulate their held-out accuracy.

Each recipe is ``NAME=ARGS``: extra arguments for the trainer (`microclip.train_micro_clip`)
on top of ``--common``. Runs go ``--jobs`` at a time, each with its own
output folder and log under ``--work``; a run that outlasts ``--timeout`` is
stopped, and its log still shows the accuracy it printed along the way
(``--eval-every``). Meant for trying recipes on a machine with many cores or
a GPU (``--common "--device cuda"``); the bundled models themselves are
trained on the CPU with one command each (microclip/README).

Example (eight SigLIP recipes on one GPU, two CPU threads each)::

    python -m microclip.sweep_micro_recipes --jobs 8 --work /tmp/sweep --summary summary.json \\
        --common "--family siglip --context-length 16 --device cuda --eval-every 200" \\
        base= clip="--siglip-init clip" k2="--siglip-init clip --colours-per-batch 2"
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

#: The trainer, run as a file (it puts the repository root on sys.path itself), so a sweep works from any folder.
TRAINER = Path(__file__).resolve().parent / "train_micro_clip.py"


def parse_recipe(text: str) -> tuple[str, list[str]]:
    name, sep, extra = text.partition("=")
    if not sep or not name or not name.replace("-", "").replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(f"a recipe is NAME=ARGS with NAME in letters, digits, - and _: {text!r}")
    return name, shlex.split(extra)


def run_recipe(name: str, extra: list[str], common: list[str], work: Path, timeout: float) -> dict[str, Any]:
    """Train one recipe; returns its report (the trainer's JSON) or what the log says of its failure."""
    out = work / name
    log = work / f"{name}.log"
    command = [sys.executable, str(TRAINER), *common, *extra, "--out", str(out)]
    start = time.perf_counter()
    with open(log, "w") as fh:
        fh.write(" ".join(shlex.quote(c) for c in command) + "\n")
        fh.flush()
        try:
            code = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    result: dict[str, Any] = {"name": name, "args": extra, "wall_s": round(time.perf_counter() - start, 1),
                              "exit": code}
    report_path = out.parent / (out.name + ".json")
    if code == 0 and report_path.is_file():
        result["report"] = json.loads(report_path.read_text())
    peeks = [line.strip() for line in log.read_text(errors="replace").splitlines() if "held-out joint" in line]
    result["peeks"] = peeks
    if code != 0:
        result["log_tail"] = log.read_text(errors="replace").splitlines()[-5:]
    return result


def row(result: dict[str, Any]) -> str:
    report = result.get("report")
    if not report:
        last = result["peeks"][-1] if result["peeks"] else "no accuracy printed"
        return f"{result['name']:<14} exit {result['exit']} after {result['wall_s']:.0f} s; last: {last}"
    plain, templated, blended = (report[k] for k in ("zero_shot_plain", "zero_shot_templated",
                                                     "zero_shot_blended_plain"))
    return (f"{result['name']:<14} {plain['joint_colour']:7.1%} {plain['joint_pattern']:8.1%} "
            f"{templated['joint_pattern']:10.1%} {blended['joint_pattern']:9.1%} "
            f"{report['train_time_s']:8.0f} s  t {report['logit_scale']:.1f}"
            + (f" b {report['logit_bias']:.2f}" if "logit_bias" in report else ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipes", nargs="+", type=parse_recipe, metavar="NAME=ARGS")
    p.add_argument("--common", default="", help="arguments every recipe gets (one shell-quoted string)")
    p.add_argument("--jobs", type=int, default=1, help="recipes trained at once")
    p.add_argument("--work", type=Path, required=True, help="folder for the runs' outputs and logs")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before a run is stopped")
    p.add_argument("--summary", type=Path, default=None, help="write every result as JSON here too")
    args = p.parse_args(argv)
    names = [name for name, _ in args.recipes]
    if len(set(names)) != len(names):
        p.error("recipe names must differ")
    args.work.mkdir(parents=True, exist_ok=True)
    common = shlex.split(args.common)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda r: run_recipe(r[0], r[1], common, args.work, args.timeout), args.recipes))
    print(f"{'recipe':<14} {'colour':>7} {'pattern':>8} {'templated':>10} {'blended':>9} {'train':>10}")
    for result in results:
        print(row(result))
        for peek in result["peeks"]:
            print(f"    {peek}")
    if args.summary:
        args.summary.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["exit"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
