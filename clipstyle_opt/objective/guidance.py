"""What a run is guided by: weighted prompts, weighted style images, masks, regions, a focus text.

A `Guidance` is everything about *what* to aim for and *where*, apart from the
knobs of `StyleConfig` (how hard, how long). It validates its inputs with
one-line errors (`ConfigError`, exit 2) before any model loads, normalizes every
group of weights to sum 1, and gives a short label and a metadata dict for
sidecars and reports.

Weights (crowsonkb's ``style_weights`` idea): each must be a finite number
>= 0 and their sum must be > 0; they are divided by their sum. Prompts and
style images weigh separately; how much of the CLIP guidance goes to the
style images rather than the prompts is `StyleConfig.style_image_clip`.

Fusion of several prompts (`StyleConfig.fusion`), with normalized weights
w_k, style texts t_k and source text s (every embedding L2-normalized, as in
`clipstyle_opt.objective.losses`):

- ``loss``: L = sum_k w_k * L(dT_k) with dT_k = norm(E_T(t_k) - E_T(s)), for
  the global directional loss and the patch loss alike (each prompt's own
  threshold rejection). Each prompt keeps its own direction; the image is
  pulled toward all of them.
- ``embedding``: one direction dT = norm(norm(sum_k w_k E_T(t_k)) - E_T(s)),
  i.e. the weighted mean of the prompts' embeddings taken as one prompt.
  Cheaper, and the rejection sees one direction; the mix can land on a point
  of CLIP space that neither prompt describes alone.

One prompt gives exactly today's direction in both modes.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

from ..config import FUSIONS
from ..encoders.prompts import check_text
from ..errors import ConfigError

PromptSpec = Union[str, Sequence[Union[str, tuple[str, float]]]]
"""A prompt, a list of prompts (equal weights) or a list of (prompt, weight) pairs."""

GUIDANCE_KEYWORDS: tuple[str, ...] = ("weights", "style_weights", "mask", "regions", "focus", "focus_threshold",
                                      "focus_invert", "fusion")
"""The keywords that say what a run aims at and where, besides the prompt and the style images: `make_guidance`'s
and `Stylizer.stylize`'s. ``fusion`` is also a `StyleConfig` setting, which is where ``stylize`` keeps it."""


@dataclass(frozen=True)
class WeightedText:
    """One prompt and its normalized weight in [0, 1]."""

    text: str
    weight: float


@dataclass(frozen=True)
class WeightedImage:
    """One style image (path, PIL image, array or tensor) and its normalized weight in [0, 1]."""

    source: Any
    weight: float

    @property
    def path(self) -> str | None:
        """The image's file path, or None when it was given as a PIL image or tensor."""
        return str(self.source) if isinstance(self.source, (str, os.PathLike)) else None


@dataclass(frozen=True)
class Region:
    """A mask (white = stylize here) with its own prompts and crops."""

    mask: Any
    texts: tuple[WeightedText, ...]


