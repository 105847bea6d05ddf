"""The studio's page: the Stylize tab (`stylize_tab`), the Gallery tab (here: this server's runs read back
from ``--output-dir``; a click restores a run's settings into the form), the Apply tab (`apply_tab`), and the
named API endpoints (`api`).

Every handler turns a user's mistake into the command line's one-line message (``error: ...``) shown in the
page (`gr.Error`), never a stack trace; an unexpected failure is logged on the server and reported in one line,
and the server keeps serving. Training events share one concurrency slot (one training at a time on the
device); Gradio's queue shows the others their position.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from . import controls
from .api import add_endpoints
from .apply_tab import ApplyTab
from .gallery import read_gallery
from .jobs import StudioOptions
from .service import Studio
from .stylize_tab import StylizeTab
from .widgets import session_of

THEME_FONTS = ("ui-sans-serif", "system-ui", "sans-serif")  # local fonts: the page fetches nothing from the web


def gallery_restore(studio: Studio, tab: StylizeTab, index: int) -> list[Any]:
    """The values a click on the gallery's ``index``-th run (newest first) puts into the Stylize tab's
    `StylizeTab.restored` components: its prompts with their weights, then its settings."""
    items = read_gallery(studio.options.output_dir)
    config = items[index].config() if index < len(items) else None
    if config is None:
        raise gr.Error("error: this image's sidecar holds no settings this version reads")
    metadata = items[index].metadata
    prompts = metadata.get("prompts") or [{"text": metadata.get("prompt"), "weight": 1.0}]
    rows: list[Any] = []
    for row in range(len(tab.prompt_rows) // 2):
        rows += [prompts[row]["text"], prompts[row]["weight"]] if row < len(prompts) else ["", 1.0]
    return [*rows, *controls.config_values(config, ["steps", "size", "seed", "fusion", *tab.names])]


def build_app(options: StudioOptions) -> gr.Blocks:
    """The studio's `gr.Blocks`: the Stylize, Gallery and Apply tabs and the ``/stylize`` and ``/apply``
    endpoints. The `Studio` is ``demo.studio``, the tabs ``demo.stylize_tab`` and ``demo.apply_tab``."""
    studio = Studio(options)
    theme = gr.themes.Default(font=THEME_FONTS, font_mono=("ui-monospace", "monospace"))
    with gr.Blocks(title="clipstyle studio", analytics_enabled=False) as demo:
        demo.studio_theme = theme  # type: ignore[attr-defined]  # Gradio 6 takes it at launch
        demo.studio = studio  # type: ignore[attr-defined]  # for tests and benchmarks
        with gr.Tab("Stylize"):
            stylize = StylizeTab(studio).build()
        with gr.Tab("Gallery"):
            gallery = gr.Gallery(label=f"runs in {options.output_dir}", columns=4, allow_preview=False,
                                 elem_id="gallery")
            refresh = gr.Button("Refresh", elem_id="gallery-refresh")
        with gr.Tab("Apply"):
            apply = ApplyTab(studio).build()
        demo.stylize_tab, demo.apply_tab = stylize, apply  # type: ignore[attr-defined]  # for tests
        stylize.wire()
        apply.wire()
        add_endpoints(studio)

        def on_gallery() -> tuple[list, Any]:
            items = read_gallery(options.output_dir)
            unets = [str(item.unet) for item in items if item.unet is not None]
            return [(str(item.image), item.caption) for item in items], gr.Dropdown(choices=unets)

        def on_pick(evt: gr.SelectData) -> list:
            return gallery_restore(studio, stylize, evt.index)

        for event in (refresh.click, demo.load):
            event(on_gallery, None, [gallery, apply.unet_pick], api_visibility="private")
        gallery.select(on_pick, None, stylize.restored, api_visibility="private")

        def on_close(request: gr.Request) -> None:  # the page was closed: its run stops after this step
            studio.sessions.close(session_of(request))

        demo.unload(on_close)
    return demo


__all__ = ["build_app", "gallery_restore"]
