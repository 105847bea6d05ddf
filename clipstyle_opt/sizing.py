"""Image sizes, one rule each: the training size, the output size, and the grid the U-Net renders on.

Training size (`training_hw`): the photo's long side becomes ``StyleConfig.size``,
both sides rounded to multiples of 8 (the U-Net's total stride).

Output size (`target_hw`), one rule for every surface (``stylize`` through
`output_hw`, ``apply`` through `OutputSize`):

- default: the input's own size (no cap; the only limit is
  ``$CLIPSTYLE_MAX_PIXELS`` output pixels, default 200 M, the same guard as
  for reading, so memory is what bounds it);
- ``output_size=N``: long side N px, aspect kept;
- ``output_scale=F``: F times the input's width and height (0.5 = half);
- ``max_output_size=N``: at most N px on the long side (shrinks only; for
  ``stylize`` it applies only when ``output_size`` is None).

Where the U-Net runs (`render_hw`): an output no larger than the training size
(long side ``--size``) is rendered on the training grid, the photo resized to
its training size as in training, and the result resized to the output size.
Why: the U-Net is fitted to one photo on one pixel grid, and its stride-2
levels make it sensitive to the sampling phase. On chelsea.png at 256 px
(micro CLIP, 40 steps) the same weights scored LPIPS-VGG 0.40 on the training
grid, 0.54 to 0.57 on the photo shifted by 1, 2 or 4 px, and 0.44 shifted by 8
(the total stride); rendering at 170 instead of the training 168 rows gave
0.54, and the training-grid render resized to 170 rows 0.42. CLIPstyler itself
renders its training input. A larger output runs the U-Net at the output size
(tiled), where this costs some fidelity as well as pattern scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from .config import StyleConfig
from .errors import ConfigError, ImageReadError
from .imageio import MAX_PIXELS_ENV, MIN_SIDE, check_min_size, fit_size, max_pixels


def training_hw(height: int, width: int, config: StyleConfig, what: str = "photo") -> tuple[int, int]:
    """The training size of a ``height`` x ``width`` px image (long side ``config.size``, multiples of 8), checked.

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


@dataclass(frozen=True)
class OutputSize:
    """How big the output is (see the module docstring); at most one of ``size`` and ``scale``.

    size: long side in px (>= 8); scale: factor on each side (> 0); max_size: cap on the long side in px (>= 8).
    """

    size: Optional[int] = None
    scale: Optional[float] = None
    max_size: Optional[int] = None

    def __post_init__(self) -> None:
        if self.size is not None and self.scale is not None:
            raise ConfigError("give --output-size or --output-scale, not both")
        if self.size is not None and self.size < 8:
            raise ConfigError(f"--output-size must be >= 8 px, got {self.size}")
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"--output-scale must be a number > 0, got {self.scale}")
        if self.max_size is not None and self.max_size < 8:
            raise ConfigError(f"--max-output-size must be >= 8 px, got {self.max_size}")

    @classmethod
    def of(cls, config: StyleConfig) -> "OutputSize":
        """A `StyleConfig`'s output size: ``output_size``, else the content's own capped at ``max_output_size``."""
        return cls(config.output_size, None, config.max_output_size if config.output_size is None else None)


def _scaled_hw(height: int, width: int, size: OutputSize) -> tuple[int, int]:
    """The rule itself, unchecked: (height, width) in px for an input of ``height`` x ``width`` px."""
    long_side = max(height, width)
    if size.size is not None:
        scale = size.size / long_side
    elif size.scale is not None:
        scale = size.scale
    else:
        scale = 1.0
    if size.max_size is not None:
        scale = min(scale, size.max_size / long_side)
    return (height, width) if scale == 1.0 else (max(8, round(height * scale)), max(8, round(width * scale)))


def _over_limit(out: tuple[int, int], advice: str, field: Optional[str] = None) -> None:
    limit = max_pixels()
    if out[0] * out[1] > limit:
        raise ConfigError(f"the output would be {out[1]}x{out[0]} = {out[0] * out[1]:,} px, over the limit of "
                          f"{limit:,} px; {advice}, or set {MAX_PIXELS_ENV}", field)


def target_hw(height: int, width: int, size: OutputSize) -> tuple[int, int]:
    """The output (height, width) in px for an input of ``height`` x ``width`` px; refuses one over the pixel limit."""
    out = _scaled_hw(height, width, size)
    _over_limit(out, "lower --output-size or --output-scale")
    return out


def output_hw(height: int, width: int, config: StyleConfig) -> tuple[int, int]:
    """A stylization's final image size in px: ``output_size`` as long side, else the content's own size, capped at
    ``max_output_size`` when that is set (`target_hw`'s rule). Only a resized output is checked against the pixel
    limit (the content itself was read under it, or given in memory)."""
    out = _scaled_hw(height, width, OutputSize.of(config))
    if out != (height, width):
        _over_limit(out, "lower --output-size", "output_size")
    return out


def render_hw(height: int, width: int, out_hw: tuple[int, int], training_size: Optional[int]) -> tuple[int, int]:
    """Where to run the U-Net for an input of ``height`` x ``width`` px and an output of ``out_hw``.

    training_size: the long side in px the U-Net was trained at (``StyleConfig.size``; None: unknown).
    Returns the training grid (`fit_size` of the input at ``training_size``, multiples of 8) when the
    output's long side is at most ``training_size``, else ``out_hw`` itself (see the module docstring).
    """
    if training_size is not None and max(out_hw) <= training_size:
        return fit_size(height, width, training_size)
    return out_hw


__all__ = ["OutputSize", "output_hw", "render_hw", "target_hw", "training_hw"]
