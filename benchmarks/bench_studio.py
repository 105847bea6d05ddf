"""The studio's latency and the cost of its previews, through its API on a loopback port.

1. Time from pressing Stylize (a ``/stylize`` call) to the first preview, with the ``preview`` preset on a
   512 px photo: the first call of a server (it loads the encoder and VGG) and a later one.
2. The cost of streaming previews: the same run (preview preset, ``--steps`` steps) with a preview after every
   step, with the default of one every 2 s of training, and with none but the final image, alternated
   ``--repeats`` times. The figure is the extra CPU time of the whole process (server, queue, PNG encoding,
   the client's downloads: everything runs in this process) over the run without previews, in % of that
   run's CPU time, median over repeats (target: at most 5 % at the default). CPU time rather than wall time:
   on a shared machine the wall time of the same run varies by tens of % from one run to the next (both are
   printed).
   And, independent of the machine's load, one preview's own CPU work (to 8 bits and PNG at 256 px): at the
   default interval of 2 s it bounds the cost at (work / 2 s).
3. ``--strength``: the strength slider's pixel mix against a mix in the U-Net's pre-sigmoid space
   (`clipstyle_opt.studio.blend`): milliseconds per 512 px image and how far apart they are, in 8-bit levels.

    python benchmarks/bench_studio.py [--clip-model micro|vit-b32] [--steps 10] [--repeats 3] [--strength]

``micro`` is the bundled micro CLIP (tests/data/micro_clip.pt); ``vit-b32`` a random-init ViT-B/32 (the cost of
the real model; its images mean nothing). The CPU's name is printed; say whether the machine was busy.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

from studio_server import MICRO_CLIP, running_studio  # noqa: E402


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def first_preview(client, photo: str, clip_model: str) -> float:
    from gradio_client import handle_file

    started = time.perf_counter()
    # 2 steps: the first preview comes after step 1 whatever the total, and the call ends soon after
    job = client.submit(handle_file(photo), "red stripes", "preview", 2, None, 0, clip_model, api_name="/stylize")
    while not job.outputs():
        if job.done():
            job.result()  # raises the server's error
        time.sleep(0.01)
    seconds = time.perf_counter() - started
    job.result(timeout=3600)
    return seconds


def preview_work(side: int = 256, repeats: int = 20) -> float:
    """CPU milliseconds of one preview's own work at ``side`` px: the step output to an 8-bit image
    (`to_pil`) and the PNG encoding Gradio does before sending it."""
    import io

    import torch

    from clipstyle_opt.imageio import to_pil

    output = torch.rand(1, 3, side, side)
    started = time.process_time()
    for _ in range(repeats):
        to_pil(output).save(io.BytesIO(), format="png")
    return (time.process_time() - started) / repeats * 1000


def whole_run(client, photo: str, clip_model: str, steps: int) -> tuple[float, float, int]:
    """(wall seconds of the call, CPU seconds of this process during it, outputs streamed)."""
    from gradio_client import handle_file

    started, cpu = time.perf_counter(), time.process_time()
    job = client.submit(handle_file(photo), "red stripes", "preview", steps, None, 0, clip_model,
                        api_name="/stylize")
    job.result(timeout=3600)
    return time.perf_counter() - started, time.process_time() - cpu, len(job.outputs())


def strength(photo: str, output_dir: Path) -> None:
    import numpy as np
    from PIL import Image

    from clipstyle_opt.studio.blend import logit_mix, pixel_mix

    styled_path = sorted(output_dir.glob("*.png"))[-1]
    styled = Image.open(styled_path).convert("RGB")
    original = Image.open(photo).convert("RGB").resize(styled.size, Image.Resampling.BICUBIC)
    base, top = (np.asarray(im, dtype=np.float32) / 255 for im in (original, styled))
    print(f"strength: {styled.size[0]}x{styled.size[1]} px")
    for value in (0.25, 0.5, 0.75):
        started = time.perf_counter()
        for _ in range(10):
            mixed = np.asarray(pixel_mix(original, styled, value), dtype=np.float32)
        pixel_ms = (time.perf_counter() - started) * 100
        started = time.perf_counter()
        for _ in range(10):
            other = np.clip(np.rint(logit_mix(base, top, value) * 255), 0, 255)
        logit_ms = (time.perf_counter() - started) * 100
        gap = np.abs(mixed - other)
        print(f"  s={value}: pixel mix {pixel_ms:.1f} ms, logit mix {logit_ms:.1f} ms; they differ by "
              f"{gap.mean():.2f} levels on average, {np.percentile(gap, 99):.0f} at the 99th percentile")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip-model", default="micro", choices=("micro", "vit-b32"))
    parser.add_argument("--photo", default=str(ROOT / "examples" / "astronaut.png"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strength", action="store_true")
    args = parser.parse_args()
    import torch
    from gradio_client import Client

    with tempfile.TemporaryDirectory() as tmp:
        clip_model = MICRO_CLIP
        if args.clip_model == "vit-b32":
            from clipstyle_opt.testing import make_random_clip

            clip_model = str(make_random_clip(Path(tmp) / "vit_b32.pt", "ViT-B/32"))
        print(f"CPU: {cpu_name()}; torch threads {torch.get_num_threads()}; load average before "
              f"{os.getloadavg()[0]:.1f}")
        print(f"encoder: {args.clip_model}; photo {Path(args.photo).name}")
        work = preview_work()
        print(f"one preview's own work (256 px, to 8 bits + PNG): {work:.1f} ms of CPU; at the default of one "
              f"preview per 2 s of training at most, that bounds the cost at {work / 2000 * 100:.2f} % of the "
              "training time")
        with running_studio(Path(tmp) / "out", preview_every=2.0) as (demo, url):
            client = Client(url, verbose=False, download_files=str(Path(tmp) / "downloads"))
            cold = first_preview(client, args.photo, clip_model)
            warm = [first_preview(client, args.photo, clip_model) for _ in range(2)]
            print(f"Stylize -> first preview (preview preset): first call {cold:.2f} s (loads the models), "
                  f"later {statistics.median(warm):.2f} s")
            options = demo.studio.options
            costs: dict[str, list[float]] = {"every step": [], "every 2 s (default)": []}
            for repeat in range(args.repeats):
                options.preview_every = float("inf")
                wall_none, cpu_none, _ = whole_run(client, args.photo, clip_model, args.steps)
                for label, every in (("every step", 0.0), ("every 2 s (default)", 2.0)):
                    options.preview_every = every
                    wall, cpu, streamed = whole_run(client, args.photo, clip_model, args.steps)
                    costs[label].append((cpu - cpu_none) / cpu_none * 100)
                    print(f"  repeat {repeat + 1}: {label}: {streamed - 1} previews; CPU {cpu:.2f} s against "
                          f"{cpu_none:.2f} s without ({costs[label][-1]:+.1f} %); wall {wall:.2f} s against "
                          f"{wall_none:.2f} s")
            for label, values in costs.items():
                print(f"previews {label}: median {statistics.median(values):+.1f} % of the run's CPU time "
                      f"({args.steps} steps, {args.repeats} repeats)")
            if args.strength:
                strength(args.photo, options.output_dir)
        print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
