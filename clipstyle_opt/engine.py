"""`Stylizer`: loads the encoders once, trains one U-Net per call, returns a `Result`."""
from __future__ import annotations

import io
import math
import platform
import statistics
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from PIL import Image
from torch.nn import functional as F

from .objective import augment
from .config import StyleConfig, clip_batch_for
from .training.captured import CapturedStep, can_capture, captured_optimizer, step_lr
from .devices import is_out_of_memory, precision_name, resolve_device, resolve_precision, reuse_freed_cpu_memory
from .encoders.base import ImageTextEncoder
from .encoders.registry import encoder_list, ensemble, load_encoder
from .encoders.vgg import VGGFeatures, load_vgg
from .errors import ClipstyleWarning, ConfigError, ImageReadError, NonFiniteLossError, OutOfMemoryError, first_line
from .objective.guidance import Guidance, PromptSpec, make_guidance
from .imageio import (MAX_PIXELS_ENV, MIN_SIDE, ImageSource, atomic_write, check_min_size, check_output_file,
                      fit_size, load_image, max_pixels, resize, save_image, to_pil)
from .objective.masks import composite, load_mask, resize_mask, union
from .objective.style_objective import TERM_NAMES, StyleObjective
from .encoders.prompts import check_prompts, check_text
from .unet.restyle import render_hw
from .training.stopping import EarlyStop
from .unet.tiling import DEFAULT_TILE_SIZE, StatsMode, apply_tiled
from .unet.model import StyleUNet

# Changing these needs other encoders, so they are fixed per Stylizer.
ENCODER_KEYS = ("clip_model", "clip_weights", "vgg", "device", "precision", "content_layers", "style_layers", "compile")


@dataclass
class StepInfo:
    """What a callback receives after each optimizer step.

    step: 1-based, counting a coarse phase's steps first (``coarse_steps``); steps: all steps of the run,
    coarse ones included; terms: unweighted loss terms and ``total`` (floats);
    output: the current phase's training-size output (1, 3, h, w) in [0, 1], detached (smaller during a
    coarse phase).
    """

    step: int
    steps: int
    terms: dict[str, float]
    lr: float
    seconds: float
    output: torch.Tensor


