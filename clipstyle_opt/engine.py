"""`Stylizer`: loads the encoders once, trains one U-Net per call, returns a `Result`."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .config import ENCODER_KEYS, StyleConfig
from .devices import (
    hardware_name,
    is_out_of_memory,
    precision_name,
    resolve_device,
    resolve_precision,
    reuse_freed_cpu_memory,
    torch_threads,
)
from .encoders.base import ImageTextEncoder
from .encoders.prompts import check_prompts, check_text
from .encoders.registry import encoder_list, ensemble, load_encoder
from .encoders.vgg import VGGFeatures, load_vgg
from .errors import ConfigError, OutOfMemoryError
from .imageio import ImageSource, load_image, resize
from .objective.guidance import GUIDANCE_KEYWORDS, Guidance, PromptSpec, make_guidance
from .objective.masks import composite, resize_mask
from .result import Result, StepInfo
from .sizing import output_hw, training_hw
from .style_run import RunSetup, StyleRun
from .training.keyframes import keyframe_phase, load_keyframes
from .training.loop import TrainingRun
from .training.phases import build_phase, coarse_config
from .training.steps import STEP_KINDS, StepKind
from .unet.model import StyleUNet
from .unet.render import render
from .unet.start import starting_unet

UNTILED_PIXELS = 2048 * 2048
"""`Stylizer` applies its U-Net to outputs up to this many pixels in one piece (as before outputs had no
tiling); larger ones tile by tile (`clipstyle_opt.unet.tiling`)."""


class Stylizer:
    """Holds loaded, frozen encoders and stylizes any number of images with them.

    >>> stylizer = Stylizer(StyleConfig(steps=100))      # doctest: +SKIP
    >>> result = stylizer.stylize("photo.jpg", "fire")   # doctest: +SKIP
    """

    step_kind: StepKind = "auto"
    """The kind of training step (`clipstyle_opt.training.steps`): "auto" (captured on CUDA with ``cuda_graph``,
    else plain), "plain", "reference" (as ``batched_crops=False``) or "captured" (uncaptured off CUDA: how the
    CPU tests check the CUDA-graph step)."""

    def __init__(self, config: StyleConfig | None = None, *,
                 clip: ImageTextEncoder | Sequence[ImageTextEncoder] | None = None,
                 vgg: VGGFeatures | None = None, step_kind: StepKind = "auto") -> None:
        """clip: already loaded encoder(s) to use instead of loading ``config.clip_model``: one,
        or one per ensemble member in the config's order (the weights still come from the config)."""
        self.config = config or StyleConfig()
        if step_kind not in STEP_KINDS:
            raise ConfigError(f"step_kind must be one of {', '.join(STEP_KINDS)}, got {step_kind!r}")
        self.step_kind = step_kind
        self.device = resolve_device(self.config.device)
        self.autocast_dtype = resolve_precision(self.config.precision, self.device)
        if self.device.type == "cpu":
            reuse_freed_cpu_memory()
        started = time.perf_counter()
        members = ensemble(self.config.clip_model, self.config.clip_weights)
        given = encoder_list(clip)
        if given and len(given) != len(members):
            raise ConfigError(f"{len(given)} encoder(s) given for {len(members)} clip_model(s)")
        encoders = given or [load_encoder(spec, self.device) for spec, _ in members]
        self.encoders: list[tuple[ImageTextEncoder, float]] = []
        for encoder, (_, weight) in zip(encoders, members):
            encoder = encoder.to(self.device)
            encoder.autocast_dtype = self.autocast_dtype
            if self.config.compile:
                encoder.compile_image_tower()
            self.encoders.append((encoder, weight))
        self.clip = self.encoders[0][0]
        """The first (or only) encoder."""
        layers = (*self.config.content_layers, *self.config.style_layers)
        self.vgg = (vgg or load_vgg(self.config.vgg, layers, self.device)).to(self.device)
        self.load_seconds = time.perf_counter() - started

    def _call_config(self, overrides: dict[str, Any]) -> StyleConfig:
        fixed = [key for key in overrides if key in ENCODER_KEYS and overrides[key] != getattr(self.config, key)]
        if fixed:
            raise ConfigError(f"{', '.join(fixed)} cannot change per call; make a new Stylizer for that")
        return self.config.replace(**overrides) if overrides else self.config

    def stylize(self, content: ImageSource, prompt: PromptSpec | Guidance, *,
                style_image: ImageSource | Sequence[ImageSource] | None = None,
                callback: Callable[[StepInfo], None] | None = None, batched_crops: bool = True,
                should_stop: Callable[[], bool] | None = None, keyframes: Sequence[ImageSource] = (),
                **options: Any) -> Result:
        """Train a U-Net so that ``content`` takes on ``prompt``; return the stylized image.

        prompt: a text; several texts (equal weights, or ``weights``); (text, weight) pairs; or a
            `Guidance`. Several prompts combine as ``fusion`` says (`clipstyle_opt.objective.guidance`).
        content / style_image: path, PIL image, HxWx3 array or (1, 3, H, W) tensor in [0, 1];
            several style images mix their Gram targets by ``style_weights`` (equal by default).
        mask: white = stylize, black = keep (path, image or (1, 1, H, W) tensor; resized to the photo):
            crops are drawn where it is, the content loss is weighted by 1 - mask and the output is
            composited over the photo with it. regions: (mask, prompt(s)) pairs, each region with its
            own prompts and its own share of the crops, in one U-Net. focus: a text whose relevance
            map (`clipstyle_opt.objective.relevance`) becomes the mask, soft or cut at ``focus_threshold``,
            inverted with ``focus_invert``. Only one of mask, regions and focus.
        options: the guidance keywords (`GUIDANCE_KEYWORDS`: weights, style_weights, mask, regions, focus,
            focus_threshold, focus_invert; fusion is a setting) and any `StyleConfig` field except the encoder
            ones (steps=50, lambda_c=300, ...).
        callback: called after every step with a `StepInfo`.
        batched_crops: False computes the crops one by one, the global view in its own
            CLIP call and one backward over everything, as the reference code does (same
            losses, slower, more memory): for verification (the ``reference`` `step_kind`).
        should_stop: asked after every step; if it returns True the run ends there and the
            result so far is returned, with ``extra["status"] == "interrupted"`` and
            ``extra["steps_done"]``.

        keyframes: more frames of the same video (the size of ``content``), trained into the same U-Net
            with ``content`` (`clipstyle_opt.training.keyframes`): each step's crops are split over the frames,
            each frame keeps its own content loss. The result renders ``content``. Not with a mask, regions or
            focus; needs ``n_crops`` >= the number of frames. See `clipstyle_opt.video` for whole videos.

        With ``early_stop`` set, a run whose smoothed patch loss stopped improving ends
        early (`clipstyle_opt.training.stopping`), with ``extra["early_stopped"]`` and ``extra["steps_done"]``.

        Raises `ConfigError` for an empty prompt or one too long for CLIP (`clipstyle_opt.encoders.prompts`),
        `ImageReadError` for an unreadable or too small image, `OutOfMemoryError` naming the
        settings to lower, and `NonFiniteLossError` (carrying the last good `Result`) when a
        loss term becomes NaN or infinite.
        """
        guidance, config = self._prepare(prompt, style_image, options)
        with self._out_of_memory(config), torch_threads(config.threads):
            return self._stylize(content, guidance, config, callback, batched_crops, should_stop, keyframes)

    def start(self, content: ImageSource, prompt: PromptSpec | Guidance, *,
              style_image: ImageSource | Sequence[ImageSource] | None = None, batched_crops: bool = True,
              **options: Any) -> StyleRun:
        """Prepare a run as `stylize` does (same arguments, same checks) without training: a `StyleRun` to
        advance a few steps at a time, stop, lengthen and turn into a `Result` at any step.

        ``run.advance()`` to the end then ``run.result()`` gives what `stylize` gives for the same arguments.
        """
        guidance, config = self._prepare(prompt, style_image, options)
        with self._out_of_memory(config):
            return self._start(content, guidance, config, batched_crops)

    def _prepare(self, prompt: PromptSpec | Guidance, style_image: ImageSource | Sequence[ImageSource] | None,
                 options: dict[str, Any]) -> tuple[Guidance, StyleConfig]:
        """Split a call's keywords into guidance aims and settings, build both and check every text
        (what `stylize` and `start` share)."""
        settings = set(StyleConfig.__dataclass_fields__)
        aims = {key: options.pop(key) for key in GUIDANCE_KEYWORDS if key in options and key not in settings}
        config = self._call_config(options)
        guidance = make_guidance(prompt, style_image=style_image, fusion=config.fusion, **aims)
        check_prompts([t.text for t in guidance.all_texts()], config.clip_model, focus=guidance.focus)
        check_text(config.source_text, "source_text", allow_empty=True, clip_model=config.clip_model)
        return guidance, config

    @contextmanager
    def _out_of_memory(self, config: StyleConfig) -> Iterator[None]:
        """Turn running out of memory into an `OutOfMemoryError` naming the settings to lower."""
        try:
            yield
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            raise OutOfMemoryError(
                f"out of memory on {self.device.type} training at size {config.size} with {config.n_crops} crops: "
                f"lower --size (now {config.size}) or --n-crops (now {config.n_crops}); --clip-batch 8 also saves "
                "memory") from None

    def _start(self, content: ImageSource, guidance: Guidance, config: StyleConfig, batched_crops: bool,
               keyframes: Sequence[ImageSource] = ()) -> StyleRun:
        timings: dict[str, float] = {"load_s": round(self.load_seconds, 3)}
        started = time.perf_counter()

        content_full = load_image(content, "photo")
        height, width = content_full.shape[-2:]
        train_hw = training_hw(height, width, config)
        output_hw(height, width, config)  # an output over the pixel limit is refused before training
        batched = batched_crops and self.step_kind != "reference"
        if keyframes:
            frames = [content_full] + load_keyframes(keyframes, content_full, guidance, config, batched)
            phase_configs = ([coarse_config(config)] if config.coarse_steps else []) + [config]
            phases = [keyframe_phase(c, frames, guidance, self.encoders, self.vgg, self.device) for c in phase_configs]
        else:
            phases = [build_phase(config, content_full, guidance, self.encoders, self.vgg, self.device, batched)]
            if config.coarse_steps:
                phases.insert(0, build_phase(coarse_config(config), content_full, guidance, self.encoders, self.vgg,
                                             self.device, batched))
        final_phase = phases[-1]

        first_style = guidance.images[0].source if guidance.images else None
        unet, start = starting_unet(config.unet_width, config.seed, config.init)
        unet = unet.to(self.device)
        run = RunSetup(content, first_style, guidance.label(), config, content_full, train_hw, timings, started,
                       guidance, final_phase.mask, final_phase.relevance, start)
        generator = torch.Generator().manual_seed(config.seed)
        timings["prepare_s"] = round(time.perf_counter() - started, 3)
        training = TrainingRun(unet, phases, step_kind=self.step_kind, device=self.device, generator=generator)
        return StyleRun(self, run, unet, training)

    def _stylize(self, content: ImageSource, guidance: Guidance, config: StyleConfig,
                 callback: Callable[[StepInfo], None] | None, batched_crops: bool,
                 should_stop: Callable[[], bool] | None, keyframes: Sequence[ImageSource] = ()) -> Result:
        style_run = self._start(content, guidance, config, batched_crops, keyframes)
        style_run.training.warn_stacklevel = 5  # the rejection warning points at stylize, as before
        style_run.advance(callback=callback, should_stop=should_stop)
        return style_run.result(keep_training=False)

    def _finish(self, run: RunSetup, unet: StyleUNet, history: list[dict[str, float]], extra: dict[str, Any]) -> Result:
        """Render the trained U-Net on the photo at the output size (`unet.render.render`) and wrap everything in
        a `Result`."""
        apply_started = time.perf_counter()
        unet.eval()
        out_mask = focus_map = None
        with torch.no_grad():
            out_hw = output_hw(*run.content_full.shape[-2:], run.config)
            # deviation from applying the U-Net at the output size: an output no larger than the training
            # size is rendered from the training input itself, as CLIPstyler does (sizing.render_hw says why)
            final = render(unet, run.content_full, out_hw, run.config.size, device=self.device,
                           untiled_pixels=UNTILED_PIXELS)
            if run.mask is not None:
                out_mask = resize_mask(run.mask.float().cpu(), out_hw)
                final = composite(final, resize(run.content_full, out_hw), out_mask)
            if run.focus_map is not None:
                focus_map = resize_mask(run.focus_map.float().cpu(), out_hw)
        run.timings["apply_s"] = round(time.perf_counter() - apply_started, 3)
        run.timings["total_s"] = round(time.perf_counter() - run.started, 3)

        return Result(
            tensor=final, prompt=run.prompt, config=run.config, history=history, timings=run.timings,
            unet=unet.cpu(), content_path=_path_or_none(run.content), style_path=_path_or_none(run.style_image),
            device=str(self.device), precision=precision_name(self.autocast_dtype), training_size=run.train_hw,
            extra=extra, guidance=run.guidance, mask=out_mask, focus_map=focus_map,
            threads=torch.get_num_threads(), hardware=hardware_name(self.device),
        )


def _path_or_none(source: Any) -> str | None:
    if isinstance(source, (str, Path)):
        return str(source)
    return None


def stylize(content: ImageSource, prompt: PromptSpec | Guidance, *, config: StyleConfig | None = None,
            style_image: ImageSource | Sequence[ImageSource] | None = None,
            callback: Callable[[StepInfo], None] | None = None, **overrides: Any) -> Result:
    """One-call stylization: ``stylize("photo.jpg", "fire", steps=100)``, or with weighted prompts
    ``stylize("photo.jpg", [("Van Gogh starry night", 0.7), ("ukiyo-e woodblock print", 0.3)])``.

    Loads the encoders for this call; use `Stylizer` to reuse them across calls. Guidance keywords
    (weights, style_weights, mask, regions, focus, ...) are those of `Stylizer.stylize`.
    """
    base = config or StyleConfig()
    encoder_overrides = {k: v for k, v in overrides.items() if k in ENCODER_KEYS}
    other = {k: v for k, v in overrides.items() if k not in ENCODER_KEYS}
    stylizer = Stylizer(base.replace(**encoder_overrides) if encoder_overrides else base)
    return stylizer.stylize(content, prompt, style_image=style_image, callback=callback, **other)
