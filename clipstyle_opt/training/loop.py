"""The optimization loop: every phase's steps, one kind of step behind one interface (`steps.TrainingStep`).

`TrainingRun` holds everything a loop carries from one step to the next (the phase and step reached, the
optimizer inside the phase's step, the early-stop rule, the crop generator), so a run can be advanced a few
steps at a time, paused, given more steps (`TrainingRun.plan`) and advanced again. `train` runs one to the end.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from ..config import clip_batch_for
from ..result import StepInfo
from .guards import (
    REJECTION_CHECK_STEPS,
    KeptWeights,
    NonFiniteStep,
    non_finite_term,
    warn_if_rejection_is_total,
)
from .keyframes import KeyframeStep
from .phases import Phase, draw_crops
from .steps import TrainingStep, make_step, resolve_kind, step_lr
from .stopping import EarlyStop


@dataclass
class Trained:
    """What the loop gives back: one history row per step (loss terms, total, lr, seconds), ``extra`` for the
    `Result` (``status``/``early_stopped`` and ``steps_done`` when the run ended early), each step's seconds."""

    history: list[dict[str, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    step_seconds: list[float] = field(default_factory=list)


class TrainingRun:
    """One run of ``unet`` (on ``device``) through ``phases`` in order, each with a fresh optimizer, that can be
    advanced in pieces.

    step_kind: "auto", "plain", "reference" or "captured" (`steps.resolve_kind`, per phase); generator: draws
    every step's crops. Advancing S steps, then K more, computes exactly what advancing S + K steps at once
    does: the same crops (one generator), the same Adam moments (one step object per phase), the same learning
    rates (`step_lr` depends on the step within the phase only). `plan` lengthens the last phase, as if it had
    been given more ``steps`` from the start.
    """

    def __init__(self, unet: nn.Module, phases: Sequence[Phase], *, step_kind: str, device: torch.device,
                 generator: torch.Generator) -> None:
        self.unet, self.phases, self.step_kind = unet, list(phases), step_kind
        self.device, self.generator = device, generator
        self.trained = Trained()
        self.kept = KeptWeights(unet)
        self.step = 0
        """Steps done so far, all phases counted."""
        self.early_stopped = False
        self._phase_index = 0
        self._phase_step = 0
        self._trainer: TrainingStep | None = None
        self._stopper: EarlyStop | None = None
        self.warn_stacklevel = 4
        """``stacklevel`` of the patch-rejection warning: 4 points at the caller of whatever called `advance`."""

    @property
    def total_steps(self) -> int:
        """Steps of all phases, as planned now (`plan` changes it)."""
        return sum(phase.config.steps for phase in self.phases)

    @property
    def finished(self) -> bool:
        """Whether every planned step ran, or the early-stop rule ended the run."""
        return self.early_stopped or self.step >= self.total_steps

    def plan(self, total: int) -> None:
        """Plan ``total`` steps in all (no fewer than those done, nor than the phases before the last hold) by
        lengthening or shortening the last phase, as if it had been given that many ``steps`` from the start:
        its learning-rate schedule does not depend on its length. An early-stopped run resumes with its rule's
        state as it was."""
        before = sum(phase.config.steps for phase in self.phases[:-1])
        if total < max(self.step, before + 1):
            raise ValueError(f"cannot plan {total} steps: {self.step} are done and the last phase needs one")
        last = self.phases[-1]
        self.phases[-1] = replace(last, config=last.config.replace(steps=total - before))
        self.early_stopped = False
        self.trained.extra = {}

    def _enter_phase(self) -> Phase:
        phase = self.phases[self._phase_index]
        pconfig = phase.config
        kind = resolve_kind(self.step_kind, pconfig, self.device, phase.objective)
        # a fresh optimizer per phase: the coarse phase's moments are for other activations' scale
        if phase.keyframes:  # a video's keyframes: the crops split over the frames (training.keyframes)
            self._trainer = KeyframeStep(self.unet, phase.keyframes, pconfig.lr, self.device, self.kept,
                                         clip_batch_for(pconfig, self.device.type))
        else:
            self._trainer = make_step(kind, self.unet, phase.objective, phase.content, pconfig, self.device,
                                      self.kept)
        self._stopper = EarlyStop(pconfig.early_stop, pconfig.early_stop_delta) if pconfig.early_stop else None
        return phase

    def advance(self, until: int | None = None, *, callback: Callable[[StepInfo], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> Trained:
        """Run steps until ``until`` steps are done in all (None: the planned total), the early-stop rule ends
        the run, or ``should_stop`` (asked after every step but the run's last) returns True, which marks
        ``extra`` as interrupted. Returns the `Trained` record of the whole run so far.

        Raises `NonFiniteStep` when a loss term or a gradient becomes NaN or infinite, with ``unet`` put back
        to the weights whose output the previous step evaluated, when there was one.
        """
        trained = self.trained
        history = trained.history
        total_steps = self.total_steps
        until = total_steps if until is None else min(until, total_steps)
        self.unet.train()
        while self.step < until and not self.early_stopped:
            phase = self.phases[self._phase_index]
            if self._phase_step >= phase.config.steps:  # this phase is done: the next one
                self._phase_index += 1
                self._phase_step = 0
                self._trainer = None
                continue
            if self._trainer is None:
                phase = self._enter_phase()
            pconfig = phase.config
            self._phase_step += 1
            phase_step = self._phase_step
            self.step += 1
            step = self.step
            step_started = time.perf_counter()
            params = draw_crops(pconfig, phase.hw, self.generator, phase.crop_masks)
            lr = step_lr(pconfig.lr, pconfig.lr_decay, pconfig.lr_decay_every, phase_step)
            values, grads_finite, output = self._trainer.step(params, lr)
            bad = non_finite_term(values, grads_finite)
            if bad is not None:
                fallback = self._trainer.fallback_state()
                if fallback is not None:
                    self.unet.load_state_dict(fallback)
                raise NonFiniteStep(bad, step, total_steps, fallback is not None, history)
            seconds = time.perf_counter() - step_started
            trained.step_seconds.append(seconds)
            history.append({"step": step, **values, "lr": lr, "seconds": seconds})
            if phase_step == min(REJECTION_CHECK_STEPS, pconfig.steps):
                warn_if_rejection_is_total(history[-phase_step:], pconfig, stacklevel=self.warn_stacklevel)
            if callback is not None:  # some steps reuse the output's buffer in the next step
                callback(StepInfo(step, total_steps, values, lr, seconds, output.detach().clone()))
            if should_stop is not None and step < total_steps and should_stop():
                trained.extra = {"status": "interrupted", "steps_done": step}
                return trained
            if self._stopper is not None and phase_step < pconfig.steps and self._stopper.update(values[
                    "patch" if pconfig.lambda_patch > 0 else "total"]):
                trained.extra = {"early_stopped": True, "steps_done": step}
                self.early_stopped = True
        if self.step < total_steps and not self.early_stopped:
            trained.extra = {"status": "paused", "steps_done": self.step}
        elif not self.early_stopped:
            trained.extra = {}
        return trained


def train(unet: nn.Module, phases: Sequence[Phase], *, step_kind: str, device: torch.device,
          generator: torch.Generator, callback: Callable[[StepInfo], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> Trained:
    """Train ``unet`` (on ``device``) through ``phases`` in order, each with a fresh optimizer: a `TrainingRun`
    advanced to its end (or until ``should_stop``). Raises `NonFiniteStep` as `TrainingRun.advance` says."""
    return TrainingRun(unet, phases, step_kind=step_kind, device=device, generator=generator).advance(
        callback=callback, should_stop=should_stop)


__all__ = ["Trained", "TrainingRun", "train"]
