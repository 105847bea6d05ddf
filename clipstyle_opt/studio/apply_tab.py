"""The Apply tab: a saved U-Net, uploaded or picked from the gallery, applied to several photos at once or to a
video (with the ``video`` extra), as ``clipstyle apply`` does. Uploaded U-Nets are read with weights_only; every
upload is bounded and checked like the Stylize tab's."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from ..errors import ConfigError
from ..imageio import to_pil
from ..unet.render import apply_unet_file
from ..unet.video import VIDEO_SUFFIXES
from .security import check_image_upload
from .service import Studio
from .stylize_tab import TRAINING
from .videos import restyle_video
from .widgets import guarded

APPLIED_DIR = "applied"
"""Where, under ``--output-dir``, the Apply tab writes restyled videos."""


def _path(upload: Any) -> str | None:
    """A gr.File value (a path, or an object with ``name``) as a path; None for no file."""
    return getattr(upload, "name", upload) or None


class ApplyTab:
    """The Apply tab's components and handlers for one page (`build` makes them, `wire` connects them)."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def build(self) -> "ApplyTab":
        """Lay the tab out in the current `gr.Blocks` context (inside a `gr.Tab`)."""
        with gr.Row():
            self.unet_file = gr.File(label="U-Net (.unet.pt)", file_types=[".pt"], elem_id="apply-unet")
            self.unet_pick = gr.Dropdown(label="or one from the gallery", choices=[], allow_custom_value=False)
        with gr.Row():
            with gr.Column():
                self.photos = gr.File(label="photos", file_count="multiple", file_types=["image"])
                self.go = gr.Button("Apply to the photos", elem_id="apply-photos")
                self.applied = gr.Gallery(label="restyled", columns=3)
            with gr.Column():
                self.video = gr.File(label=f"or a video ({', '.join(VIDEO_SUFFIXES)}; needs the video extra)",
                                     file_types=list(VIDEO_SUFFIXES), elem_id="apply-video")
                self.go_video = gr.Button("Apply to the video", elem_id="apply-video-go")
                self.video_out = gr.File(label="restyled video", interactive=False, elem_id="applied-video")
        return self

    def unet(self, upload: Any, picked: str | None) -> str:
        """The U-Net to apply: the upload (bounded in bytes) or the gallery's pick; else a one-line error."""
        unet_path = _path(upload) or picked
        if not unet_path:
            raise ConfigError("give a U-Net: upload a .unet.pt or pick one from the gallery")
        limit = self.studio.options.limits.max_bytes
        if Path(unet_path).stat().st_size > limit:
            raise ConfigError(f"U-Net file too large: over the studio's limit of {limit:,} bytes")
        return str(unet_path)

    def on_photos(self, upload: Any, picked: str | None, photos: list | None) -> list[Image.Image]:
        """Every photo restyled by the U-Net, at its own size."""
        unet_path = self.unet(upload, picked)
        if not photos:
            raise ConfigError("give one or more photos")
        options = self.studio.options
        return [to_pil(apply_unet_file(unet_path, check_image_upload(_path(p), "photo", options.limits),
                                       device=options.device)) for p in photos]

    def on_video(self, upload: Any, picked: str | None, video: Any) -> str:
        """The video restyled by the U-Net (every frame, same rate, audio kept), as a file to download."""
        unet_path = self.unet(upload, picked)
        if not _path(video):
            raise ConfigError("give a video")
        options = self.studio.options
        return str(restyle_video(unet_path, _path(video), options.output_dir / APPLIED_DIR, options.limits,
                                 options.device))

    def wire(self) -> None:
        """Connect the tab's events (inside the `gr.Blocks` context)."""
        self.go.click(guarded(self.on_photos), [self.unet_file, self.unet_pick, self.photos], self.applied,
                      concurrency_id=TRAINING, api_visibility="private")
        self.go_video.click(guarded(self.on_video), [self.unet_file, self.unet_pick, self.video], self.video_out,
                            concurrency_id=TRAINING, api_visibility="private")


__all__ = ["APPLIED_DIR", "ApplyTab"]
