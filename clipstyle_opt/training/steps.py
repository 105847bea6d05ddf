"""The kinds of training step behind one interface, and the one learning-rate schedule they all follow.

Every kind does the same thing: the U-Net forward on the phase's photo, the objective on one
step's crops, a backward pass, one Adam step at the rate it is given. They differ in how:

- ``plain``: the crops in batches, the backward chunked (`StyleObjective.backward`): the default.
- ``reference``: the crops one by one and one backward over everything (`StyleObjective.terms`),
  as the reference code does (``batched_crops=False``): for verification.
- ``captured``: one CUDA graph per phase (`clipstyle_opt.training.captured`); on any other
  device the same code runs uncaptured, which is how the CPU tests check what it computes.

``"auto"`` picks ``captured`` on CUDA with ``cuda_graph`` when the objective can be captured,
else ``plain`` (``reference`` whenever the crops are not batched): `resolve_kind`.
"""
from __future__ import annotations

from typing import Literal, Protocol

import torch
from torch import nn

from ..config import StyleConfig, clip_batch_for
from ..errors import ConfigError
from ..objective import augment
from ..objective.style_objective import StyleObjective
from .captured import CapturedStep, can_capture, captured_optimizer
from .guards import KeptWeights, grads_finite

#: The kinds of training step (see `STEP_KINDS`).
StepKind = Literal["auto", "plain", "reference", "captured"]
#: ``auto`` (captured on CUDA with ``--cuda-graph``, else plain), ``plain`` (chunked CLIP backward),
#: ``reference`` (the reference code's one-graph structure), ``captured`` (one CUDA graph).
STEP_KINDS: tuple[str, ...] = ("auto", "plain", "reference", "captured")


class TrainingStep(Protocol):
    """What the loop asks of every kind of step."""

    def step(self, params: augment.CropParams, lr: float) -> tuple[dict[str, float], bool, torch.Tensor]:
        """One step on ``params``' crops at learning rate ``lr``: (loss values as floats, whether every gradient
        was finite, the (1, 3, h, w) output in [0, 1] the step trained on, valid until the next step)."""
        ...

    def fallback_state(self) -> dict[str, torch.Tensor] | None:
        """After a NaN: the U-Net state whose output the previous step evaluated (None: no good step yet)."""
        ...


def step_lr(lr: float, decay: float, every: int, phase_step: int) -> float:
    """The learning rate at ``phase_step`` (1-based) of a phase: ``lr``, times ``decay`` every ``every`` steps.

    Computed as torch's ``StepLR`` does, one multiplication per boundary (not ``lr * decay ** k``),
    so that the plain step's rates are bit for bit those of the scheduler it used to run with.
    """
    rate = lr
    for _ in range((phase_step - 1) // every):
        rate = rate * decay
    return rate


def adam_options(device: torch.device) -> dict[str, bool]:
    """Adam's options for a plain or reference step on ``device``."""
    # The fused kernel is one launch per step on CUDA; on the CPU the default foreach path is as fast.
    return {"fused": True} if device.type == "cuda" else {}


class PlainStep:
    """Batched crops, the backward chunked by ``clip_batch`` (`StyleObjective.backward`); a fresh Adam."""

    def __init__(self, unet: nn.Module, objective: StyleObjective, content: torch.Tensor, lr: float,
                 device: torch.device, kept: KeptWeights, clip_batch: int = 0) -> None:
        self.unet, self.objective, self.content, self.kept, self.clip_batch = unet, objective, content, kept, clip_batch
        self.optimizer = torch.optim.Adam(unet.parameters(), lr=lr, **adam_options(device))

    def _backward(self, output: torch.Tensor, params: augment.CropParams) -> dict[str, float]:
        return self.objective.backward(output, params, self.clip_batch)

    def step(self, params: augment.CropParams, lr: float) -> tuple[dict[str, float], bool, torch.Tensor]:
        """See `TrainingStep.step`."""
        self.kept.record()
        self.optimizer.zero_grad(set_to_none=True)
        output = self.unet(self.content)
        values = self._backward(output, params)
        finite = grads_finite(self.unet)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        return values, finite, output

    def fallback_state(self) -> dict[str, torch.Tensor] | None:
        """See `TrainingStep.fallback_state`."""
        return self.kept.fallback_state()


class ReferenceStep(PlainStep):
    """The reference's structure: every term in one graph (`StyleObjective.terms`), one backward."""

    def _backward(self, output: torch.Tensor, params: augment.CropParams) -> dict[str, float]:
        terms = self.objective.terms(output, params)
        terms["total"].backward()
        return {name: float(value.detach()) for name, value in terms.items()}


def resolve_kind(requested: str, config: StyleConfig, device: torch.device, objective: StyleObjective) -> str:
    """The kind of step a phase runs: ``requested`` ("auto", "plain", "reference" or "captured"), where it can.

    An objective with unbatched crops (``batched_crops=False``) always takes the ``reference`` step;
    ``captured`` (and ``auto`` on CUDA) needs ``cuda_graph`` and an objective without host reads
    (`can_capture`), else the phase runs ``plain``. ``captured`` off CUDA runs uncaptured.
    """
    if requested not in STEP_KINDS:
        raise ConfigError(f"step_kind must be one of {', '.join(STEP_KINDS)}, got {requested!r}")
    if not objective.batched:
        return "reference"
    if requested in ("plain", "reference"):
        return requested
    if (requested == "captured" or device.type == "cuda") and config.cuda_graph and can_capture(objective):
        return "captured"
    return "plain"


def make_step(kind: str, unet: nn.Module, objective: StyleObjective, content: torch.Tensor, config: StyleConfig,
              device: torch.device, kept: KeptWeights) -> TrainingStep:
    """A phase's step of ``kind`` (`resolve_kind`'s answer), with a fresh optimizer at ``config.lr``.

    content: the phase's (1, 3, h, w) photo in [0, 1] on ``device``; kept: the run's `KeptWeights`.
    """
    if kind == "captured":
        return CapturedStep(unet, objective, content, captured_optimizer(unet, config.lr, device), None,
                            capture=device.type == "cuda", kept=kept)
    if kind == "reference":
        return ReferenceStep(unet, objective, content, config.lr, device, kept)
    return PlainStep(unet, objective, content, config.lr, device, kept, clip_batch_for(config, device.type))


__all__ = ["PlainStep", "ReferenceStep", "STEP_KINDS", "StepKind", "TrainingStep", "adam_options", "make_step",
           "resolve_kind", "step_lr"]