def parse_weights(text: str | Sequence[Any] | None, what: str = "--weights") -> tuple[float, ...] | None:
    """``"0.7,0.3"`` (or a list of numbers) -> floats, unnormalized; None stays None. One-line error otherwise."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    values = []
    for part in parts:
        if isinstance(part, bool):
            raise ConfigError(f"{what}: {part!r} is not a number")
        try:
            values.append(float(part))
        except (TypeError, ValueError):
            raise ConfigError(f"{what}: {part!r} is not a number") from None
    return tuple(values)


def normalize_weights(weights: Sequence[float], what: str = "--weights") -> tuple[float, ...]:
    """Weights divided by their sum; each must be finite and >= 0, and the sum > 0 (one-line `ConfigError`)."""
    values = parse_weights(list(weights), what) or ()
    for value in values:
        if not math.isfinite(value):
            raise ConfigError(f"{what}: weights must be finite numbers, got {value}")
        if value < 0:
            raise ConfigError(f"{what}: weights must be >= 0, got {value:g}")
    total = sum(values)
    if not values or total <= 0:
        raise ConfigError(f"{what}: the weights must have a positive sum, got {', '.join(f'{v:g}' for v in values)}")
    return tuple(value / total for value in values)


def _count_error(what: str, n_weights: int, n_items: int, items: str) -> ConfigError:
    return ConfigError(f"{what}: {n_weights} weight(s) for {n_items} {items}; give one weight per {items[:-1]}")


def weighted_texts(prompts: PromptSpec, weights: Sequence[float] | str | None = None,
                   what: str = "--weights") -> tuple[WeightedText, ...]:
    """Prompts with normalized weights. ``prompts``: one text, a list of texts (equal weights unless
    ``weights``), or (text, weight) pairs. Every text is checked as `check_text` does."""
    if isinstance(prompts, str):
        items: list[Any] = [prompts]
    elif isinstance(prompts, Sequence):
        items = list(prompts)
    else:
        raise ConfigError(f"the prompt must be a text or a list of texts, got {type(prompts).__name__}")
    if not items:
        raise ConfigError("give at least one prompt")
    pairs = [isinstance(item, (tuple, list)) for item in items]
    if any(pairs):
        if not all(pairs) or any(len(item) != 2 for item in items):
            raise ConfigError("prompts: give either texts or (text, weight) pairs, not a mix")
        if weights is not None:
            raise ConfigError(f"{what}: the prompts already carry their weights")
        texts, raw = [item[0] for item in items], [item[1] for item in items]
    else:
        texts = items
        raw = list(parse_weights(weights, what)) if weights is not None else [1.0] * len(texts)
        if len(raw) != len(texts):
            raise _count_error(what, len(raw), len(texts), "prompts")
    normalized = normalize_weights(raw, what)
    for index, text in enumerate(texts):
        check_text(text, "the prompt" if len(texts) == 1 else f"prompt {index + 1}")
    return tuple(WeightedText(text, weight) for text, weight in zip(texts, normalized))


def weighted_images(images: Any, weights: Sequence[float] | str | None = None,
                    what: str = "--style-weights") -> tuple[WeightedImage, ...]:
    """Style images (None, one, or a list) with normalized weights (equal unless ``weights``)."""
    if images is None:
        if weights is not None and len(parse_weights(weights, what) or ()):
            raise ConfigError(f"{what} given without --style-image")
        return ()
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        return ()
    raw = list(parse_weights(weights, what)) if weights is not None else [1.0] * len(items)
    if len(raw) != len(items):
        raise _count_error(what, len(raw), len(items), "style images")
    return tuple(WeightedImage(item, weight) for item, weight in zip(items, normalize_weights(raw, what)))


def file_digest(source: Any) -> str | None:
    """sha256 (first 16 hex digits) of a file source, else None (in-memory images)."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    try:
        return hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16]
    except OSError:
        return None


