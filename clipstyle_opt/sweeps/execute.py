"""One run of a sweep on a loaded `Stylizer`: what the local runner and the Ray workers both call.

The outcome is plain data (8-bit pixels, metadata, numbers), so it travels
from a Ray worker to the process that writes the sweep directory.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..config import StyleConfig
from ..config import ENCODER_KEYS
from ..engine import Stylizer
from ..errors import ClipstyleError, NonFiniteLossError, first_line
from ..imageio import ImageSource, load_image, to_pil
from ..objective.style_objective import TERM_NAMES
from .columns import RUN_TIMINGS
from .spec import Run


@dataclass
class EvalSettings:
    """``--eval``: which metrics, under which CLIP (None: each run's own training encoder), at what size (px)."""

    metrics: tuple[str, ...] = ()
    clip_model: Optional[str] = None
    size: Optional[int] = 512
    seed: int = 0

    def __post_init__(self) -> None:
        from ..evaluate import METRICS, check_metrics

        self.metrics = check_metrics(self.metrics) if self.metrics else METRICS


@dataclass
class Outcome:
    """What one run produced. status: ``ok``, ``failed`` or ``interrupted`` (stopped by a signal, not recorded)."""

    status: str
    pixels: Optional[np.ndarray] = None
    """HxWx3 uint8, the image as it is saved."""
    metadata: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    """Final loss terms (``loss_*``), timings and eval metrics: the run's numbers for its result row."""
    error: str = ""
    traceback: str = ""


def encoder_key(config: StyleConfig) -> str:
    """Runs with the same key can share one `Stylizer` (the settings that need other loaded encoders)."""
    import json

    data = config.to_dict()
    return json.dumps({k: data[k] for k in ENCODER_KEYS}, sort_keys=True)


def make_stylizer(config: StyleConfig) -> Stylizer:
    """A `Stylizer` for ``config`` (loads its encoders); a seam the runners and tests share."""
    return Stylizer(config)


def make_evaluator(settings: EvalSettings, stylizer: Stylizer) -> Any:
    """An `Evaluator` that borrows the stylizer's CLIP when it scores with the training encoder."""
    from ..evaluate import Evaluator

    config = stylizer.config
    same = settings.clip_model is None or settings.clip_model == config.clip_model
    clip_model = config.clip_model if settings.clip_model is None else settings.clip_model
    if isinstance(clip_model, tuple):
        clip_model = list(clip_model)
    clip = [encoder for encoder, _ in stylizer.encoders] if same else None
    return Evaluator(clip_model=clip_model, device=str(stylizer.device), metrics=settings.metrics,
                     seed=settings.seed, size=settings.size, clip=clip)


def _overrides(config: StyleConfig) -> dict[str, Any]:
    return {k: v for k, v in config.to_dict().items() if k not in ENCODER_KEYS}


def execute_run(stylizer: Stylizer, run: Run, *, evaluator: Any = None, content: ImageSource | None = None,
                style_image: ImageSource | None = None, should_stop: Callable[[], bool] | None = None) -> Outcome:
    """Stylize one run (and score it with ``evaluator``); every error becomes a ``failed`` outcome.

    content / style_image: the decoded images, if the caller has them (a Ray worker gets them from the
    driver, whose files it may not see); else the run's paths are read. KeyboardInterrupt propagates.
    """
    started = time.perf_counter()
    try:
        result = stylizer.stylize(content if content is not None else run.content, run.prompt,
                                  style_image=style_image if style_image is not None else run.style_image,
                                  should_stop=should_stop, **_overrides(run.config))
        if result.extra.get("status") == "interrupted":
            return Outcome("interrupted")
        pixels = np.asarray(to_pil(result.tensor))
        metadata = result.metadata()
        metadata["content"] = run.content
        metadata["style_image"] = run.style_image
        values: dict[str, Any] = {}
        last = result.history[-1] if result.history else {}
        for term in (*TERM_NAMES, "total"):
            if term in last:
                values[f"loss_{term}"] = float(last[term])
        if "patch_kept" in last:
            values["patch_kept"] = float(last["patch_kept"])
        values.update({k: result.timings[k] for k in RUN_TIMINGS if k in result.timings})
        if evaluator is not None:
            eval_started = time.perf_counter()
            output = load_image(to_pil(result.tensor))  # scored as saved (8-bit), as `clipstyle eval` reads it
            photo = load_image(content if content is not None else run.content, "photo")
            values.update(evaluator.score(output, photo, run.prompt, run.config.source_text,
                                          content_key=run.content))
            values["eval_s"] = round(time.perf_counter() - eval_started, 3)
        values["run_s"] = round(time.perf_counter() - started, 3)
        return Outcome("ok", pixels, metadata, values)
    except KeyboardInterrupt:
        raise
    except NonFiniteLossError as exc:
        return Outcome("failed", error=first_line(exc), traceback=traceback.format_exc())
    except ClipstyleError as exc:
        return Outcome("failed", error=first_line(exc), traceback=traceback.format_exc())
    except Exception as exc:  # a bug or an environment failure: recorded, the sweep goes on
        return Outcome("failed", error=f"{type(exc).__name__}: {first_line(exc)}", traceback=traceback.format_exc())


def as_tensor(image: ImageSource) -> torch.Tensor:
    return load_image(image)


__all__ = ["Outcome", "EvalSettings", "execute_run", "encoder_key", "make_stylizer", "make_evaluator"]
