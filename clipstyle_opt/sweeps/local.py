"""The local runner: one process; the runs that share encoder settings share one `Stylizer`."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from ..errors import ClipstyleError, first_line
from .execute import EvalSettings, Outcome, encoder_key, execute_run, make_evaluator, make_stylizer
from .spec import Run


def group_by_encoder(runs: Sequence[Run]) -> list[list[Run]]:
    """Runs grouped by `encoder_key`, groups in order of first appearance, runs in their order."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(encoder_key(run.config), []).append(run)
    return list(groups.values())


def run_local(runs: Sequence[Run], record: Callable[[Run, Outcome], None], *, eval_settings: Optional[EvalSettings] = None,
              should_stop: Callable[[], bool] | None = None, progress: Any = None) -> bool:
    """Run ``runs`` one after another, calling ``record(run, outcome)`` after each.

    CLIP and VGG load once per encoder group; a group whose encoders fail to load
    records that error for each of its runs. Returns False if ``should_stop`` ended
    the sweep early (the run in progress is not recorded), else True.
    """
    for group in group_by_encoder(runs):
        try:
            stylizer = make_stylizer(group[0].config)
            evaluator = make_evaluator(eval_settings, stylizer) if eval_settings is not None else None
        except ClipstyleError as exc:
            message = first_line(exc)
            for run in group:
                record(run, Outcome("failed", error=f"loading the encoders failed: {message}"))
            continue
        for run in group:
            if should_stop is not None and should_stop():
                return False
            outcome = execute_run(stylizer, run, evaluator=evaluator, should_stop=should_stop)
            if outcome.status == "interrupted":
                return False
            record(run, outcome)
        del stylizer, evaluator
    return True


__all__ = ["run_local", "group_by_encoder"]