@dataclass(frozen=True)
class Guidance:
    """Everything a run aims at and where.

    texts: prompts with normalized weights (at least one).
    images: style images for the Gram loss, normalized weights; with
        ``StyleConfig.style_image_clip`` > 0 they also guide through CLIP.
    mask: white = stylize, black = keep (any size; soft edges allowed).
    regions: masks each with their own prompts (instead of ``texts`` for the CLIP losses).
    focus: a text; its relevance map over the photo becomes the mask
        (`clipstyle_opt.objective.relevance`), soft or cut at ``focus_threshold`` in [0, 1],
        inverted with ``focus_invert``.
    """

    texts: tuple[WeightedText, ...]
    images: tuple[WeightedImage, ...] = ()
    mask: Any = None
    regions: tuple[Region, ...] = ()
    focus: str | None = None
    focus_threshold: float | None = None
    focus_invert: bool = False
    fusion: str = "loss"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.texts:
            raise ConfigError("give at least one prompt")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}", "fusion")
        where = [name for name, given in (("--mask", self.mask is not None), ("--region", bool(self.regions)),
                                          ("--focus", self.focus is not None)) if given]
        if len(where) > 1:
            raise ConfigError(f"{' and '.join(where)} both say where the style goes; give only one")
        if self.focus is not None:
            check_text(self.focus, "--focus")
        if self.focus_threshold is not None and not (
                isinstance(self.focus_threshold, (int, float)) and 0 <= self.focus_threshold <= 1):
            raise ConfigError(f"--focus-threshold must be in [0, 1], got {self.focus_threshold!r}")
        if self.focus is None and (self.focus_threshold is not None or self.focus_invert):
            raise ConfigError("--focus-threshold and --focus-invert need --focus")

    @property
    def is_single(self) -> bool:
        """One prompt, no masks: the reference run (style images aside)."""
        return len(self.texts) == 1 and not self.regions and self.mask is None and self.focus is None

    @property
    def prompt(self) -> str:
        """The first prompt (the only one in a single-prompt run)."""
        return self.texts[0].text

    def label(self) -> str:
        """Short human label: the prompt alone, or ``red stripes 0.8 + blue dots 0.2 (loss)``; regions after ``|``."""
        def texts_label(texts: Sequence[WeightedText]) -> str:
            if len(texts) == 1:
                return texts[0].text
            return " + ".join(f"{t.text} {t.weight:.3g}" for t in texts) + f" ({self.fusion})"

        if self.regions:
            return " | ".join(texts_label(region.texts) for region in self.regions)
        return texts_label(self.texts)

    def all_texts(self) -> list[WeightedText]:
        """Every prompt (with regions: theirs, regions equally weighted)."""
        return list(self.texts)

    def metadata(self) -> dict[str, Any]:
        """What goes into PNG chunks and the sidecar (paths and sha256 prefixes of mask and image files)."""
        if self.is_single and not self.images:
            return {}
        out: dict[str, Any] = {"prompts": [{"text": t.text, "weight": t.weight} for t in self.texts],
                               "fusion": self.fusion, "guidance": self.label()}
        if self.images:
            out["style_images"] = [{"path": i.path, "sha256": file_digest(i.source), "weight": i.weight}
                                   for i in self.images]
        if self.mask is not None:
            out["mask"] = {"path": _path(self.mask), "sha256": file_digest(self.mask)}
        if self.regions:
            out["regions"] = [{"mask": _path(r.mask), "sha256": file_digest(r.mask),
                               "prompts": [{"text": t.text, "weight": t.weight} for t in r.texts]}
                              for r in self.regions]
        if self.focus is not None:
            out["focus"] = {"text": self.focus, "threshold": self.focus_threshold, "invert": self.focus_invert}
        out.update(self.extra)
        return out


def _path(source: Any) -> str | None:
    return str(source) if isinstance(source, (str, os.PathLike)) else None


def make_guidance(prompt: PromptSpec | Guidance | None, *, weights: Sequence[float] | str | None = None,
                  style_image: Any = None, style_weights: Sequence[float] | str | None = None,
                  mask: Any = None, regions: Sequence[tuple[Any, PromptSpec]] = (), focus: str | None = None,
                  focus_threshold: float | None = None, focus_invert: bool = False,
                  fusion: str = "loss") -> Guidance:
    """A validated `Guidance` from the Python API's or the command line's arguments (a `Guidance` passes through)."""
    if isinstance(prompt, Guidance):
        return prompt
    region_list = tuple(Region(region_mask, weighted_texts(region_prompt, None, "--region"))
                        for region_mask, region_prompt in regions)
    if region_list and prompt is not None and (isinstance(prompt, str) or len(prompt)):
        raise ConfigError("with regions each prompt goes with its mask; give no other prompt")
    if region_list:  # the run's prompts are the regions' (equally weighted regions)
        share = 1.0 / len(region_list)
        texts = tuple(WeightedText(t.text, share * t.weight) for r in region_list for t in r.texts)
    else:
        texts = weighted_texts(prompt, weights)
    return Guidance(texts, weighted_images(style_image, style_weights), mask, region_list, focus,
                    focus_threshold, focus_invert, fusion)


__all__ = ["FUSIONS", "GUIDANCE_KEYWORDS", "Guidance", "Region", "WeightedImage", "WeightedText", "make_guidance",
           "normalize_weights", "parse_weights", "weighted_images", "weighted_texts", "file_digest"]
