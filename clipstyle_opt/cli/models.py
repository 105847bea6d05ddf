"""``clipstyle models``: the --clip-model names the encoder backends know."""
from __future__ import annotations

import click

from ..errors import ClipstyleError
from .common import handle_errors


@click.command("models")
@click.argument("pattern", required=False)
@click.option("--cached", "cached_only", is_flag=True, help="Only the models already in the cache.")
@handle_errors
def models_command(pattern: str | None, cached_only: bool) -> None:
    """List the --clip-model names the backends know (optionally those containing PATTERN):
    input size in px, embedding width, and whether the weights are cached here.

    open_clip's names appear when the open_clip extra is installed. Besides these,
    --clip-model takes a checkpoint file or local-dir:/path (an open_clip folder).
    """
    from ..encoders.registry import known_models

    rows = [row for row in known_models()
            if (not pattern or pattern.lower() in row["model"].lower()) and (row["cached"] or not cached_only)]
    if not rows:
        click.echo("no model matches", err=True)
        return
    width = max(len(row["model"]) for row in rows)
    click.echo(f"{'model':<{width}}  input px  width  cached")
    for row in rows:
        size = row["input_px"] or "?"
        embed = row["width"] or "?"
        click.echo(f"{row['model']:<{width}}  {size!s:>8}  {embed!s:>5}  {'yes' if row['cached'] else ''}")
    try:
        from ..encoders.openclip import import_open_clip

        import_open_clip()
    except ClipstyleError as exc:
        click.echo(f"note: {exc}", err=True)


__all__ = ["models_command"]
