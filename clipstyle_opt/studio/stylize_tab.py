"""The Stylize tab: its layout (photo, prompts, preset, encoder, seed, style images, the mask painted or
uploaded, regions, focus, the Advanced settings; the preview, its focus relevance map, the loss curve, the
strength slider and the downloads) and its handlers (Stylize, Stop, Continue N steps, strength, presets).

`StylizeTab.build` lays it out inside a `gr.Blocks`; `StylizeTab.wire` connects its events. The handlers are
methods, so tests call them with `StylizeTab.input_values` as the page would."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
from PIL import Image

from ..config import PRESETS
from ..errors import ConfigError
from . import controls
from .blend import pixel_mix
from .jobs import Job, Progress
from .masks import region_pairs
from .service import Studio
from .widgets import MaskInput, checked_image, guarded, photo_background, session_of

TRAINING = "training"
"""The concurrency id of every event that trains: one at a time per server (one device)."""
SEED_MAX = 2**31 - 1
"""The largest seed the "random seed" toggle draws."""
PROMPTS = 3
"""Prompt rows in the form (each with its weight)."""
REGIONS = 2
"""Region rows (a mask, painted or uploaded, and its prompt) in the form."""
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
"""The folder of example photos the form offers (those whose name starts with "mask" are left out)."""


def _curve(progress: Progress) -> Any:
    import pandas as pd

    return pd.DataFrame(progress.losses, columns=["step", "total loss"])


class StylizeTab:
    """The Stylize tab's components and handlers for one page (`build` makes them)."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.names = [item.name for item in controls.advanced_settings()]

    def build(self) -> "StylizeTab":
        """Lay the tab out in the current `gr.Blocks` context (inside a `gr.Tab`)."""
        studio, limits = self.studio, self.studio.options.limits
        self.state = gr.State({})  # this page's photo and result, for the strength slider
        with gr.Row():
            with gr.Column(scale=1):
                self.photo = checked_image(limits, label="photo", sources=["upload"], elem_id="photo", height=320)
                examples = sorted(str(p) for p in EXAMPLES.glob("*.png") if not p.stem.startswith("mask"))
                if examples:
                    gr.Examples(examples, inputs=[self.photo], label="examples")
                self.prompt_rows: list[Any] = []
                for index in range(PROMPTS):
                    with gr.Row():
                        text = gr.Textbox(label=f"prompt {index + 1}" + (" (optional)" if index else ""),
                                          elem_id=f"prompt{index + 1}", scale=3)
                        weight = gr.Slider(0, 1, value=1, step=0.05, label="weight", scale=1)
                    self.prompt_rows += [text, weight]
                with gr.Row():
                    self.preset = gr.Dropdown(list(PRESETS), value="preview", label="preset")
                    models = list(studio.options.clip_models)
                    self.clip_model = gr.Dropdown(models, value=models[0], label="encoder", allow_custom_value=True)
                with gr.Row():
                    self.main = {name: controls.control(controls.described(name),
                                                        controls.preset_values("preview", [name])[0])
                                 for name in ("steps", "size", "seed")}
                    self.random_seed = gr.Checkbox(value=False, label="random seed")
                self.fusion = controls.control(controls.described("fusion"))
                with gr.Accordion("style images, mask, focus", open=False):
                    self.style_files = gr.File(file_count="multiple", file_types=["image"], label="style images")
                    self.style_weights = gr.Textbox(label="style weights (comma-separated; empty: equal)")
                    self.mask = MaskInput.build(limits, "mask", "mask")
                    self.focus = gr.Textbox(label="focus (stylize where the photo shows this)", elem_id="focus")
                with gr.Accordion("regions (a mask and its own prompt each; instead of the prompts)", open=False):
                    self.regions: list[tuple[MaskInput, gr.Textbox]] = []
                    for index in range(REGIONS):
                        region_mask = MaskInput.build(limits, f"region {index + 1} mask", f"region{index + 1}")
                        region_prompt = gr.Textbox(label=f"region {index + 1} prompt", elem_id=f"region{index + 1}")
                        self.regions.append((region_mask, region_prompt))
                with gr.Accordion("Advanced", open=False):
                    self.advanced = [controls.control(item, value) for item, value in
                                     zip(controls.advanced_settings(), controls.preset_values("preview", self.names))]
                with gr.Row():
                    self.go = gr.Button("Stylize", variant="primary", elem_id="stylize")
                    self.stop = gr.Button("Stop", elem_id="stop")
                with gr.Row():
                    self.more = gr.Number(value=50, precision=0, minimum=1, label="continue N steps", elem_id="more")
                    self.cont = gr.Button("Continue", elem_id="continue")
            with gr.Column(scale=1):
                with gr.Row():
                    self.shown = gr.Image(label="image", format="png", interactive=False, elem_id="shown", height=320,
                                          scale=2)
                    self.focus_map = gr.Image(label="focus relevance (white = most relevant)", format="png",
                                              interactive=False, visible=False, elem_id="focus-map", height=320,
                                              scale=1)
                self.status = gr.Markdown(elem_id="status")
                self.curve = gr.LinePlot(x="step", y="total loss", label="loss", height=220)
                self.strength = gr.Slider(0, 1, value=1, step=0.01, label="strength (0: the photo, 1: stylized)",
                                          elem_id="strength")
                self.compare = gr.ImageSlider(label="before / after", type="pil", interactive=False)
                self.downloads = gr.File(label="downloads (PNG with metadata, sidecar, U-Net)", file_count="multiple",
                                         interactive=False)
                self.meta = gr.JSON(label="metadata")
        return self

    @property
    def editors(self) -> list[gr.ImageEditor]:
        """Every mask editor of the tab (the mask's and each region's): their background is the photo."""
        return [self.mask.editor, *(mask.editor for mask, _ in self.regions)]

    @property
    def inputs(self) -> list[Any]:
        """The components `on_stylize` reads, in its argument order."""
        region_inputs = [part for mask, prompt in self.regions for part in (mask.editor, mask.upload, prompt)]
        return [self.photo, *self.prompt_rows, self.preset, self.clip_model, self.main["steps"], self.main["size"],
                self.main["seed"], self.random_seed, self.fusion, self.style_files, self.style_weights,
                self.mask.editor, self.mask.upload, self.focus, *region_inputs, *self.advanced]

    @property
    def outputs(self) -> list[Any]:
        """The components a run updates."""
        return [self.shown, self.focus_map, self.status, self.curve, self.compare, self.downloads, self.meta,
                self.state]

    @property
    def restored(self) -> list[Any]:
        """The components a gallery click fills: the prompt rows, the main settings and the Advanced ones."""
        return [*self.prompt_rows, self.main["steps"], self.main["size"], self.main["seed"], self.fusion,
                *self.advanced]

    def input_values(self, given: dict[Any, Any]) -> list[Any]:
        """`on_stylize`'s arguments after the request, as the page sends them: ``given`` values by component, every
        other input at the value it shows when the page opens."""
        return [given[c] if c in given else c.value for c in self.inputs]

    def _progress(self, progress: Progress) -> dict:
        update = {self.status: progress.line(), self.curve: _curve(progress)}
        if progress.preview is not None:
            update[self.shown] = progress.preview
        return update

    def run_job(self, job: Job, more_steps: int | None, photo_path: str, state: dict) -> Iterator[dict]:
        """Train ``job`` (``more_steps`` past those done, or to its plan), streaming the page's updates, and save
        the result; a page that goes away mid-run still gets what it made saved."""
        studio = self.studio
        try:
            for progress in job.train(more_steps):
                if progress.result is None:
                    yield self._progress(progress)
                    continue
                image, unet, metadata = studio.finish(job, Path(photo_path).name)
                state = {"photo": photo_path, "image": image}
                yield {**self._progress(progress), self.shown: image,
                       self.compare: (Image.open(photo_path), Image.open(image)),
                       self.downloads: [image, str(Path(image).with_suffix(".json")), unet], self.meta: metadata,
                       self.state: state}
        except GeneratorExit:  # the page went away (or the call was cancelled): keep what it made
            job.stop()
            if job.run.step > 0 and (job.last is None or job.last.history != job.run.training.trained.history):
                job.run.interrupt()
                job.last = job.run.result()
                studio.finish(job, Path(photo_path).name)
            raise

    def on_stylize(self, request: gr.Request, photo_path: str | None, *values: Any) -> Iterator[dict]:
        """Start this page's run from the form (`inputs`) and stream it: first the focus relevance map (shown only
        with a focus), then previews, then the result. ``request`` (None outside a page: the "anonymous" session)
        comes first: Gradio fills a `gr.Request` only among the positional parameters before ``*values``."""
        limits = self.studio.options.limits
        values = list(values)
        prompts = [values.pop(0) for _ in range(2 * PROMPTS)]
        texts = list(zip(prompts[0::2], prompts[1::2]))
        preset_name, model, steps, size, seed, use_random, fusion_mode = (values.pop(0) for _ in range(7))
        styles, weights_text, painted, uploaded, focus_text = (values.pop(0) for _ in range(5))
        rows = []
        for region_mask, _ in self.regions:
            region_painted, region_uploaded, region_prompt = (values.pop(0) for _ in range(3))
            rows.append((region_mask.file(region_painted, region_uploaded, limits), region_prompt))
        overrides = controls.collect(self.names, values)
        if use_random:
            seed = random.randint(0, SEED_MAX)
        overrides.update(controls.collect(["steps", "size", "seed", "fusion"], [steps, size, seed, fusion_mode]))
        focus = focus_text.strip() or None if focus_text else None
        guidance = {"style_image": [getattr(f, "name", f) for f in styles] if styles else None,
                    "style_weights": weights_text or None, "mask": self.mask.file(painted, uploaded, limits),
                    "focus": focus}
        job = self.studio.start(session_of(request), photo_path, texts, preset_name, model, overrides,
                                regions=region_pairs(rows), **guidance)
        relevance = job.focus_map()
        yield {self.focus_map: gr.Image(value=relevance, visible=relevance is not None),
               self.status: f"step 0 / {job.run.total_steps} · starting"}
        yield from self.run_job(job, None, photo_path, {})

    def on_continue(self, steps: float | None, state: dict, request: gr.Request = None) -> Iterator[dict]:
        """Continue this page's run for ``steps`` more steps."""
        job = self.studio.sessions.get(session_of(request))
        if job is None or job.last is None:
            raise ConfigError("nothing to continue: press Stylize first")
        if not steps or int(steps) < 1:
            raise ConfigError("continue for at least 1 step")
        yield from self.run_job(job, int(steps), str(job.photo), state)

    def on_stop(self, request: gr.Request = None) -> None:
        """Stop this page's run after the step in progress (the command line's Ctrl-C path)."""
        job = self.studio.sessions.get(session_of(request))
        if job is not None:
            job.stop()

    def on_strength(self, value: float, state: dict) -> dict:
        """Mix the photo and the result at ``value`` (0..1) for display, without retraining."""
        if not state or "image" not in state:
            return {}
        photo_image, styled = Image.open(state["photo"]), Image.open(state["image"])
        mixed = pixel_mix(photo_image, styled, value)
        return {self.shown: mixed, self.compare: (photo_image.convert("RGB").resize(styled.size), mixed)}

    def wire(self) -> None:
        """Connect the tab's events (inside the `gr.Blocks` context)."""
        self.go.click(guarded(self.on_stylize), self.inputs, self.outputs, concurrency_id=TRAINING,
                      concurrency_limit=1, api_visibility="private")
        self.cont.click(guarded(self.on_continue), [self.more, self.state], self.outputs, concurrency_id=TRAINING,
                        concurrency_limit=1, api_visibility="private")
        self.stop.click(self.on_stop, None, None, queue=False, api_visibility="private")
        self.strength.change(guarded(self.on_strength), [self.strength, self.state], [self.shown, self.compare],
                             api_visibility="private", trigger_mode="always_last")
        main = [self.main["steps"], self.main["size"], self.main["seed"]]
        self.preset.change(lambda name: controls.preset_values(name, ["steps", "size", "seed", *self.names]),
                           self.preset, [*main, *self.advanced], api_visibility="private")
        editors = self.editors
        self.photo.change(lambda photo: [photo_background(photo)] * len(editors), self.photo, editors,
                          api_visibility="private")


__all__ = ["EXAMPLES", "PROMPTS", "REGIONS", "SEED_MAX", "TRAINING", "StylizeTab"]
