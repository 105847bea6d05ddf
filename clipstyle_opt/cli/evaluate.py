"""``clipstyle eval``: parse flags, call `clipstyle_opt.evaluate.evaluate`, print the table."""
from __future__ import annotations

from typing import Optional

import click

from ..config import DEVICES, StyleConfig
from ..errors import ConfigError
from .common import handle_errors

_EVAL_HELP = """Score output IMAGES: text match (CLIP) and content preservation.

Each image's JSON sidecar (out.json beside out.png, written by `stylize`)
supplies its content photo, prompt and source text; --content, --prompt and
--source-text override them for every image. A fused output (several
weighted prompts) is scored against the weighted mix of its prompts (their
weighted mean text embedding), and clip_score and clip_direction also
against each prompt, in columns such as clip_score[prompt: red stripes].

\b
Metrics (all raw values; + higher is better, - lower is better):
  clip_score        + cos(CLIP image, plain prompt), whole output
  patch_clip_score  + the paper's patch score: 64 random square crops of
                      64..224 px of the output at 512 px long side, each
                      resized to CLIP's input, cosine with the plain prompt,
                      averaged (CLIPstyler reported 0.2515 with ViT-B/32)
  clip_direction    + cos(CLIP(output) - CLIP(content),
                      text(prompt) - text(source text)), 79 prompt templates
  lpips_vgg, lpips_alex  - LPIPS v0.1 (VGG16 / AlexNet)
  dists             - DISTS
  ssim              + SSIM (11 px Gaussian window)
  content_loss      - VGG16 relu4_2 + relu5_2 MSE (the training's default content loss)

\b
Sizes: CLIP metrics resize whole images (or crops) to the model's input
size. LPIPS, DISTS, SSIM and content_loss resize the output to --size px
on its long side (aspect kept) and the content photo to exactly that
size, so outputs of any size (or squashed) are compared pixel for pixel.
"""


@click.command("eval", help=_EVAL_HELP)
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--content", type=click.Path(dir_okay=False), default=None,
              help="Content photo for every image (overrides the sidecars).")
@click.option("--prompt", default=None, help="Prompt for every image (overrides the sidecars).")
@click.option("--source-text", default=None,
              help="Source text of the direction [default: the sidecar's, else 'a Photo'].")
@click.option("--clip-model", multiple=True, default=(StyleConfig.clip_model,), show_default=True,
              help="Encoder for the CLIP metrics, as `stylize --clip-model` takes it (any backend). Repeat it "
                   "to score under several encoders: columns are then suffixed with the model, "
                   "e.g. clip_score[open_clip:ViT-B-16-SigLIP:webli] (cross-scoring).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the patch crops (the same crops for every image of a given size).")
@click.option("--size", type=click.IntRange(min=0), default=512, show_default=True,
              help="Long side (px) at which LPIPS/DISTS/SSIM/content_loss compare; 0 = the output's own size.")
@click.option("--metrics", "metric_list", default=None,
              help="Comma-separated subset of metrics [default: all]. Without CLIP metrics no CLIP is loaded.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Also write the table as CSV.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the results as JSON (what `clipstyle report --metrics` reads).")
@click.option("--overwrite", is_flag=True, help="Replace existing --csv/--json files.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines, only the table.")
@handle_errors
def eval_command(images: tuple[str, ...], content: Optional[str], prompt: Optional[str], source_text: Optional[str],
                 clip_model: tuple[str, ...], device: str, seed: int, size: int, metric_list: Optional[str],
                 csv_path: Optional[str], json_path: Optional[str], overwrite: bool, quiet: bool) -> None:
    from ..evaluate import METRICS, check_metrics, check_outputs, evaluate

    metrics = check_metrics(m.strip() for m in metric_list.split(",") if m.strip()) if metric_list else METRICS
    if size and size < 16:
        raise ConfigError(f"--size must be 0 or >= 16 px, got {size}")
    if csv_path and json_path and csv_path == json_path:
        raise ConfigError("--csv and --json must be different files")
    from ..imageio import sidecar_path

    inputs = [*images, *(sidecar_path(image) for image in images), *([content] if content else [])]
    check_outputs(csv_path, json_path, overwrite=overwrite, inputs=inputs)

    def progress(index: int, total: int, row: dict) -> None:
        if not quiet:
            click.echo(f"[{index}/{total}] {row['image']} ({row['seconds']:.1f} s)", err=True)

    if not quiet:
        click.echo(f"scoring {len(images)} image(s): {', '.join(metrics)}", err=True)
    result = evaluate(list(images), content=content, prompt=prompt, source_text=source_text, clip_model=clip_model,
                      device=device, metrics=metrics, seed=seed, size=size or None, callback=progress)
    click.echo(result.table())
    if csv_path:
        result.write_csv(csv_path, overwrite=overwrite)
        if not quiet:
            click.echo(f"wrote {csv_path}", err=True)
    if json_path:
        result.write_json(json_path, overwrite=overwrite)
        if not quiet:
            click.echo(f"wrote {json_path}", err=True)


__all__ = ["eval_command"]
