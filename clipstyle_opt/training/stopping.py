"""Early stopping: end a run once its loss has stopped improving.

The rule (`EarlyStop`), for a loss L_t recorded after step t = 1, 2, ...:

- smoothed loss: an exponential moving average with bias correction (as
  Adam's moments), ``m_t = b m_{t-1} + (1 - b) L_t``, ``S_t = m_t / (1 - b^t)``,
  ``b = SMOOTHING = 0.9`` (a memory of about 10 steps: the patch loss is
  noisy, its 64 crops are redrawn every step);
- an improvement: ``S_t < best * (1 - min_delta)``, where ``best`` is the
  lowest smoothed loss so far (relative, so the loss's scale does not matter);
- stop after ``patience`` steps in a row without an improvement.

A loss that keeps falling by more than ``min_delta`` per ``patience`` steps is
never stopped; a flat one is stopped ``patience`` steps after it flattened.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

SMOOTHING = 0.9
"""b in the moving average of the rule above."""


class EarlyStop:
    """The stopping rule of the module docstring; feed it one loss per step with `update`.

    patience: steps (>= 1) without improvement before stopping.
    min_delta: relative improvement (0 <= min_delta < 1) that counts, 0.01 = 1 %.
    """

    def __init__(self, patience: int, min_delta: float = 0.01, smoothing: float = SMOOTHING) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1 step, got {patience}")
        if not 0 <= min_delta < 1:
            raise ValueError(f"min_delta must be in [0, 1), got {min_delta}")
        self.patience, self.min_delta, self.smoothing = patience, min_delta, smoothing
        self.steps = 0
        self.average = 0.0
        self.best = math.inf
        self.since_best = 0
        self.smoothed: Optional[float] = None

    def update(self, loss: float) -> bool:
        """Record one step's loss; True when the run should stop now."""
        self.steps += 1
        self.average = self.smoothing * self.average + (1 - self.smoothing) * loss
        self.smoothed = self.average / (1 - self.smoothing ** self.steps)
        if self.smoothed < self.best * (1 - self.min_delta) or (self.best == math.inf):
            self.best = self.smoothed
            self.since_best = 0
        else:
            self.since_best += 1
        return self.since_best >= self.patience


def stop_step(losses: Iterable[float], patience: int, min_delta: float = 0.01) -> Optional[int]:
    """The 1-based step at which `EarlyStop` would end a run with these losses, or None if it never would."""
    rule = EarlyStop(patience, min_delta)
    for step, loss in enumerate(losses, start=1):
        if rule.update(loss):
            return step
    return None
