#!/usr/bin/env python
"""Does a micro model draw the pattern on photos nobody tuned a setting on?

For each model and photo, stylizes toward ``--prompt`` (default "red stripes") at
the README's pattern settings and prints the orientation coherence
(`microclip.patterns.orientation_coherence`: near 1 for parallel
stripes, low for a photo's edges in all directions) of the photo and of the
output, and the model's own similarity to the prompt before and after. Writes
every output and a side-by-side sheet to ``--out``.

    python -m microclip.pattern_check --clip-model tests/data/micro_clip.pt \
        --clip-model local-dir:tests/data/micro_siglip examples/*.png more/*.jpg

The bundled photos are examples/*.png; scikit-image's sample photos
(``skimage/data/*``: rocket.jpg, motorcycle_left.png, ihc.png, ...) were the
unseen ones (microclip/README).

From the repository root; ``python microclip/pattern_check.py`` works as well.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image

# Run as a file (python microclip/pattern_check.py), the repository root is not on the path.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clipstyle_opt import StyleConfig, Stylizer  # noqa: E402
from clipstyle_opt.imageio import load_image, resize, to_pil  # noqa: E402
from microclip.patterns import orientation_coherence  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("photos", nargs="+", help="photo files")
    p.add_argument("--clip-model", action="append", required=True, help="a model to check (repeatable)")
    p.add_argument("--prompt", default="red stripes")
    p.add_argument("--size", type=int, default=128, help="side of the (square) training and output image, px")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threshold", type=float, default=0.0)
    p.add_argument("--lambda-c", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="build/pattern_check", help="folder for the outputs, sheet and JSON")
    return p.parse_args(argv)


def similarity(stylizer: Stylizer, image: torch.Tensor, prompt: str) -> float:
    with torch.no_grad():
        return float(stylizer.clip.encode_image(image)[0] @ stylizer.clip.encode_prompt(prompt))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = {Path(p).stem: resize(load_image(p), (args.size, args.size)) for p in args.photos}
    rows, sheet_rows = [], []
    vgg = None
    for model in args.clip_model:
        config = StyleConfig(clip_model=model, size=args.size, steps=args.steps, n_crops=16, crop_size=64,
                             threshold=args.threshold, lambda_c=args.lambda_c, seed=args.seed, device="cpu",
                             max_output_size=args.size)
        stylizer = Stylizer(config, vgg=vgg)
        vgg = stylizer.vgg
        images = []
        for name, photo in photos.items():
            started = time.perf_counter()
            result = stylizer.stylize(photo, args.prompt)
            row = {"model": model, "photo": name, "seconds": round(time.perf_counter() - started, 1),
                   "coherence_photo": orientation_coherence(photo),
                   "coherence_output": orientation_coherence(result.tensor),
                   "similarity_photo": similarity(stylizer, photo, args.prompt),
                   "similarity_output": similarity(stylizer, result.tensor, args.prompt)}
            rows.append(row)
            print(f"{Path(model).name:<24} {name:<22} coherence {row['coherence_photo']:.3f} -> "
                  f"{row['coherence_output']:.3f}   similarity {row['similarity_photo']:.3f} -> "
                  f"{row['similarity_output']:.3f}   ({row['seconds']} s)", flush=True)
            image = to_pil(result.tensor)
            image.save(out / f"{Path(model).name}_{name}.png")
            images.append(image)
        sheet_rows.append(images)
    originals = [to_pil(photo) for photo in photos.values()]
    sheet = Image.new("RGB", (args.size * len(originals), args.size * (1 + len(sheet_rows))), "white")
    for row_index, row in enumerate([originals, *sheet_rows]):
        for col, image in enumerate(row):
            sheet.paste(image, (col * args.size, row_index * args.size))
    sheet.save(out / "sheet.png")
    (out / "pattern_check.json").write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out / 'sheet.png'} (rows: photos, then one row per model) and {out / 'pattern_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
