"""`StyleRun`: a stylization that trains in pieces, and `RunSetup`, what a run fixes before its loop.

`clipstyle_opt.engine.Stylizer.start` makes a `StyleRun`; `Stylizer.stylize` advances one to its end. The
run reaches its stylizer only through the instance it is given (to render a `Result` and to name the
settings to lower when memory runs out), so this module sits below the engine and never imports it.
"""
from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .config import StyleConfig
from .devices import torch_threads
from .errors import ConfigError
from .imageio import ImageSource
from .objective.guidance import Guidance
from .result import Result, StepInfo
from .training.guards import NonFiniteStep
from .training.loop import TrainingRun
from .unet.model import StyleUNet


@dataclass
class RunSetup:
    """What one `Stylizer.stylize` or `Stylizer.start` call fixes before its loop: enough to turn any U-Net
    into a `Result`."""

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
    """(1, 1, h, w) relevance map of the focus text at the training size (None: no focus)."""
    start: dict[str, Any] = field(default_factory=dict)
    """What the U-Net started from, for the result's metadata (`clipstyle_opt.unet.start`; empty for the
    paper's random start)."""



class StyleRun:
    """A stylization that trains in pieces (`Stylizer.start`): advance it, stop it, continue it, and take a
    `Result` at any step while it can still go on.

    Advancing S steps, stopping, then continuing K (`continue_for`) gives, bit for bit, the U-Net of
    one run of S + K steps with the same settings and seed (`clipstyle_opt.training.loop.TrainingRun`).
    """

    def __init__(self, stylizer: Any, run: RunSetup, unet: StyleUNet, training: TrainingRun) -> None:
        """stylizer: the `clipstyle_opt.engine.Stylizer` that started the run (typed ``Any``: this module sits
        below the engine and may not import it, not even for annotations)."""
        self.stylizer, self._run, self.unet, self.training = stylizer, run, unet, training
        self._train_seconds = 0.0

    @property
    def step(self) -> int:
        """Steps done so far (a coarse phase's first)."""
        return self.training.step

    @property
    def total_steps(self) -> int:
        """Steps planned (``coarse_steps + steps``, as `continue_for` changes it)."""
        return self.training.total_steps

    @property
    def focus_map(self) -> torch.Tensor | None:
        """The focus text's relevance map, (1, 1, h, w) in [0, 1] at the training size, known once the run is
        started (None without a focus)."""
        return self._run.focus_map

    @property
    def finished(self) -> bool:
        """Every planned step ran, or the early-stop rule ended the run."""
        return self.training.finished

    def advance(self, steps: int | None = None, *, callback: Callable[[StepInfo], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> None:
        """Train ``steps`` more steps (None: to the planned end), or until ``should_stop`` returns True (asked
        after every step, as `Stylizer.stylize` asks it). Raises what `Stylizer.stylize` raises: a NaN gives a
        `NonFiniteLossError` carrying the last good `Result`, running out of memory an `OutOfMemoryError`."""
        until = None if steps is None else self.training.step + steps
        started = time.perf_counter()
        try:
            with self.stylizer._out_of_memory(self._run.config), torch_threads(self._run.config.threads):
                self.training.advance(until, callback=callback, should_stop=should_stop)
        except NonFiniteStep as failure:  # the U-Net holds the last good weights, if there were any
            result = self.stylizer._finish(self._run, self.unet, failure.history[:failure.step - 1],
                                           failure.extra()) if failure.restored else None
            raise failure.error(result) from None
        finally:
            self._train_seconds += time.perf_counter() - started

    def continue_for(self, steps: int, *, callback: Callable[[StepInfo], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> None:
        """"Continue N steps": plan ``steps`` (>= 1) more than those done (the result's ``steps`` setting
        becomes their sum) and advance to there. Stopped at S, continued K: the run of S + K steps."""
        if steps < 1:
            raise ConfigError(f"continue for at least 1 step, got {steps}")
        self.plan(self.training.step + steps)
        self.advance(callback=callback, should_stop=should_stop)

    def interrupt(self) -> None:
        """Mark the run stopped between two steps (a stop asked for while no step ran), as ``should_stop`` marks
        one stopped after a step: its result says "interrupted" until it is continued."""
        if not self.finished:
            self.training.trained.extra = {"status": "interrupted", "steps_done": self.training.step}

    def plan(self, total: int) -> None:
        """Plan ``total`` steps in all (at least those done), lengthening the final phase; the result's ``steps``
        setting follows. `continue_for` is ``plan(step + K)`` then `advance`."""
        try:
            self.training.plan(total)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._run.config = self._run.config.replace(steps=self.training.phases[-1].config.steps)

    def result(self, *, keep_training: bool = True) -> Result:
        """The `Result` of the steps done so far (``extra["status"]`` is "interrupted" after a stop and
        "paused" before the planned end). keep_training: render a copy of the U-Net, so this run can go on
        (False hands over the run's own U-Net, as `Stylizer.stylize` does)."""
        trained = self.training.trained
        extra = dict(trained.extra)
        extra.update(self._run.start)  # what the U-Net started from (nothing for the paper's random start)
        timings = self._run.timings
        if self._run.config.coarse_steps:
            extra["coarse_steps"] = self._run.config.coarse_steps
        timings["train_s"] = round(self._train_seconds, 3)
        timings["step_median_s"] = round(statistics.median(trained.step_seconds), 4) if trained.step_seconds else 0.0
        unet = copy.deepcopy(self.unet) if keep_training else self.unet
        with torch_threads(self._run.config.threads):  # the render, and the count the result records
            return self.stylizer._finish(self._run, unet, list(trained.history), extra)


__all__ = ["RunSetup", "StyleRun"]
