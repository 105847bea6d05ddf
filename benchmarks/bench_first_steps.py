"""The degenerate start (issue 38): what the first steps from an identity start do, against a random start.

At an exact identity E_I(output) = E_I(photo), and the global directional loss 1 - cos(E_I(output) -
E_I(photo), dT) divides by the norm of that difference. This prints, per start:
  - at step 0, the gradient norm of each loss term (weighted as in training) with respect to the output
    image, for the start's own output and for the exact photo (the exact-identity limit);
  - for the first ``--steps`` steps, the loss terms and how far the output moves each step (mean |change|
    in [0, 1] pixel units): an Adam whose second moments were filled by one huge gradient barely moves.

    python benchmarks/bench_first_steps.py --photo tests/data/heldout_rocket.png --size 128 --steps 10
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clipstyle_opt import StyleConfig, Stylizer  # noqa: E402
from clipstyle_opt.devices import cpu_model  # noqa: E402
from clipstyle_opt.imageio import load_image, resize  # noqa: E402
from clipstyle_opt.objective import losses  # noqa: E402
from clipstyle_opt.unet import start  # noqa: E402
from clipstyle_opt.unet.model import apply_unet  # noqa: E402


def term_gradients(stylizer: Stylizer, image: torch.Tensor, photo: torch.Tensor, prompt: str) -> dict[str, float]:
    """Norm of the gradient of each weighted term with respect to ``image``: the global direction, the
    content loss, and a patch-like term (the whole image's direction scores of 16 random 1/4-side crops)."""
    config, clip = stylizer.config, stylizer.clip
    with torch.no_grad():
        source = clip.encode_image(photo)[0]
        direction = losses.text_direction(clip.encode_prompt(prompt), clip.encode_prompt(config.source_text))
        target = stylizer.vgg(photo)
    out = {}
    for name in ("dir", "patch", "content"):
        x = image.clone().requires_grad_()
        if name == "dir":
            value = config.lambda_dir * losses.directional_loss(clip.encode_image(x), source, direction)
        elif name == "patch":
            generator = torch.Generator().manual_seed(0)
            h, w = x.shape[-2:]
            side = max(8, min(h, w) // 4)
            crops = [x[..., t:t + side, s:s + side] for t, s in
                     zip(torch.randint(0, h - side + 1, (16,), generator=generator).tolist(),
                         torch.randint(0, w - side + 1, (16,), generator=generator).tolist())]
            value = config.lambda_patch * losses.patch_loss(clip.encode_image(torch.cat(crops)), source, direction,
                                                            config.threshold)
        else:
            value = config.lambda_c * losses.content_loss(stylizer.vgg(x), target, config.content_layers)
        value.backward()
        out[name] = float(x.grad.norm())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default=str(ROOT / "tests" / "data" / "heldout_rocket.png"))
    parser.add_argument("--prompt", default="blue stripes")
    parser.add_argument("--clip-model", default=str(ROOT / "tests" / "data" / "micro_clip.pt"))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--noises", default="0,1e-3,1e-2", help="START_NOISE values tried for the identity start")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    config = StyleConfig(clip_model=args.clip_model, size=args.size, crop_size=max(8, args.size // 4),
                         steps=args.steps, output_size=args.size, device="cpu")
    stylizer = Stylizer(config)
    photo_full = load_image(args.photo, "photo")
    h, w = photo_full.shape[-2:]
    scale = args.size / max(h, w)
    photo = resize(photo_full, (round(h * scale / 8) * 8, round(w * scale / 8) * 8))
    starts: list[tuple[str, str, float]] = [("random", "random", 0.0)]
    starts += [(f"identity, noise {float(n):g}", "identity", float(n)) for n in args.noises.split(",")]
    report: dict[str, Any] = {"cpu": cpu_model(), "args": {k: str(v) for k, v in vars(args).items()}, "starts": {}}
    print(f"{cpu_model()}; {args.photo} at {tuple(photo.shape[-2:])}, {args.prompt!r}")
    exact = term_gradients(stylizer, photo, photo, args.prompt)
    print(f"exact identity (output = photo): weighted term gradients wrt the image {exact}")
    report["exact_identity_gradients"] = exact
    saved_noise = start.START_NOISE
    try:
        for label, init, noise in starts:
            start.START_NOISE = noise
            unet, _ = start.starting_unet(16, 0, init)
            with torch.no_grad():
                first = apply_unet(unet, photo)
            grads = term_gradients(stylizer, first, photo, args.prompt)
            moves: list[float] = []
            previous = [first]

            def watch(info: Any) -> None:
                moves.append(float((info.output - previous[0]).abs().mean()))
                previous[0] = info.output

            result = stylizer.stylize(photo, args.prompt, init=init, callback=watch)
            rows = [{k: round(v, 5) for k, v in row.items() if k in ("dir", "patch", "content", "total")}
                    for row in result.history]
            report["starts"][label] = {"gradients": grads, "moves": moves, "history": rows,
                                       "start_error": float((first - photo).abs().mean())}
            print(f"\n{label}: start |U(x) - x| {report['starts'][label]['start_error']:.4f}; "
                  f"term gradients wrt the image {grads}")
            for step, (row, move) in enumerate(zip(rows, moves), 1):
                print(f"  step {step:3d}  moved {move:.5f}  {row}")
    finally:
        start.START_NOISE = saved_noise
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
