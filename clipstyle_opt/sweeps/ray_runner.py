"""The Ray runner: workers (Ray actors) hold a loaded `Stylizer` and take many runs each.

Ray is an optional extra and is imported only here. The driver (the process
that called `sweep`) decodes the images, sends them to the workers (which need
not see its files) and writes every result itself, so the sweep directory
has one writer whatever the cluster.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..errors import ClipstyleError, first_line
from .execute import EvalSettings, Outcome, encoder_key
from .local import group_by_encoder
from .spec import Run

#: The line printed when ``--engine ray`` is asked for without Ray installed.
INSTALL_HINT = "the Ray engine needs Ray: pip install 'clipstyle_opt[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or a one-line `ClipstyleError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ClipstyleError(INSTALL_HINT) from None
    return ray


class SweepWorker:
    """A Ray actor's state: the `Stylizer` (and `Evaluator`) of the last encoder group it ran."""

    def __init__(self, threads: int) -> None:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        self.key: Optional[str] = None
        self.stylizer: Any = None
        self.evaluator: Any = None
        self.load_error: Optional[str] = None

    def run(self, run_data: dict[str, Any], content: Any, style: Any,
            eval_settings: Optional[EvalSettings]) -> Outcome:
        """Run one sweep run on this worker (reloading encoders only when the group changes) and return its
        `Outcome`; a failure is returned as a failed outcome, never raised.
        """
        from .execute import execute_run, make_evaluator, make_stylizer

        run = Run.from_dict(run_data)
        key = encoder_key(run.config)
        if key != self.key:
            self.stylizer = self.evaluator = None
            self.key, self.load_error = key, None
            try:
                self.stylizer = make_stylizer(run.config)
                self.evaluator = make_evaluator(eval_settings, self.stylizer) if eval_settings is not None else None
            except ClipstyleError as exc:
                self.load_error = first_line(exc)
        if self.load_error is not None:
            return Outcome("failed", error=f"loading the encoders failed: {self.load_error}")
        return execute_run(self.stylizer, run, evaluator=self.evaluator, content=content, style_image=style)


def _package_root() -> str:
    """The folder that holds the ``clipstyle_opt`` package this driver imported (for a local Ray's workers)."""
    import clipstyle_opt

    return str(Path(clipstyle_opt.__file__).resolve().parent.parent)


def start_ray(ray: Any, workers: Optional[int], address: Optional[str]) -> bool:
    """Join ``address``, or start a local Ray with ``workers`` CPUs; returns True if started here."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        return True
    path = os.pathsep.join(p for p in (_package_root(), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    return True


def run_ray(runs: Sequence[Run], record: Callable[[Run, Outcome], None], *, workers: Optional[int] = None,
            address: Optional[str] = None, eval_settings: Optional[EvalSettings] = None,
            should_stop: Callable[[], bool] | None = None) -> bool:
    """Run ``runs`` on Ray workers, calling ``record(run, outcome)`` in this process as each finishes.

    workers: the number of actors (default: one per GPU of the cluster, else one per CPU). Each actor
    takes a GPU where the cluster has GPUs, else one CPU with torch using its share of the CPUs, or the
    run's ``threads`` where set. Runs go
    out sorted by encoder group, so a worker reloads encoders only when the group changes. Returns
    False if ``should_stop`` ended the sweep early (runs in flight are dropped, not recorded).
    """
    if not runs:
        return True
    ray = import_ray()
    from ..imageio import load_image

    started_here = start_ray(ray, workers, address)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        # A run's ``threads`` setting wins over the worker's share (`Stylizer.stylize` sets it per run). Each CPU
        # worker still reserves one CPU: reserving ``threads`` CPUs hung when earlier actors still held theirs.
        count = workers or (gpus if gpus else cpus)
        if gpus:
            actor_class = ray.remote(num_gpus=1, num_cpus=1)(SweepWorker)
            threads = 0
        else:
            actor_class = ray.remote(num_cpus=1)(SweepWorker)
            threads = max(1, cpus // count)
        count = min(count, len(runs))
        actors = [actor_class.remote(threads) for _ in range(count)]
        queue = [run for group in group_by_encoder(runs) for run in group]
        images: dict[str, Any] = {}

        def image_ref(path: Optional[str]) -> Any:
            if path is None:
                return None
            if path not in images:
                images[path] = ray.put(load_image(path, "photo"))
            return images[path]

        pending: dict[Any, tuple[Any, Run]] = {}

        def submit(actor: Any) -> None:
            run = queue.pop(0)
            try:
                content, style = image_ref(run.content), image_ref(run.style_image)
            except ClipstyleError as exc:
                record(run, Outcome("failed", error=str(exc)))
                if queue:
                    submit(actor)
                return
            future = actor.run.remote(run.to_dict(), content, style, eval_settings)
            pending[future] = (actor, run)

        for actor in actors:
            if queue:
                submit(actor)
        while pending:
            if should_stop is not None and should_stop():
                return False
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for future in ready:
                actor, run = pending.pop(future)
                try:
                    outcome = ray.get(future)
                except Exception as exc:  # the worker died (out of memory, killed): recorded, the sweep goes on
                    first = first_line(exc)
                    outcome = Outcome("failed", error=f"Ray worker failed: {type(exc).__name__}: {first[:200]}")
                    actor = actor_class.remote(threads)
                record(run, outcome)
                if queue:
                    submit(actor)
        return True
    finally:
        if started_here:
            ray.shutdown()


__all__ = ["run_ray", "import_ray", "start_ray", "SweepWorker", "INSTALL_HINT"]