@dataclass
class Result:
    """A finished stylization.

    tensor: (1, 3, H, W) float32 in [0, 1] on the CPU, at the output size.
    history: one dict per step (loss terms, total, lr, seconds).
    timings: seconds for prepare, train, apply and the median step.
    """

    tensor: torch.Tensor
    prompt: str
    config: StyleConfig
    history: list[dict[str, float]]
    timings: dict[str, float]
    unet: StyleUNet
    content_path: Optional[str] = None
    style_path: Optional[str] = None
    device: str = "cpu"
    precision: str = "fp32"
    training_size: tuple[int, int] = (0, 0)
    extra: dict[str, Any] = field(default_factory=dict)
    guidance: Optional[Guidance] = None
    mask: Optional[torch.Tensor] = None
    """(1, 1, H, W) in [0, 1] at the output size: the mask the output was composited with (None: no mask)."""
    focus_map: Optional[torch.Tensor] = None
    """(1, 1, H, W) in [0, 1] at the output size: the ``focus`` text's relevance map (None without focus)."""

    @property
    def image(self) -> Image.Image:
        """The result as an 8-bit RGB PIL image."""
        return to_pil(self.tensor)

    def metadata(self) -> dict[str, Any]:
        """Everything needed to know how this image was made (goes into PNG chunks and the sidecar)."""
        last = self.history[-1] if self.history else {}
        return {
            "tool": "clipstyle_opt",
            "prompt": self.prompt,
            "content": self.content_path,
            "style_image": self.style_path,
            "seed": self.config.seed,
            "config": self.config.to_dict(),
            "device": self.device,
            "precision": self.precision,
            "training_size": list(self.training_size),
            "output_size": [int(self.tensor.shape[-2]), int(self.tensor.shape[-1])],
            "final_losses": {k: last.get(k) for k in (*TERM_NAMES, "total") if k in last},
            "timings": self.timings,
            "versions": package_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **(self.guidance.metadata() if self.guidance is not None else {}),
            **self.extra,
        }

    def save(self, path: str | Path, *, overwrite: bool = False, sidecar: bool = True) -> Path:
        """Write the image (format by extension) with metadata and a JSON sidecar; refuses to overwrite.

        With a focus map, it is written beside the image as `focus_map_path` (a grey PNG, white = styled).
        """
        written = save_image(self.tensor, path, self.metadata(), overwrite=overwrite, sidecar=sidecar)
        if self.focus_map is not None:
            save_image(self.focus_map.expand(1, 3, -1, -1), focus_map_path(written),
                       {"focus": self.guidance.focus if self.guidance else None, "image": str(written)},
                       overwrite=overwrite, sidecar=False)
        return written

    def save_unet(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Save the trained U-Net so `apply_unet_file` can restyle other images later."""
        return save_unet(self.unet, path, self.metadata(), overwrite=overwrite)


@dataclass
class _Run:
    """What one `Stylizer.stylize` call fixes before its loop: enough to turn any U-Net into a `Result`."""

    content: ImageSource
    style_image: ImageSource | None
    prompt: str
    config: StyleConfig
    content_full: torch.Tensor
    train_hw: tuple[int, int]
    timings: dict[str, float]
    started: float
    guidance: Guidance | None = None
    mask: torch.Tensor | None = None
    """(1, 1, h, w) soft mask at the training size (None: the whole image)."""
    focus_map: torch.Tensor | None = None


@dataclass
class _Phase:
    """One training phase: its settings, training size, photo, crop masks, union mask, relevance and objective."""

    config: StyleConfig
    hw: tuple[int, int]
    content: torch.Tensor
    crop_masks: list[torch.Tensor]
    mask: torch.Tensor | None
    relevance: torch.Tensor | None
    objective: StyleObjective


def coarse_config(config: StyleConfig) -> StyleConfig:
    """The settings of the coarse phase (``coarse_steps`` > 0) that comes before ``config``'s own steps.

    deviation: not in CLIPstyler. Training size ``coarse_size`` (no larger than ``size``), crops scaled
    with it (the reference's 128 px crops on 512 px become 64 px on 256 px), learning rate ``coarse_lr``
    (``lr`` if None) without decay, no early stop. The fine phase then runs ``steps`` steps at ``size``
    from the coarse phase's weights, with a fresh optimizer.
    """
    size = min(config.coarse_size, config.size)
    return config.replace(size=size, crop_size=max(8, round(config.crop_size * size / config.size)),
                          steps=config.coarse_steps, lr=config.coarse_lr or config.lr,
                          lr_decay_every=config.coarse_steps, early_stop=0, coarse_steps=0)


def focus_map_path(image_path: str | Path) -> Path:
    """Where `Result.save` puts the focus map: ``out.png`` -> ``out_focus.png``."""
    path = Path(image_path)
    return path.with_name(f"{path.stem}_focus.png")


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a result."""
    versions = {"python": platform.python_version()}
    for dist in ("clipstyle_opt", "torch", "torchvision", "kornia", "clip-anytorch", "numpy", "pillow"):
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def seeded_unet(width: int, seed: int) -> StyleUNet:
    """A freshly initialised U-Net whose weights depend only on ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return StyleUNet(width)


def apply_unet(unet: StyleUNet, image: torch.Tensor) -> torch.Tensor:
    """Run the U-Net on an image of any size: reflect-pad to multiples of 8, then crop back."""
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % 8, (-width) % 8
    padded = F.pad(image, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else image
    return unet(padded)[..., :height, :width]


def training_hw(height: int, width: int, config: StyleConfig, what: str = "photo") -> tuple[int, int]:
    """The training size of a ``height`` x ``width`` image (long side ``config.size``, multiples of 8), checked.

    Refuses (one-line `ImageReadError`) an image with a side under `MIN_SIDE`
    px, or one so elongated that its short side would train at under
    `MIN_SIDE` px (VGG's conv5 layers see the image at 1/16).
    """
    check_min_size(height, width, what)
    train = fit_size(height, width, config.size)
    if min(train) < MIN_SIDE:
        raise ImageReadError(f"{what} is too elongated for training at size {config.size}: {width}x{height} px "
                             f"would train at {train[1]}x{train[0]}, and each side must be at least {MIN_SIDE} px; "
                             "raise --size or crop it")
    return train


UNTILED_PIXELS = 2048 * 2048
"""`Stylizer` applies its U-Net to outputs up to this many pixels in one piece (as before outputs had no
tiling); larger ones tile by tile (`clipstyle_opt.unet.tiling`)."""


def output_hw(height: int, width: int, config: StyleConfig) -> tuple[int, int]:
    """Final image size: ``output_size`` as long side, else the content's own size, capped at ``max_output_size``
    when that is set."""
    long_side = config.output_size or min(max(height, width), config.max_output_size or max(height, width))
    if long_side == max(height, width):
        return height, width
    scale = long_side / max(height, width)
    out = max(8, round(height * scale)), max(8, round(width * scale))
    if out[0] * out[1] > max_pixels():
        raise ConfigError(f"the output would be {out[1]}x{out[0]} = {out[0] * out[1]:,} px, over the limit of "
                          f"{max_pixels():,} px; lower --output-size, or set {MAX_PIXELS_ENV}", "output_size")
    return out


class Stylizer:
    """Holds loaded, frozen encoders and stylizes any number of images with them.

    >>> stylizer = Stylizer(StyleConfig(steps=100))      # doctest: +SKIP
    >>> result = stylizer.stylize("photo.jpg", "fire")   # doctest: +SKIP
    """

    graph_on_cpu: bool = False
    """Tests only: run the CUDA-graph step (``cuda_graph``) uncaptured on the CPU, to check what it computes."""

    def __init__(self, config: StyleConfig | None = None, *,
                 clip: ImageTextEncoder | Sequence[ImageTextEncoder] | None = None,
                 vgg: VGGFeatures | None = None) -> None:
        """clip: already loaded encoder(s) to use instead of loading ``config.clip_model``: one,
        or one per ensemble member in the config's order (the weights still come from the config)."""
        self.config = config or StyleConfig()
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
                should_stop: Callable[[], bool] | None = None, weights: Sequence[float] | None = None,
                style_weights: Sequence[float] | None = None, mask: Any = None,
                regions: Sequence[tuple[Any, PromptSpec]] = (), focus: str | None = None,
                focus_threshold: float | None = None, focus_invert: bool = False, **overrides: Any) -> Result:
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
        overrides: any `StyleConfig` field except the encoder ones (steps=50, lambda_c=300, ...).
        callback: called after every step with a `StepInfo`.
        batched_crops: False computes the crops one by one, the global view in its own
            CLIP call and one backward over everything, as the reference code does (same
            losses, slower, more memory): for verification.
        should_stop: asked after every step; if it returns True the run ends there and the
            result so far is returned, with ``extra["status"] == "interrupted"`` and
            ``extra["steps_done"]``.

        With ``early_stop`` set, a run whose smoothed patch loss stopped improving ends
        early (`clipstyle_opt.training.stopping`), with ``extra["early_stopped"]`` and ``extra["steps_done"]``.

        Raises `ConfigError` for an empty prompt or one too long for CLIP (`clipstyle_opt.encoders.prompts`),
        `ImageReadError` for an unreadable or too small image, `OutOfMemoryError` naming the
        settings to lower, and `NonFiniteLossError` (carrying the last good `Result`) when a
        loss term becomes NaN or infinite.
        """
        config = self._call_config(overrides)
        if isinstance(prompt, str):
            check_text(prompt, "the prompt", clip_model=config.clip_model)
        guidance = make_guidance(prompt, weights=weights, style_image=style_image, style_weights=style_weights,
                                 mask=mask, regions=regions, focus=focus, focus_threshold=focus_threshold,
                                 focus_invert=focus_invert, fusion=config.fusion)
        check_prompts([t.text for t in guidance.all_texts()], config.clip_model, focus=guidance.focus)
        check_text(config.source_text, "source_text", allow_empty=True, clip_model=config.clip_model)
        try:
            return self._stylize(content, guidance, config, callback, batched_crops, should_stop)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            raise OutOfMemoryError(
                f"out of memory on {self.device.type} training at size {config.size} with {config.n_crops} crops: "
                f"lower --size (now {config.size}) or --n-crops (now {config.n_crops}); --clip-batch 8 also saves "
                "memory") from None

    def _masks(self, guidance: Guidance, content_train: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """(per-region crop masks, relevance map) at the training size; ([], None) without masks."""
        train_hw = tuple(content_train.shape[-2:])
        if guidance.mask is not None:
            return [resize_mask(load_mask(guidance.mask), train_hw).to(self.device)], None
        if guidance.regions:
            return [resize_mask(load_mask(region.mask, "--region mask"), train_hw).to(self.device)
                    for region in guidance.regions], None
        if guidance.focus is not None:
            from .objective.relevance import focus_mask, relevance_map

            relevance = relevance_map(self.clip, content_train, guidance.focus).to(self.device)
            mask = focus_mask(relevance, guidance.focus_threshold, guidance.focus_invert)
            if float(mask.max()) <= 0:
                raise ConfigError(f"--focus-threshold {guidance.focus_threshold:g} leaves nothing to stylize; "
                                  "lower it")
            return [mask], relevance
        return [], None

    def _stylize(self, content: ImageSource, guidance: Guidance, config: StyleConfig,
                 callback: Callable[[StepInfo], None] | None, batched_crops: bool,
                 should_stop: Callable[[], bool] | None) -> Result:
        device = self.device
        timings: dict[str, float] = {"load_s": round(self.load_seconds, 3)}
        started = time.perf_counter()

        content_full = load_image(content, "photo")
        height, width = content_full.shape[-2:]
        train_hw = training_hw(height, width, config)
        output_hw(height, width, config)  # an output over the pixel limit is refused before training
        phases = [self._phase(config, content_full, guidance, batched_crops)]
        if config.coarse_steps:
            phases.insert(0, self._phase(coarse_config(config), content_full, guidance, batched_crops))
        final_phase = phases[-1]

        first_style = guidance.images[0].source if guidance.images else None
        run = _Run(content, first_style, guidance.label(), config, content_full, train_hw, timings, started,
                   guidance, final_phase.mask, final_phase.relevance)
        generator = torch.Generator().manual_seed(config.seed)
        unet = seeded_unet(config.unet_width, config.seed).to(device)
        timings["prepare_s"] = round(time.perf_counter() - started, 3)

        history: list[dict[str, float]] = []
        step_seconds: list[float] = []
        loop_started = time.perf_counter()
        extra: dict[str, Any] = {}
        # The weights whose output last had finite losses and gradients: what a NaN falls back to.
        good_state: dict[str, torch.Tensor] | None = None
        total_steps = sum(phase.config.steps for phase in phases)
        step = 0
        unet.train()
        for phase in phases:
            pconfig = phase.config
            graphed = self._graphed(pconfig, phase, batched_crops)
            captured: CapturedStep | None = None
            # a fresh optimizer per phase: the coarse phase's moments are for other activations' scale
            optimizer = (captured_optimizer(unet, pconfig.lr, device) if graphed else
                         torch.optim.Adam(unet.parameters(), lr=pconfig.lr, **_adam_options(device)))
            # A captured step's rate is a device tensor set from `step_lr`; no scheduler may replace it.
            schedule = None if graphed else torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=pconfig.lr_decay_every, gamma=pconfig.lr_decay)
            stopper = EarlyStop(pconfig.early_stop, pconfig.early_stop_delta) if pconfig.early_stop else None
            watched = "patch" if pconfig.lambda_patch > 0 else "total"
            for phase_step in range(1, pconfig.steps + 1):
                step += 1
                step_started = time.perf_counter()
                params = _draw_crops(pconfig, phase.hw, generator, phase.crop_masks)
                if graphed:  # one replay: forward, backward and the Adam step (see clipstyle_opt.training.captured)
                    if captured is None:
                        captured = CapturedStep(unet, phase.objective, phase.content, optimizer, params,
                                                capture=device.type == "cuda")
                    lr = step_lr(pconfig.lr, pconfig.lr_decay, pconfig.lr_decay_every, phase_step)
                    values, grads_finite, output = captured.step(params, lr)
                    bad = _non_finite_term(values, grads_finite)
                    if bad is not None:
                        raise self._non_finite_error(run, bad, step, total_steps, captured.fallback_state(), unet,
                                                     history)
                    if callback is not None:
                        output = output.clone()  # the graph's buffer is overwritten by the next step
                else:
                    optimizer.zero_grad(set_to_none=True)
                    output = unet(phase.content)
                    if batched_crops:
                        values = phase.objective.backward(output, params, clip_batch_for(pconfig, device.type))
                    else:  # the reference's structure: one graph, one backward
                        terms = phase.objective.terms(output, params)
                        terms["total"].backward()
                        values = {name: float(value.detach()) for name, value in terms.items()}
                    bad = _non_finite_term(values, _grads_finite(unet))
                    if bad is not None:
                        raise self._non_finite_error(run, bad, step, total_steps, good_state, unet, history)
                    good_state = {k: v.detach().clone() for k, v in unet.state_dict().items()}
                    optimizer.step()
                    lr = optimizer.param_groups[0]["lr"]
                    assert schedule is not None
                    schedule.step()
                seconds = time.perf_counter() - step_started
                step_seconds.append(seconds)
                history.append({"step": step, **values, "lr": lr, "seconds": seconds})
                if phase_step == min(REJECTION_CHECK_STEPS, pconfig.steps):
                    _warn_if_rejection_is_total(history[-phase_step:], pconfig)
                if callback is not None:
                    callback(StepInfo(step, total_steps, values, lr, seconds, output.detach()))
                if should_stop is not None and step < total_steps and should_stop():
                    extra = {"status": "interrupted", "steps_done": step}
                    break
                if stopper is not None and phase_step < pconfig.steps and stopper.update(values[watched]):
                    extra = {"early_stopped": True, "steps_done": step}
                    break
            if extra.get("status") == "interrupted":
                break
        if config.coarse_steps:
            extra["coarse_steps"] = config.coarse_steps
        timings["train_s"] = round(time.perf_counter() - loop_started, 3)
        timings["step_median_s"] = round(statistics.median(step_seconds), 4) if step_seconds else 0.0

        return self._finish(run, unet, history, extra)

    def _graphed(self, config: StyleConfig, phase: "_Phase", batched_crops: bool) -> bool:
        """Whether this phase's steps run as a `CapturedStep`: on CUDA with ``cuda_graph`` and an objective
        without host reads. `graph_on_cpu` (tests) runs the same step uncaptured on the CPU."""
        wanted = config.cuda_graph and (self.device.type == "cuda" or self.graph_on_cpu)
        return wanted and batched_crops and can_capture(phase.objective)

    def _phase(self, config: StyleConfig, content_full: torch.Tensor, guidance: Guidance,
               batched_crops: bool) -> "_Phase":
        """Everything one training phase needs at ``config.size``: the photo, style images, masks and objective."""
        device = self.device
        train_hw = training_hw(*content_full.shape[-2:], config)
        content_train = resize(content_full, train_hw).to(device)
        styles: list[tuple[torch.Tensor, float]] = []
        for index, item in enumerate(guidance.images):
            what = "style image" if len(guidance.images) == 1 else f"style image {index + 1}"
            style_full = load_image(item.source, what)
            styles.append((resize(style_full, training_hw(*style_full.shape[-2:], config, what)).to(device),
                           item.weight))
        style_tensor: Any = styles[0][0] if len(styles) == 1 else (styles or None)
        crop_masks, relevance = self._masks(guidance, content_train)
        mask = union(crop_masks) if crop_masks else None
        attention = relevance
        if config.attention_patch and attention is None:
            from .objective.relevance import relevance_map

            attention = sum(t.weight * relevance_map(self.clip, content_train, t.text) for t in guidance.texts)
        objective = StyleObjective(self.encoders, self.vgg, config, content_train, guidance, style_tensor,
                                   batched=batched_crops, mask=mask,
                                   relevance=None if attention is None else attention.to(device))
        return _Phase(config, train_hw, content_train, crop_masks, mask, relevance, objective)

    def _finish(self, run: _Run, unet: StyleUNet, history: list[dict[str, float]], extra: dict[str, Any]) -> Result:
        """Apply the trained U-Net to the photo at the output size and wrap everything in a `Result`."""
        apply_started = time.perf_counter()
        unet.eval()
        out_mask = focus_map = None
        with torch.no_grad():
            out_hw = output_hw(*run.content_full.shape[-2:], run.config)
            final_input = resize(run.content_full, out_hw)
            # deviation from applying the U-Net at the output size: an output no larger than the training
            # size is rendered from the training input itself, as CLIPstyler does (restyle.render_hw says why)
            grid_hw = render_hw(*run.content_full.shape[-2:], out_hw, run.config.size)
            grid_input = final_input if grid_hw == out_hw else resize(run.content_full, grid_hw)
            if grid_hw[0] * grid_hw[1] <= UNTILED_PIXELS:
                final = apply_unet(unet, grid_input.to(self.device)).float().cpu()
            else:  # bounded memory for outputs larger than the old 2048 px cap allowed
                final = apply_tiled(unet, grid_input, device=self.device)
            final = resize(final, out_hw)
            if run.mask is not None:
                out_mask = resize_mask(run.mask.float().cpu(), out_hw)
                final = composite(final, final_input, out_mask)
            if run.focus_map is not None:
                focus_map = resize_mask(run.focus_map.float().cpu(), out_hw)
        run.timings["apply_s"] = round(time.perf_counter() - apply_started, 3)
        run.timings["total_s"] = round(time.perf_counter() - run.started, 3)

        return Result(
            tensor=final, prompt=run.prompt, config=run.config, history=history, timings=run.timings,
            unet=unet.cpu(), content_path=_path_or_none(run.content), style_path=_path_or_none(run.style_image),
            device=str(self.device), precision=precision_name(self.autocast_dtype), training_size=run.train_hw,
            extra=extra, guidance=run.guidance, mask=out_mask, focus_map=focus_map,
        )

    def _non_finite_error(self, run: _Run, term: str, step: int, steps: int,
                          good_state: dict[str, torch.Tensor] | None, unet: StyleUNet,
                          history: list[dict[str, float]]) -> NonFiniteLossError:
        """The error for ``term`` going NaN/inf at ``step`` of ``steps``, carrying the result of the last good
        weights."""
        what = "the gradient" if term == "gradient" else f"the {term} loss"
        if good_state is None:
            return NonFiniteLossError(f"{what} became NaN or infinite at step {step} of {steps}, before any good "
                                      "step; nothing to keep (try a lower --lr or loss weights)", step=step, term=term)
        unet.load_state_dict(good_state)
        extra = {"status": "stopped", "reason": f"{what} became NaN or infinite at step {step}",
                 "steps_done": step - 1}
        result = self._finish(run, unet, history[:step - 1], extra)
        return NonFiniteLossError(f"{what} became NaN or infinite at step {step} of {steps}; stopped, keeping the "
                                  f"output of step {step - 1} (try a lower --lr or loss weights)",
                                  step=step, term=term, result=result)


def _draw_crops(config: StyleConfig, train_hw: tuple[int, int], generator: torch.Generator,
                crop_masks: Sequence[torch.Tensor]) -> augment.CropParams:
    """One step's crops: uniform (no mask, the reference), drawn where the mask is, or per region
    ``n_crops // regions`` (at least 1) each drawn in its own mask and tagged with its region."""
    if not crop_masks:
        return augment.sample_crop_params(config.n_crops, train_hw, config.crop_size, config.distortion, generator)
    if len(crop_masks) == 1:
        return augment.sample_crop_params(config.n_crops, train_hw, config.crop_size, config.distortion, generator,
                                          where=crop_masks[0])
    each = max(1, config.n_crops // len(crop_masks))
    return augment.CropParams.concat([
        augment.sample_crop_params(each, train_hw, config.crop_size, config.distortion, generator, where=mask)
        for mask in crop_masks])


def _grads_finite(unet: StyleUNet) -> bool:
    """Whether every gradient ``unet``'s parameters hold after a backward pass is finite."""
    grads = [p.grad for p in unet.parameters() if p.grad is not None]
    return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def _non_finite_term(values: dict[str, float], grads_finite: bool) -> str | None:
    """The first loss term (or ``"gradient"``) that is NaN or infinite after a backward pass, else None."""
    for name in (*TERM_NAMES, "total"):
        if name in values and not math.isfinite(values[name]):
            return name
    return None if grads_finite else "gradient"


REJECTION_CHECK_STEPS = 3
"""Steps after which the patch rejection is checked (`_warn_if_rejection_is_total`)."""


def _warn_if_rejection_is_total(history: list[dict[str, float]], config: StyleConfig) -> None:
    """Warn when the threshold rejects (almost) every crop from the start: the patch loss then gives
    (almost) no gradient. CLIPstyler's 0.7 was tuned on CLIP ViT-B/32's cosine distances (at the
    start no crop follows the text yet, scores sit near 1 and none is rejected); other encoders,
    SigLIP above all, spread 1 - cos differently, so 0.7 can mean something else there."""
    kept = [row["patch_kept"] for row in history if "patch_kept" in row]
    if not kept or config.lambda_patch == 0 or config.threshold == 0:
        return
    share = sum(kept) / len(kept)
    if share < 0.02:
        models = config.clip_model if isinstance(config.clip_model, str) else " + ".join(config.clip_model)
        warnings.warn(ClipstyleWarning(
            f"--threshold {config.threshold:g} rejected {100 * (1 - share):.0f} % of the crops in the first "
            f"{len(kept)} step(s) under {models}: the patch loss gives almost no gradient; 0.7 was tuned for "
            f"CLIP ViT-B/32, so lower --threshold for this encoder (0 turns rejection off)"), stacklevel=3)


def _adam_options(device: torch.device) -> dict[str, Any]:
    # The fused kernel is one launch per step on CUDA; on the CPU the default foreach path is as fast.
    return {"fused": True} if device.type == "cuda" else {}


def _path_or_none(source: Any) -> Optional[str]:
    if isinstance(source, (str, Path)):
        return str(source)
    return None


UNET_FORMAT = "clipstyle_opt.unet.model/1"


def save_unet(unet: StyleUNet, path: str | Path, metadata: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Save U-Net weights with the metadata of the run that trained them (atomic, no overwrite by default)."""
    path = check_output_file(path, overwrite, create_dirs=True)
    payload = {"format": UNET_FORMAT, "width": unet.width,
               "state_dict": {k: v.detach().cpu() for k, v in unet.state_dict().items()}, "metadata": metadata}
    buffer = io.BytesIO()  # serialized in memory, so a failing disk write is a plain OSError
    torch.save(payload, buffer)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
    return path


def load_unet(path: str | Path) -> tuple[StyleUNet, dict[str, Any]]:
    """A U-Net saved by `save_unet`, in eval mode, with its metadata.

    Never runs code from the file: it is read with ``torch.load(weights_only=True)``,
    which admits tensors and plain containers only. A missing, empty, corrupt or
    foreign file, or one from another format version, raises a one-line `ImageReadError`.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"U-Net file not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"expected a U-Net file, got a directory: {path}")
    if path.stat().st_size == 0:
        raise ImageReadError(f"U-Net file is empty (0 bytes): {path}")
    try:
        with warnings.catch_warnings():  # torch's notes on unusual pickle protocols: the error below says it all
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError (code or foreign objects refused), RuntimeError (damaged zip), ...
        raise ImageReadError(f"not a clipstyle U-Net file, or a damaged one: {path} "
                             f"({type(exc).__name__}: {first_line(exc)[:120]})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("format"), str) \
            or not payload["format"].startswith("clipstyle_opt.unet.model/"):
        raise ImageReadError(f"not a clipstyle U-Net file: {path} (saved by `clipstyle stylize --save-unet`?)")
    if payload["format"] != UNET_FORMAT:
        raise ImageReadError(f"{path} is a U-Net of another clipstyle_opt version (format {payload['format']!r}); "
                             f"this version reads {UNET_FORMAT!r}: retrain it with this version or use the one that "
                             "saved it")
    try:
        unet = StyleUNet(int(payload["width"]))
        unet.load_state_dict(payload["state_dict"])
    except Exception as exc:  # missing keys, wrong shapes, a bad width
        raise ImageReadError(f"the U-Net in {path} does not fit this version's network "
                             f"({type(exc).__name__}: {first_line(exc)[:120]})") from None
    metadata = payload.get("metadata", {})
    return unet.eval(), metadata if isinstance(metadata, dict) else {}




def apply_unet_file(unet_path: str | Path, content: ImageSource, *, output_size: int | None = None,
                    max_output_size: int | None = None, output_scale: float | None = None, device: str = "auto",
                    tile_size: int = DEFAULT_TILE_SIZE, stats: StatsMode = "thumbnail") -> torch.Tensor:
    """Restyle ``content`` with a saved U-Net; returns (1, 3, H, W) in [0, 1] on the CPU.

    Output size: the content's own by default (no cap), else ``output_size`` (long side, px)
    or ``output_scale`` (times each side), at most ``max_output_size`` on the long side
    (`clipstyle_opt.unet.restyle.target_hw`). Images larger than ``tile_size`` are applied tile by
    tile (`clipstyle_opt.unet.tiling`); for bounded memory on files use `clipstyle_opt.unet.restyle.Restyler`.
    An output no larger than the training size saved with the U-Net is rendered on that grid and
    resized (`clipstyle_opt.unet.restyle.render_hw`), so the photo it was trained on comes out as trained.
    """
    from .unet.restyle import OutputSize, target_hw, training_size_of

    unet, metadata = load_unet(unet_path)
    torch_device = resolve_device(device)
    image = load_image(content, "photo")
    check_min_size(*image.shape[-2:], "photo")
    hw = target_hw(*image.shape[-2:], OutputSize(output_size, output_scale, max_output_size))
    grid_hw = render_hw(*image.shape[-2:], hw, training_size_of(metadata))
    styled = apply_tiled(unet, resize(image, grid_hw), tile_size=tile_size, stats=stats, device=torch_device)
    return resize(styled, hw)


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
