"""``clipstyle report``: one self-contained HTML page comparing outputs (parse flags, call `report`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ..config import DEVICES
from .common import handle_errors


@click.command("report")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("-o", "--output", default=None,
              help="The HTML file to write [default: report.html; DIRECTORY/report.html for a sweep directory].")
@click.option("--metrics", "metrics_file", type=click.Path(dir_okay=False), default=None,
              help="Show the metrics of this `clipstyle eval --json` file.")
@click.option("--clip-model", default=None,
              help="Compute the metrics now with this CLIP model (name or checkpoint file) [default: no metrics].")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the patch crops (with --clip-model).")
@click.option("--size", type=click.IntRange(min=0), default=512, show_default=True,
              help="With --clip-model: long side (px) for LPIPS/DISTS/SSIM/content_loss, as `eval --size`.")
@click.option("--max-side", type=click.IntRange(32, 4096), default=512, show_default=True,
              help="Embedded images are shrunk to this long side (px) to keep the file small.")
@click.option("--title", default=None, help="Page title [default: the directory's name].")
@click.option("--overwrite", is_flag=True, help="Replace an existing report file.")
@handle_errors
def report_command(directory: str, output: Optional[str], metrics_file: Optional[str], clip_model: Optional[str], device: str,
                   seed: int, size: int, max_side: int, title: Optional[str], overwrite: bool) -> None:
    """One self-contained HTML page comparing the outputs under DIRECTORY.

    Per content photo: the content and each output side by side with its
    prompt, the settings that differ, and metrics (if --metrics or
    --clip-model). Buttons sort by any metric; a rating mode collects 1-5
    style and content ratings (optionally blind: labels hidden, order
    shuffled) and exports them as CSV. No server or network needed.

    A sweep directory (`clipstyle sweep`) shows its results.csv: its eval metrics and its numeric axes as
    sortable columns, each output labelled with its axis values.

    An output is an image whose sidecar records a prompt; its label is the
    sidecar's "method" (or "label") field, else its file name, so outputs of
    other methods join a comparison with a sidecar such as
    {"prompt": ..., "content": ..., "method": "AdaIN+CLIP"}.
    """
    from ..report import write_report
    from ..sweeps.store import is_sweep_dir

    if output is None:
        output = str(Path(directory) / "report.html") if is_sweep_dir(directory) else "report.html"
    path = write_report(directory, output, metrics_file=metrics_file, clip_model=clip_model, device=device,
                        seed=seed, size=size or None, max_side=max_side, title=title, overwrite=overwrite)
    click.echo(f"wrote {path}", err=True)


__all__ = ["report_command"]
