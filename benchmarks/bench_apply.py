"""Peak memory and wall time of `clipstyle apply` on a large photo (default 8000 x 6000), tiled.

Makes a detailed JPEG of the given size (the example photos, mirrored into a
mosaic), saves a width-16 U-Net with seeded random weights (cost and memory do
not depend on the weight values), then runs the command line in a child
process and reads its peak resident memory (``ru_maxrss`` of the child, as
``/usr/bin/time -v`` reports it). Prints the figures and the CPU.

    python benchmarks/bench_apply.py [--width 8000 --height 6000 --tile-size 1024 --norm-stats thumbnail]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clipstyle_opt.devices import cpu_model  # noqa: E402


def make_photo(path: Path, width: int, height: int) -> None:
    """A photo with detail everywhere: the three examples, mirrored and tiled at their own resolution."""
    from PIL import Image, ImageOps

    pieces = [Image.open(ROOT / "examples" / f"{name}.png").convert("RGB") for name in ("astronaut", "chelsea", "coffee")]
    canvas = Image.new("RGB", (width, height))
    y, row = 0, 0
    while y < height:
        x, index = 0, row
        piece_height = 0
        while x < width:
            piece = pieces[index % len(pieces)]
            if (index + row) % 2:
                piece = ImageOps.mirror(piece)
            canvas.paste(piece, (x, y))
            x += piece.width
            piece_height = max(piece_height, piece.height)
            index += 1
        y += piece_height
        row += 1
    canvas.save(path, quality=92)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8000)
    parser.add_argument("--height", type=int, default=6000)
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--norm-stats", default="thumbnail", choices=("thumbnail", "exact"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="Also write the figures here.")
    args = parser.parse_args()

    from clipstyle_opt.unet.io import save_unet
    from clipstyle_opt.unet.model import seeded_unet

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo, unet, out = folder / "photo.jpg", folder / "style.unet.pt", folder / "out.jpg"
        make_photo(photo, args.width, args.height)
        save_unet(seeded_unet(16, 0), unet, {"prompt": "benchmark"})
        command = [sys.executable, "-m", "clipstyle_opt", "apply", str(unet), str(photo), "-o", str(out),
                   "--tile-size", str(args.tile_size), "--norm-stats", args.norm_stats, "--device", args.device, "-q"]
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT)
        seconds = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux
        from PIL import Image

        with Image.open(out) as written:
            size = written.size
    figures = {"photo": f"{args.width}x{args.height}", "output": f"{size[0]}x{size[1]}", "tile_size": args.tile_size,
               "norm_stats": args.norm_stats, "device": args.device, "peak_rss_mb": round(peak_mb),
               "wall_s": round(seconds, 1), "cpu": cpu_model(), "cores": _cores()}
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


if __name__ == "__main__":
    main()
