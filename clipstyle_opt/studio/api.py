"""The studio's named endpoints for scripts (`gradio_client`): ``/stylize(photo, prompt, preset, steps, size,
seed, clip_model)``, which streams (preview, progress) pairs and then (final PNG, metadata), and
``/apply(unet, photo)``. Their inputs and outputs are hidden components; the parameter names are the
functions' own."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import gradio as gr
from PIL import Image

from ..errors import ConfigError
from ..imageio import to_pil
from ..unet.render import apply_unet_file
from . import controls
from .service import Studio
from .stylize_tab import TRAINING
from .widgets import checked_image, guarded, session_of


def add_endpoints(studio: Studio) -> None:
    """Add ``/stylize`` and ``/apply`` to the current `gr.Blocks` context."""
    options = studio.options

    @guarded
    def stylize(photo: str, prompt: str, preset: str, steps: float | None, size: float | None,
                seed: float | None, clip_model: str | None, request: gr.Request = None) -> Iterator[tuple]:
        """Stylize ``photo`` for ``prompt``: yields (preview, progress) pairs, then (final PNG, metadata)."""
        overrides = controls.collect(["steps", "size", "seed"], [steps, size, seed])
        job = studio.start(session_of(request), photo, [(prompt, 1.0)], preset or "preview", clip_model, overrides)
        for progress in job.train():
            if progress.result is None:
                yield progress.preview, {"step": progress.step, "steps": progress.steps, "status": "running"}
            else:
                image, _, metadata = studio.finish(job, Path(photo).name)
                yield image, metadata

    @guarded
    def apply(unet: str, photo: str) -> Image.Image:
        """Restyle ``photo`` with the saved U-Net ``unet`` (read with weights_only)."""
        if not unet:
            raise ConfigError("give a U-Net file (.unet.pt)")
        if Path(unet).stat().st_size > options.limits.max_bytes:
            raise ConfigError(f"U-Net file too large: over the studio's limit of {options.limits.max_bytes:,} bytes")
        return to_pil(apply_unet_file(unet, photo, device=options.device))

    with gr.Row(visible=False):  # the API's own inputs and outputs, named as the endpoints' parameters
        api_photo = checked_image(options.limits)
        api_unet = gr.File()
        api_image = gr.Image(format="png")
        api_meta = gr.JSON()
        api_button = gr.Button()
    api_button.click(stylize, [api_photo, gr.Textbox(visible=False), gr.Textbox(visible=False),
                               gr.Number(visible=False), gr.Number(visible=False), gr.Number(visible=False),
                               gr.Textbox(visible=False)], [api_image, api_meta], api_name="stylize",
                     concurrency_id=TRAINING, concurrency_limit=1)
    api_button.click(apply, [api_unet, api_photo], api_image, api_name="apply", concurrency_id=TRAINING)


__all__ = ["add_endpoints"]
