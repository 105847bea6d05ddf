"""The studio's page and its named API endpoints (``/stylize``, ``/apply``), in Gradio.

Every handler turns a user's mistake into the command line's one-line message (``error: ...``) shown in the
page (`gr.Error`), never a stack trace; an unexpected failure is logged on the server and reported in one line,
and the server keeps serving. Training events share one concurrency slot (one training at a time on the
device); Gradio's queue shows the others their position.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr
from PIL import Image

from ..config import PRESETS, StyleConfig
from ..devices import is_out_of_memory
from ..errors import ClipstyleError, ConfigError, first_line
from ..unet.render import apply_unet_file
from ..imageio import to_pil
from . import controls
from .blend import pixel_mix
from .gallery import read_gallery, save_result
from .jobs import Engines, Job, Progress, Sessions, StudioOptions, config_for
from .security import check_image_upload

log = logging.getLogger("clipstyle_opt.studio")
TRAINING = "training"
"""The concurrency id of every event that trains: one at a time per server (one device)."""
SEED_MAX = 2**31 - 1
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
THEME_FONTS = ("ui-sans-serif", "system-ui", "sans-serif")  # local fonts: the page fetches nothing from the web


def user_error(exc: BaseException) -> gr.Error:
    """The page's message for a failure: the command line's line for a user's error, one line for a bug."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, ClipstyleError):
        return gr.Error(f"error: {exc}", print_exception=False)
    if is_out_of_memory(exc):
        return gr.Error("error: out of memory; use smaller images or settings", print_exception=False)
    log.exception("studio job failed")
    return gr.Error(f"error: unexpected {type(exc).__name__}: {first_line(exc, fallback='')[:200]} "
                    "(a bug: the server log has the traceback)", print_exception=False)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a function or a generator function) with every exception turned into `user_error`."""
    import functools
    import inspect

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except GeneratorExit:
                raise
            except BaseException as exc:  # noqa: BLE001 - every failure ends as one line in the page
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                raise user_error(exc) from None
        return gen

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure ends as one line in the page
            raise user_error(exc) from None
    return call


def checked_image(studio: "Studio", what: str = "photo", **kwargs: Any) -> gr.Image:
    """An image input, read as a file path, whose upload goes through `check_image_upload` (byte and pixel
    bounds, the command line's safe loader) before anything decodes it: Gradio's own decoder never sees it.

    The check replaces the instance's ``preprocess`` rather than subclassing gr.Image: Gradio writes a ``.pyi``
    file beside the module of every Component subclass, and a package should not write into itself.
    """
    image = gr.Image(type="filepath", **kwargs)

    def preprocess(payload: Any) -> str | None:
        if payload is None:
            return None
        try:
            return str(check_image_upload(payload.path, what, studio.options.limits))
        except ClipstyleError as exc:
            raise user_error(exc) from None

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image


class Studio:
    """What the handlers share: the server's options, loaded engines, sessions and model policy."""

    def __init__(self, options: StudioOptions) -> None:
        self.options = options
        self.engines = Engines(options)
        self.sessions = Sessions()
        self.policy = options.policy()

    def start(self, session: str, photo: str | None, prompts: list[tuple[str, float]], preset: str,
              clip_model: str | None, overrides: dict[str, Any], **guidance: Any) -> Job:
        """A new job for ``session`` (its old one is stopped): every check before any training."""
        if photo is None:
            raise ConfigError("give a photo")
        texts = [(text.strip(), weight) for text, weight in prompts if text and text.strip()]
        if not texts:
            raise ConfigError("give a PROMPT (or several)")
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        model = self.policy.check(clip_model)
        stylizer = self.engines.stylizer(model)
        options = config_for(preset, overrides)
        StyleConfig.from_dict({**options, "clip_model": model})  # a bad setting: its one line, now
        prompt: Any = texts[0][0] if len(texts) == 1 else texts
        run = stylizer.start(photo, prompt, **guidance, **options)
        job = Job(run, Path(photo), self.options.preview_every)
        self.sessions.put(session, job)
        return job

    def finish(self, job: Job, photo_name: str) -> tuple[str, str, dict[str, Any]]:
        """Save the job's last result in the output folder: (image path, U-Net path, metadata)."""
        assert job.last is not None
        saved = save_result(job.last, self.options.output_dir, photo_name)
        return str(saved.image), str(saved.unet), job.last.metadata()


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "anonymous"


def _curve(progress: Progress) -> Any:
    import pandas as pd

    return pd.DataFrame(progress.losses, columns=["step", "total loss"])


def build_app(options: StudioOptions) -> gr.Blocks:
    """The studio's `gr.Blocks`: the Stylize, Gallery and Apply tabs and the ``/stylize`` and ``/apply``
    endpoints."""
    studio = Studio(options)
    names = [item.name for item in controls.advanced_settings()]
    theme = gr.themes.Default(font=THEME_FONTS, font_mono=("ui-monospace", "monospace"))
    with gr.Blocks(title="clipstyle studio", analytics_enabled=False) as demo:
        demo.studio_theme = theme  # type: ignore[attr-defined]  # Gradio 6 takes it at launch
        demo.studio = studio  # type: ignore[attr-defined]  # for tests and benchmarks
        session_state = gr.State({})  # this page's photo and result, for the strength slider
        with gr.Tab("Stylize"):
            with gr.Row():
                with gr.Column(scale=1):
                    photo = checked_image(studio, label="photo", sources=["upload"], elem_id="photo", height=320)
                    examples = sorted(str(p) for p in EXAMPLES.glob("*.png") if not p.stem.startswith("mask"))
                    if examples:
                        gr.Examples(examples, inputs=[photo], label="examples")
                    prompt_rows = []
                    for index in range(3):
                        with gr.Row():
                            text = gr.Textbox(label=f"prompt {index + 1}" + (" (optional)" if index else ""),
                                              elem_id=f"prompt{index + 1}", scale=3)
                            weight = gr.Slider(0, 1, value=1, step=0.05, label="weight", scale=1)
                        prompt_rows += [text, weight]
                    with gr.Row():
                        preset = gr.Dropdown(list(PRESETS), value="preview", label="preset")
                        clip_model = gr.Dropdown(list(options.clip_models), value=options.clip_models[0],
                                                 label="encoder", allow_custom_value=True)
                    with gr.Row():
                        main = {name: controls.control(controls.described(name),
                                                       controls.preset_values("preview", [name])[0])
                                for name in ("steps", "size", "seed")}
                        random_seed = gr.Checkbox(value=False, label="random seed")
                    fusion = controls.control(controls.described("fusion"))
                    with gr.Accordion("style images, mask, focus", open=False):
                        style_files = gr.File(file_count="multiple", file_types=["image"], label="style images")
                        style_weights = gr.Textbox(label="style weights (comma-separated; empty: equal)")
                        mask = checked_image(studio, "mask", label="mask (white = stylize)", sources=["upload"])
                        focus = gr.Textbox(label="focus (stylize where the photo shows this)")
                    with gr.Accordion("Advanced", open=False):
                        advanced = [controls.control(item, value) for item, value in
                                    zip(controls.advanced_settings(), controls.preset_values("preview", names))]
                    with gr.Row():
                        go = gr.Button("Stylize", variant="primary", elem_id="stylize")
                        stop = gr.Button("Stop", elem_id="stop")
                    with gr.Row():
                        more = gr.Number(value=50, precision=0, minimum=1, label="continue N steps")
                        cont = gr.Button("Continue", elem_id="continue")
                with gr.Column(scale=1):
                    shown = gr.Image(label="image", format="png", interactive=False, elem_id="shown", height=320)
                    status = gr.Markdown(elem_id="status")
                    curve = gr.LinePlot(x="step", y="total loss", label="loss", height=220)
                    strength = gr.Slider(0, 1, value=1, step=0.01, label="strength (0: the photo, 1: stylized)",
                                         elem_id="strength")
                    compare = gr.ImageSlider(label="before / after", type="pil", interactive=False)
                    downloads = gr.File(label="downloads (PNG with metadata, sidecar, U-Net)", file_count="multiple",
                                        interactive=False)
                    meta = gr.JSON(label="metadata")
        with gr.Tab("Gallery"):
            gallery = gr.Gallery(label=f"runs in {options.output_dir}", columns=4, allow_preview=False)
            refresh = gr.Button("Refresh")
        with gr.Tab("Apply"):
            with gr.Row():
                unet_file = gr.File(label="U-Net (.unet.pt)", file_types=[".pt"])
                unet_pick = gr.Dropdown(label="or one from the gallery", choices=[], allow_custom_value=False)
                apply_photos = gr.File(label="photos", file_count="multiple", file_types=["image"])
            apply_go = gr.Button("Apply")
            applied = gr.Gallery(label="restyled", columns=3)
        with gr.Row(visible=False):  # the API's own inputs and outputs, named as the endpoints' parameters
            api_photo = checked_image(studio)
            api_unet = gr.File()
            api_image = gr.Image(format="png")
            api_meta = gr.JSON()
            api_button = gr.Button()

        outputs = [shown, status, curve, compare, downloads, meta, session_state]

        def progress_update(progress: Progress) -> dict:
            update = {status: progress.line(), curve: _curve(progress)}
            if progress.preview is not None:
                update[shown] = progress.preview
            return update

        def run_job(job: Job, more_steps: int | None, photo_path: str, state: dict) -> Iterator[dict]:
            try:
                for progress in job.train(more_steps):
                    if progress.result is None:
                        yield progress_update(progress)
                        continue
                    image, unet, metadata = studio.finish(job, Path(photo_path).name)
                    state = {"photo": photo_path, "image": image}
                    styled = Image.open(image)
                    yield {**progress_update(progress), shown: image, compare: (Image.open(photo_path), styled),
                           downloads: [image, str(Path(image).with_suffix(".json")), unet], meta: metadata,
                           session_state: state}
            except GeneratorExit:  # the page went away (or the call was cancelled): keep what it made
                job.stop()
                if job.run.step > 0 and (job.last is None or job.last.history != job.run.training.trained.history):
                    job.run.interrupt()
                    job.last = job.run.result()
                    studio.finish(job, Path(photo_path).name)
                raise

        @guarded
        def on_stylize(photo_path: str | None, *values: Any, request: gr.Request = None) -> Iterator[dict]:
            texts = list(zip(values[0:6:2], values[1:6:2]))
            preset_name, model, steps, size, seed, use_random, fusion_mode = values[6:13]
            styles, weights_text, mask_path, focus_text = values[13:17]
            overrides = controls.collect(names, values[17:])
            if use_random:
                seed = random.randint(0, SEED_MAX)
            overrides.update(controls.collect(["steps", "size", "seed", "fusion"], [steps, size, seed, fusion_mode]))
            guidance = {"style_image": [getattr(f, "name", f) for f in styles] if styles else None,
                        "style_weights": weights_text or None, "mask": mask_path,
                        "focus": focus_text.strip() or None if focus_text else None}
            job = studio.start(_session(request), photo_path, texts, preset_name, model, overrides, **guidance)
            yield from run_job(job, None, photo_path, {})

        @guarded
        def on_continue(steps: float | None, state: dict, request: gr.Request = None) -> Iterator[dict]:
            job = studio.sessions.get(_session(request))
            if job is None or job.last is None:
                raise ConfigError("nothing to continue: press Stylize first")
            if not steps or int(steps) < 1:
                raise ConfigError("continue for at least 1 step")
            yield from run_job(job, int(steps), str(job.photo), state)

        def on_stop(request: gr.Request = None) -> None:
            job = studio.sessions.get(_session(request))
            if job is not None:
                job.stop()

        @guarded
        def on_strength(value: float, state: dict) -> dict:
            if not state or "image" not in state:
                return {}
            photo_image, styled = Image.open(state["photo"]), Image.open(state["image"])
            mixed = pixel_mix(photo_image, styled, value)
            return {shown: mixed, compare: (photo_image.convert("RGB").resize(styled.size), mixed)}

        inputs = [photo, *prompt_rows, preset, clip_model, main["steps"], main["size"], main["seed"], random_seed,
                  fusion, style_files, style_weights, mask, focus, *advanced]
        go.click(on_stylize, inputs, outputs, concurrency_id=TRAINING, concurrency_limit=1,
                 api_visibility="private")
        cont.click(on_continue, [more, session_state], outputs, concurrency_id=TRAINING, concurrency_limit=1,
                   api_visibility="private")
        stop.click(on_stop, None, None, queue=False, api_visibility="private")
        strength.change(on_strength, [strength, session_state], [shown, compare], api_visibility="private",
                        trigger_mode="always_last")
        preset.change(lambda name: controls.preset_values(name, ["steps", "size", "seed", *names]), preset,
                      [main["steps"], main["size"], main["seed"], *advanced], api_visibility="private")

        def on_gallery() -> tuple[list, Any]:
            items = read_gallery(options.output_dir)
            unets = [str(item.unet) for item in items if item.unet is not None]
            return [(str(item.image), item.caption) for item in items], gr.Dropdown(choices=unets)

        def on_pick(evt: gr.SelectData) -> list:
            items = read_gallery(options.output_dir)
            config = items[evt.index].config() if evt.index < len(items) else None
            if config is None:
                raise gr.Error("error: this image's sidecar holds no settings this version reads")
            prompts = items[evt.index].metadata.get("prompts") or [{"text": items[evt.index].metadata.get("prompt"),
                                                                     "weight": 1.0}]
            rows: list[Any] = []
            for index in range(3):
                rows += ([prompts[index]["text"], prompts[index]["weight"]] if index < len(prompts) else ["", 1.0])
            return [*rows, *controls.config_values(config, ["steps", "size", "seed", "fusion", *names])]

        for event in (refresh.click, demo.load):
            event(on_gallery, None, [gallery, unet_pick], api_visibility="private")
        gallery.select(on_pick, None, [*prompt_rows, main["steps"], main["size"], main["seed"], fusion, *advanced],
                       api_visibility="private")

        @guarded
        def on_apply(upload: Any, picked: str | None, photos: list | None) -> list:
            unet_path = getattr(upload, "name", upload) or picked
            if not unet_path:
                raise ConfigError("give a U-Net: upload a .unet.pt or pick one from the gallery")
            if not photos:
                raise ConfigError("give one or more photos")
            return [to_pil(apply_unet_file(unet_path, check_image_upload(getattr(p, "name", p), "photo",
                                                                        options.limits), device=options.device))
                    for p in photos]

        apply_go.click(on_apply, [unet_file, unet_pick, apply_photos], applied, concurrency_id=TRAINING,
                       api_visibility="private")

        @guarded
        def stylize(photo: str, prompt: str, preset: str, steps: float | None, size: float | None,
                    seed: float | None, clip_model: str | None, request: gr.Request = None) -> Iterator[tuple]:
            """Stylize ``photo`` for ``prompt``: yields (preview, progress) pairs, then (final PNG, metadata)."""
            overrides = controls.collect(["steps", "size", "seed"], [steps, size, seed])
            job = studio.start(_session(request), photo, [(prompt, 1.0)], preset or "preview", clip_model, overrides)
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

        api_button.click(stylize, [api_photo, gr.Textbox(visible=False), gr.Textbox(visible=False),
                                   gr.Number(visible=False), gr.Number(visible=False), gr.Number(visible=False),
                                   gr.Textbox(visible=False)], [api_image, api_meta], api_name="stylize",
                         concurrency_id=TRAINING, concurrency_limit=1)
        api_button.click(apply, [api_unet, api_photo], api_image, api_name="apply", concurrency_id=TRAINING)
        def on_close(request: gr.Request) -> None:  # the page was closed: its run stops after this step
            studio.sessions.close(_session(request))

        demo.unload(on_close)
    return demo


__all__ = ["Studio", "build_app", "checked_image", "user_error"]
