"""``clipstyle serve``: the web studio (`clipstyle_opt.studio`), on this machine's loopback by default."""
from __future__ import annotations

from pathlib import Path

import click

from ..config import DEVICES
from ..studio import DEFAULT_MAX_UPLOAD_MB, DEFAULT_PREVIEW_EVERY
from .common import handle_errors


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 lets anyone who reaches the port run jobs here.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True, help="Port to listen on.")
@click.option("--clip-model", "clip_models", multiple=True,
              help="Encoder the page offers (repeat for several; the first is the default): a name `clipstyle "
                   "models` lists, a checkpoint file or local-dir:/path [default: the stylize default].")
@click.option("--model-dir", "model_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="A folder whose checkpoints and local-dir: subfolders an API call may name (repeatable).")
@click.option("--device", type=click.Choice(DEVICES), default=DEVICES[0], show_default=True,
              help="Where to compute; one training at a time runs there, the others queue.")
@click.option("--output-dir", type=click.Path(file_okay=False), default="studio-outputs", show_default=True,
              help="Where results, sidecars and U-Nets go; the gallery reads it back.")
@click.option("--auth", default=None, metavar="USER:PASS", help="Ask for this user name and password.")
@click.option("--share", is_flag=True, help="Also open a public gradio.live link (needs the internet).")
@click.option("--preview-every", type=click.FloatRange(min=0), default=DEFAULT_PREVIEW_EVERY, show_default=True,
              help="Seconds of training between two previews, at most (0: every step).")
@click.option("--max-upload-mb", type=click.IntRange(min=1), default=DEFAULT_MAX_UPLOAD_MB, show_default=True,
              help="Largest upload accepted, in MB; pixels are bounded by CLIPSTYLE_MAX_PIXELS.")
@handle_errors
def serve_command(host: str, port: int, clip_models: tuple[str, ...], model_dirs: tuple[str, ...], device: str,
                  output_dir: str, auth: str | None, share: bool, preview_every: float, max_upload_mb: int) -> None:
    """Serve the web studio: upload a photo, type a prompt, watch it form, stop, continue, download.

    Needs the studio extra (pip install 'clipstyle_opt[studio]'). Offline with the bundled micro CLIP:
    clipstyle serve --clip-model tests/data/micro_clip.pt
    """
    from ..studio.server import bind_warning, check_share, import_gradio, launch, parse_auth

    import_gradio()
    from ..config import StyleConfig
    from ..studio.jobs import StudioOptions
    from ..studio.security import UploadLimits

    credentials = parse_auth(auth)
    models = clip_models or (StyleConfig().clip_model,)
    for model in models:
        StyleConfig(clip_model=model)  # a malformed name: its one line before anything starts
    warning = bind_warning(host)
    if warning:
        click.echo(f"warning: {warning.replace('port', f'port {port}')}", err=True)
    if share:
        check_share()
    options = StudioOptions(clip_models=list(models), device=device, output_dir=Path(output_dir),
                            preview_every=preview_every, model_dirs=list(model_dirs),
                            limits=UploadLimits(max_upload_mb * 1024 * 1024))
    click.echo(f"clipstyle studio on http://{host}:{port} (Ctrl-C to stop)", err=True)
    launch(options, host=host, port=port, auth=credentials, share=share, block=True)


__all__ = ["serve_command"]
