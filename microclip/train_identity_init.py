#!/usr/bin/env python
"""Train the style U-Net to reproduce its input: the ``--init identity`` weights shipped in clipstyle_opt.

The U-Net (`clipstyle_opt.unet.model.StyleUNet`, width 16, ~0.6 M parameters, sigmoid output) is
trained once, offline, so that U(x) ~= x; a stylization started from these weights begins with the
photo's content already in place (docs/guides/head-start.md). Not part of the paper: CLIPstyler
starts every run from random weights.

Data (everything here may be used; nothing from scikit-image's other sample photos, which are the
held-out evaluation set of benchmarks/bench_quality.py and tests/test_head_start.py):
  - the procedural textures of `microclip.textures` (colour x pattern, random scale/orientation),
  - photo-like compositions rendered here: `render_clutter` with a texture blended over part of it,
  - random crops of the bundled photos examples/{astronaut,chelsea,coffee}.png at random scales,
    flipped, with brightness/contrast/saturation jitter.
Loss: mean absolute error between U(x) and x, in [0, 1] pixel units. Adam, cosine learning rate.

    python -m microclip.train_identity_init --out clipstyle_opt/unet/identity_init.pt   # the shipped weights

Writes the weights (fp16, `clipstyle_opt.unet.io.save_unet`'s format, so `--init PATH` and
`load_unet` read them) and a JSON report beside them (command, data, time, reconstruction error).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clipstyle_opt.devices import cpu_model  # noqa: E402
from clipstyle_opt.imageio import load_image, resize  # noqa: E402
from clipstyle_opt.unet.io import save_unet  # noqa: E402
from clipstyle_opt.unet.model import StyleUNet, count_parameters, seeded_unet  # noqa: E402
from microclip.textures import COLOURS, PATTERNS, render_clutter, render_texture  # noqa: E402

TRAINING_PHOTOS = ("astronaut", "chelsea", "coffee")
"""The bundled photos (examples/) used as training data; scikit-image's other sample photos are held out."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "build" / "identity_init.pt")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=64, help="training crop side, px (multiple of 8)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak Adam learning rate")
    p.add_argument("--warmup", type=int, default=50, help="linear warm-up steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: on a busy 2-core machine 2 threads spin)")
    p.add_argument("--eval-every", type=int, default=100, help="print the held-in reconstruction error every N")
    return p.parse_args(argv)


class Sources:
    """Seeded image batches (B, 3, crop, crop) in [0, 1] from the three kinds of data."""

    def __init__(self, crop: int, seed: int) -> None:
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.photos = [load_image(ROOT / "examples" / f"{name}.png", "photo") for name in TRAINING_PHOTOS]

    def texture(self) -> torch.Tensor:
        image = render_texture(str(self.rng.choice(list(COLOURS))), str(self.rng.choice(PATTERNS)), self.crop,
                               self.rng)
        return torch.from_numpy(image).permute(2, 0, 1)

    def composition(self) -> torch.Tensor:
        clutter = render_clutter(self.crop, self.rng)
        texture = render_texture(str(self.rng.choice(list(COLOURS))), str(self.rng.choice(PATTERNS)), self.crop,
                                 self.rng)
        alpha = np.float32(self.rng.uniform(0.2, 0.7))
        image = clutter * (1 - alpha) + texture * alpha if self.rng.random() < 0.5 else clutter
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)

    def photo(self) -> torch.Tensor:
        source = self.photos[int(self.rng.integers(len(self.photos)))]
        height, width = source.shape[-2:]
        # a random scale: the photo's long side between crop and its own size, so textures of all sizes appear
        long_side = int(self.rng.integers(self.crop, max(height, width) + 1))
        scaled = resize(source, (max(self.crop, round(height * long_side / max(height, width))),
                                 max(self.crop, round(width * long_side / max(height, width)))))
        top = int(self.rng.integers(scaled.shape[-2] - self.crop + 1))
        left = int(self.rng.integers(scaled.shape[-1] - self.crop + 1))
        image = scaled[0, :, top:top + self.crop, left:left + self.crop].clone()
        if self.rng.random() < 0.5:
            image = image.flip(-1)
        grey = image.mean(0, keepdim=True)
        image = grey + (image - grey) * float(self.rng.uniform(0.5, 1.4))  # saturation
        image = (image - 0.5) * float(self.rng.uniform(0.7, 1.3)) + 0.5 + float(self.rng.uniform(-0.15, 0.15))
        return image.clamp(0, 1)

    def batch(self, n: int) -> torch.Tensor:
        kinds = (self.texture, self.composition, self.photo, self.photo)  # half the batch from photos
        return torch.stack([kinds[i % len(kinds)]() for i in range(n)])


def heldin_error(unet: StyleUNet) -> dict[str, float]:
    """Mean absolute error (pixel units, [0, 1]) of U(x) against x on each bundled photo at 256 px."""
    out = {}
    with torch.no_grad():
        for name in TRAINING_PHOTOS:
            photo = load_image(ROOT / "examples" / f"{name}.png", "photo")
            h, w = photo.shape[-2:]
            scale = 256 / max(h, w)
            small = resize(photo, (round(h * scale / 8) * 8, round(w * scale / 8) * 8))
            out[name] = round(float((unet(small) - small).abs().mean()), 5)
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    unet = seeded_unet(16, args.seed).train()
    optimizer = torch.optim.Adam(unet.parameters(), lr=args.lr)
    sources = Sources(args.crop, args.seed)
    started = time.perf_counter()
    losses = []
    for step in range(1, args.steps + 1):
        rate = args.lr * min(1.0, step / max(args.warmup, 1)) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in optimizer.param_groups:
            group["lr"] = rate
        images = sources.batch(args.batch_size)
        loss = F.l1_loss(unet(images), images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % args.eval_every == 0 or step == args.steps:
            print(f"step {step:5d}  loss {np.mean(losses[-50:]):.5f}  held-in {heldin_error(unet.eval())}  "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            unet.train()
    seconds = time.perf_counter() - started
    unet.eval()
    errors_fp32 = heldin_error(unet)
    report = {
        "command": " ".join(["python -m microclip.train_identity_init", *(argv if argv is not None else sys.argv[1:])]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": {"textures": "microclip.textures.render_texture (1/4 of each batch)",
                 "compositions": "render_clutter, half with a texture blended in (1/4)",
                 "photos": [f"examples/{name}.png" for name in TRAINING_PHOTOS] + ["(1/2: random scale, crop, flip, "
                                                                                    "saturation/contrast jitter)"],
                 "held_out": "scikit-image's other sample photos (rocket, motorcycle_left, ihc, ...): never seen"},
        "parameters": count_parameters(unet),
        "seconds": round(seconds, 1),
        "cpu": cpu_model(),
        "final_loss_last50": round(float(np.mean(losses[-50:])), 5),
        "heldin_mae_256px": errors_fp32,
    }
    metadata = {"kind": "identity_init", "trainer": "microclip/train_identity_init.py", "report": report}
    path = save_unet(_as_fp16(unet), args.out, metadata, overwrite=True)
    report["bytes"] = path.stat().st_size
    path.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


def _as_fp16(unet: StyleUNet) -> StyleUNet:
    """A copy whose tensors are fp16 (half the file); loading copies them into fp32 parameters."""
    copy = StyleUNet(unet.width)
    copy.load_state_dict(unet.state_dict())
    return copy.half()


if __name__ == "__main__":
    main()
