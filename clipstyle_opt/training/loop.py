"""The optimization loop: every phase's steps, one kind of step behind one interface (`steps.TrainingStep`)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..result import StepInfo
from .guards import REJECTION_CHECK_STEPS, KeptWeights, NonFiniteStep, non_finite_term, warn_if_rejection_is_total
from ..config import clip_batch_for
from .keyframes import KeyframeStep
from .phases import Phase, draw_crops
from .steps import make_step, resolve_kind, step_lr
from .stopping import EarlyStop


@dataclass
class Trained:
    """What the loop gives back: one history row per step (loss terms, total, lr, seconds), ``extra`` for the
    `Result` (``status``/``early_stopped`` and ``steps_done`` when the run ended early), each step's seconds."""

    history: list[dict[str, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    step_seconds: list[float] = field(default_factory=list)


def train(unet: nn.Module, phases: Sequence[Phase], *, step_kind: str, device: torch.device,
          generator: torch.Generator, callback: Callable[[StepInfo], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> Trained:
    """Train ``unet`` (on ``device``) through ``phases`` in order, each with a fresh optimizer.

    step_kind: "auto", "plain", "reference" or "captured" (`steps.resolve_kind`, per phase); generator: draws
    every step's crops. Raises `NonFiniteStep` when a loss term or a gradient becomes NaN or infinite,
    with ``unet`` put back to the weights whose output the previous step evaluated, when there was one.
    """
    trained = Trained()
    history = trained.history
    kept = KeptWeights(unet)
    total_steps = sum(phase.config.steps for phase in phases)
    step = 0
    unet.train()
    for phase in phases:
        pconfig = phase.config
        kind = resolve_kind(step_kind, pconfig, device, phase.objective)
        # a fresh optimizer per phase: the coarse phase's moments are for other activations' scale
        trainer = make_step(kind, unet, phase.objective, phase.content, pconfig, device, kept) \
            if not phase.keyframes else KeyframeStep(unet, phase.keyframes, pconfig.lr, device, kept,
                                                     clip_batch_for(pconfig, device.type))
        stopper = EarlyStop(pconfig.early_stop, pconfig.early_stop_delta) if pconfig.early_stop else None
        watched = "patch" if pconfig.lambda_patch > 0 else "total"
        for phase_step in range(1, pconfig.steps + 1):
            step += 1
            step_started = time.perf_counter()
            params = draw_crops(pconfig, phase.hw, generator, phase.crop_masks)
            lr = step_lr(pconfig.lr, pconfig.lr_decay, pconfig.lr_decay_every, phase_step)
            values, grads_finite, output = trainer.step(params, lr)
            bad = non_finite_term(values, grads_finite)
            if bad is not None:
                fallback = trainer.fallback_state()
                if fallback is not None:
                    unet.load_state_dict(fallback)
                raise NonFiniteStep(bad, step, total_steps, fallback is not None, history)
            seconds = time.perf_counter() - step_started
            trained.step_seconds.append(seconds)
            history.append({"step": step, **values, "lr": lr, "seconds": seconds})
            if phase_step == min(REJECTION_CHECK_STEPS, pconfig.steps):
                # the warning points at the caller of Stylizer._stylize, as it did when this loop lived there
                warn_if_rejection_is_total(history[-phase_step:], pconfig, stacklevel=4)
            if callback is not None:  # some steps reuse the output's buffer in the next step
                callback(StepInfo(step, total_steps, values, lr, seconds, output.detach().clone()))
            if should_stop is not None and step < total_steps and should_stop():
                trained.extra = {"status": "interrupted", "steps_done": step}
                return trained
            if stopper is not None and phase_step < pconfig.steps and stopper.update(values[watched]):
                trained.extra = {"early_stopped": True, "steps_done": step}
                break
    return trained


__all__ = ["Trained", "train"]
