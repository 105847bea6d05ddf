"""Guards on a training run: NaN/inf detection with the weights to fall back to, and the patch-rejection warning."""
from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from ..config import StyleConfig
from ..errors import ClipstyleWarning, NonFiniteLossError
from ..objective.style_objective import TERM_NAMES


class KeptWeights:
    """The U-Net's weights before the current step and before the last one, kept in place (foreach copies).

    A run keeps one for all its phases and steps: `record` before each step; after a NaN at
    step k, `fallback_state` gives the weights whose output step k - 1 evaluated, the last good
    one. Parameters and buffers alike are kept (`StyleUNet` has no buffers: its InstanceNorm
    layers keep no running statistics), so the state is the whole ``state_dict``.
    """

    def __init__(self, unet: nn.Module) -> None:
        self.unet = unet
        named = [*unet.named_parameters(), *unet.named_buffers()]
        self.names = [name for name, _ in named]
        self.tensors = [tensor for _, tensor in named]
        with torch.no_grad():
            self.before_this = [t.detach().clone() for t in self.tensors]
            self.before_last = [t.detach().clone() for t in self.tensors]
        self.recorded = 0

    def record(self) -> None:
        """Called before each step: the weights before this step become those before the last one."""
        with torch.no_grad():
            torch._foreach_copy_(self.before_last, self.before_this)
            torch._foreach_copy_(self.before_this, [t.detach() for t in self.tensors])
        self.recorded += 1

    def fallback_state(self) -> dict[str, torch.Tensor] | None:
        """The weights before the last step (whose output was still finite), or None during the run's first step."""
        if self.recorded < 2:
            return None
        state = self.unet.state_dict()
        state.update({name: value.clone() for name, value in zip(self.names, self.before_last)})
        return state


def grads_finite(unet: nn.Module) -> bool:
    """Whether every gradient ``unet``'s parameters hold after a backward pass is finite."""
    grads = [p.grad for p in unet.parameters() if p.grad is not None]
    return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def non_finite_term(values: dict[str, float], finite_grads: bool) -> str | None:
    """The first loss term (or ``"gradient"``) that is NaN or infinite after a backward pass, else None."""
    for name in (*TERM_NAMES, "total"):
        if name in values and not math.isfinite(values[name]):
            return name
    return None if finite_grads else "gradient"


class NonFiniteStep(Exception):
    """Raised by the loop when ``term`` went NaN/inf at ``step`` of ``steps``; the U-Net then holds the fallback
    weights if ``restored`` (else nothing could be kept). ``history``: the rows of the steps before."""

    def __init__(self, term: str, step: int, steps: int, restored: bool, history: list[dict[str, float]]) -> None:
        super().__init__(f"{term} became NaN or infinite at step {step}")
        self.term, self.step, self.steps, self.restored, self.history = term, step, steps, restored, history

    def extra(self) -> dict[str, Any]:
        """The `Result.extra` of the result kept after it."""
        return {"status": "stopped", "reason": f"{self._what()} became NaN or infinite at step {self.step}",
                "steps_done": self.step - 1}

    def _what(self) -> str:
        return "the gradient" if self.term == "gradient" else f"the {self.term} loss"

    def error(self, result: Any = None) -> NonFiniteLossError:
        """The public error, carrying ``result`` (the output of the last good step) when there is one."""
        step, steps, what = self.step, self.steps, self._what()
        if result is None:
            return NonFiniteLossError(f"{what} became NaN or infinite at step {step} of {steps}, before any good "
                                      "step; nothing to keep (try a lower --lr or loss weights)",
                                      step=step, term=self.term)
        return NonFiniteLossError(f"{what} became NaN or infinite at step {step} of {steps}; stopped, keeping the "
                                  f"output of step {step - 1} (try a lower --lr or loss weights)",
                                  step=step, term=self.term, result=result)


REJECTION_CHECK_STEPS = 3
"""Steps after which the patch rejection is checked (`warn_if_rejection_is_total`)."""


def warn_if_rejection_is_total(history: list[dict[str, float]], config: StyleConfig, stacklevel: int = 3) -> None:
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
            f"CLIP ViT-B/32, so lower --threshold for this encoder (0 turns rejection off)"), stacklevel=stacklevel)


__all__ = ["KeptWeights", "NonFiniteStep", "REJECTION_CHECK_STEPS", "grads_finite", "non_finite_term",
           "warn_if_rejection_is_total"]
