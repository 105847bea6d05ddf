"""The timing columns of a sweep's result rows, named once: `execute` writes them, and the readers that
tell metrics from bookkeeping (`plots`, `correlate`) leave them out. Seconds, wall time."""
from __future__ import annotations

RUN_TIMINGS: tuple[str, ...] = ("load_s", "prepare_s", "train_s", "apply_s", "total_s", "step_median_s")
"""Copied from each run's `Result.timings`."""
SWEEP_TIMINGS: tuple[str, ...] = ("run_s", "eval_s")
"""Added by the sweep around each run: the whole run, and the scoring with ``--eval``."""
#: The timing columns (seconds) of a sweep's results, left out where results are compared.
TIMINGS: frozenset[str] = frozenset(RUN_TIMINGS + SWEEP_TIMINGS)

__all__ = ["RUN_TIMINGS", "SWEEP_TIMINGS", "TIMINGS"]
