"""Put a photo and its stylized outputs side by side in one PNG, each captioned.

    python tools/before_after.py examples/astronaut.png out1.png [out2.png ...] -o docs/before_after.png

Captions come from each output's sidecar (prompt); the photo is labelled
"photo". All panels are shown at the height of the first output.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clipstyle_opt.imageio import atomic_write, read_image, read_metadata  # noqa: E402

CAPTION_PX = 22


def panel(image: Image.Image, caption: str, height: int) -> Image.Image:
    width = max(1, round(image.width * height / image.height))
    out = Image.new("RGB", (width, height + CAPTION_PX), "white")
    out.paste(image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS), (0, CAPTION_PX))
    ImageDraw.Draw(out).text((4, 4), caption, fill="black")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo")
    parser.add_argument("outputs", nargs="+")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--height", type=int, default=256, help="panel height in px")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    target = Path(args.output)
    if target.exists() and not args.overwrite:
        sys.exit(f"error: {target} exists; pass --overwrite to replace it")
    panels = [panel(read_image(args.photo), "photo", args.height)]
    for path in args.outputs:
        meta = read_metadata(path)
        config = meta.get("config", {})
        caption = f"\"{meta.get('prompt', Path(path).stem)}\""
        if config:
            caption += f"  steps {config.get('steps')}, thr {config.get('threshold')}, lambda_c {config.get('lambda_c')}"
        panels.append(panel(read_image(path), caption, args.height))
    sheet = Image.new("RGB", (sum(p.width for p in panels) + 8 * (len(panels) - 1), panels[0].height), "white")
    x = 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.width + 8
    atomic_write(target, lambda tmp: sheet.save(tmp, format="PNG"))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
