"""Stylize a bundled photo through the Python API (what `make demo` runs).

Usage: python examples/demo.py [PHOTO] [PROMPT]

With the real CLIP ViT-B/32 (downloaded on first use) it runs the reference
method; on a CPU it uses the `preview` preset so it ends in minutes. Where the
weights cannot be downloaded (an offline machine), it says so and falls back
to the micro CLIP bundled for tests, which only knows colour/pattern captions
such as "red stripes": a demonstration of the pipeline, not of CLIPstyler's
quality.
"""
from __future__ import annotations

import sys
from pathlib import Path

from clipstyle_opt import ModelUnavailableError, StyleConfig, Stylizer, preset_config
from clipstyle_opt.config import ENCODER_KEYS

HERE = Path(__file__).resolve().parent
MICRO_CLIP = HERE.parent / "tests" / "data" / "micro_clip.pt"
OUT_DIR = HERE.parent / "demo-out"


def progress(info) -> None:
    if info.step == 1 or info.step % 20 == 0 or info.step == info.steps:
        terms = ", ".join(f"{k} {v:.3g}" for k, v in info.terms.items() if k != "style")
        print(f"  step {info.step:4d}/{info.steps}  {terms}  ({info.seconds:.2f} s/step)", flush=True)


def main() -> int:
    photo = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "astronaut.png"
    prompt = sys.argv[2] if len(sys.argv) > 2 else "fire"
    config = StyleConfig()
    try:
        stylizer = Stylizer(config)
        if stylizer.device.type == "cpu":
            print("CPU: using the preview preset (see `clipstyle stylize --help`)")
            config = preset_config("preview")
    except ModelUnavailableError as exc:
        print(f"note: {exc}")
        if not MICRO_CLIP.is_file():
            print(f"and the bundled micro CLIP ({MICRO_CLIP}) is missing: nothing to demonstrate with")
            return 1
        prompt = sys.argv[2] if len(sys.argv) > 2 else "blue stripes"
        print(f"falling back to the bundled micro CLIP with prompt {prompt!r} (it knows only colours and patterns)")
        # The README's "pattern" settings for the micro model (rejection off, low content weight),
        # kept at the training size: the micro model's patterns are coarse (it sees 64 px).
        config = StyleConfig(clip_model=str(MICRO_CLIP), size=128, output_size=128, steps=200,
                             threshold=0.0, lambda_c=30.0)
        stylizer = Stylizer(config)
    print(f"stylizing {photo.name} with {prompt!r} on {stylizer.device} ({config.steps} steps)")
    per_call = {k: v for k, v in config.to_dict().items() if k not in ENCODER_KEYS}
    result = stylizer.stylize(photo, prompt, callback=progress, **per_call)
    OUT_DIR.mkdir(exist_ok=True)
    # The demo owns demo-out/, so it replaces its own earlier result.
    out = result.save(OUT_DIR / f"{photo.stem}_{prompt.replace(' ', '-')}.png", overwrite=True)
    print(f"wrote {out} in {result.timings['total_s']:.1f} s (median {result.timings['step_median_s']:.2f} s/step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
