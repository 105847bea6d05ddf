"""Temporal flicker of a restyled video: mean frame-to-frame change of the output against the input's.

Makes a short clip (a slow pan across an example photo, 24 frames of 256 x 192
at 12 fps, H.264), restyles it with a U-Net (``--unet`` file, or a width-16
U-Net with seeded random weights) through `clipstyle apply`, and prints
`clipstyle_opt.unet.video.flicker` of both, in 8-bit levels. An output flicker
well above the input's would mean the stylization itself varies between
frames (for instance through its per-frame InstanceNorm statistics).

    python benchmarks/bench_flicker.py [--unet style.unet.pt]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_pan(path: Path, frames: int = 24, width: int = 256, height: int = 192, fps: int = 12) -> None:
    import av
    from PIL import Image

    photo = np.asarray(Image.open(ROOT / "examples" / "coffee.png").convert("RGB"))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "12"}
        for index in range(frames):
            x = 8 + 6 * index
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(photo[60:60 + height, x:x + width]),
                                               format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unet", default=None, help="A saved U-Net (default: seeded random weights).")
    args = parser.parse_args()
    from clipstyle_opt.unet.io import save_unet
    from clipstyle_opt.unet.model import seeded_unet
    from clipstyle_opt.unet.video import flicker, frames_rgb

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip, out = folder / "pan.mp4", folder / "out.mp4"
        make_pan(clip)
        unet = args.unet or str(save_unet(seeded_unet(16, 0), folder / "s.unet.pt", {}))
        subprocess.run([sys.executable, "-m", "clipstyle_opt", "apply", unet, str(clip), "-o", str(out), "-q"],
                       check=True, cwd=ROOT)
        figures = {"input_flicker": round(flicker(frames_rgb(clip)), 3),
                   "output_flicker": round(flicker(frames_rgb(out)), 3), "unet": args.unet or "random (seed 0)"}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
