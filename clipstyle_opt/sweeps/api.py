"""`sweep()`: the Python entry point the CLI calls. It validates, runs (locally or on Ray), records, draws."""
from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from ..config import ENCODER_KEYS, StyleConfig
from ..errors import ClipstyleError, ClipstyleWarning, ConfigError, ImageReadError
from ..imageio import MIN_SIDE, fit_size, read_image
from .execute import EvalSettings, Outcome
from .spec import Run, SweepSpec, load_spec
from .store import SweepStore, import_pandas, to_frame

#: The sweep engines (``--engine``): ``local`` (one process) or ``ray`` (Ray workers).
ENGINES = ("local", "ray")


def default_output(spec: SweepSpec) -> Path:
    """``runs/<spec name>`` in the working directory."""
    return Path("runs") / spec.name


def check_images(spec: SweepSpec) -> None:
    """Every content and style image exists, has a readable header and trains at its run's size.

    Only headers are read (fast for thousands of runs); a file that is damaged further
    in fails at its run, which is recorded as failed while the sweep goes on.
    """
    from PIL import Image

    sizes: dict[str, tuple[int, int]] = {}
    for run in spec.runs:
        for path, what in ((run.content, "photo"), (run.style_image, "style image")):
            if path is None:
                continue
            if path not in sizes:
                try:
                    with Image.open(path) as opened:
                        sizes[path] = (opened.height, opened.width)
                except FileNotFoundError:
                    raise ImageReadError(f"{what} not found: {path}") from None
                except Exception:  # Pillow's many decoder errors: let read_image phrase it
                    read_image(path, what)
                    raise ImageReadError(f"not an image: {path}") from None
            height, width = sizes[path]
            if min(height, width) < MIN_SIDE:
                raise ImageReadError(f"{what} is too small: {path} is {width}x{height} px; each side must be at "
                                     f"least {MIN_SIDE} px")
            if min(fit_size(height, width, run.config.size)) < MIN_SIDE:
                raise ImageReadError(f"{what} {path} is too elongated for training at size {run.config.size}")


def prepare(spec: str | os.PathLike | Mapping[str, Any] | SweepSpec, *,
            overrides: Mapping[str, Any] | None = None) -> SweepSpec:
    """Load and validate a spec and check its images; nothing is loaded or written."""
    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec, overrides=overrides)
    if not spec.runs:
        raise ConfigError("the sweep has no runs")
    check_images(spec)
    return spec


@dataclass
class Plan:
    """What a sweep would do: its runs, those already finished, and a time estimate (seconds, or None)."""

    spec: SweepSpec
    output: Path
    done: set[str] = field(default_factory=set)
    estimate_s: Optional[float] = None
    probe: dict[str, float] = field(default_factory=dict)

    @property
    def pending(self) -> list[Run]:
        """The runs of the spec that have no finished record in the sweep directory yet, in spec order."""
        return [run for run in self.spec.runs if run.run_id not in self.done]


def plan(spec: str | os.PathLike | Mapping[str, Any] | SweepSpec, output: str | os.PathLike | None = None, *,
         overrides: Mapping[str, Any] | None = None, probe_steps: int = 3) -> Plan:
    """The dry run: count the runs, find those already done, and time a short probe of the first pending run
    (``probe_steps`` steps; 0 skips it) to estimate the rest: encoder loading once per encoder group, plus
    per run its set-up and output time and its steps at the probe's median step time."""
    from .local import group_by_encoder

    spec = prepare(spec, overrides=overrides)
    output = Path(output) if output is not None else default_output(spec)
    store = SweepStore(output)
    result = Plan(spec, output, done=set(store.finished()) & {r.run_id for r in spec.runs})
    pending = result.pending
    if not pending or probe_steps <= 0:
        result.estimate_s = 0.0 if not pending else None
        return result
    from .execute import make_stylizer

    first = pending[0]
    started = time.perf_counter()
    stylizer = make_stylizer(first.config)
    load_s = time.perf_counter() - started
    steps = min(probe_steps, first.config.steps)
    config = first.config.replace(steps=steps, coarse_steps=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClipstyleWarning)
        probe = stylizer.stylize(first.content, first.prompt, style_image=first.style_image,
                                 **{k: v for k, v in config.to_dict().items() if k not in ENCODER_KEYS})
    step_s = probe.timings["step_median_s"]
    fixed_s = probe.timings["prepare_s"] + probe.timings["apply_s"]
    groups = len(group_by_encoder(pending))
    result.estimate_s = groups * load_s + sum(fixed_s + equivalent_steps(run.config) * step_s for run in pending)
    result.probe = {"load_s": round(load_s, 2), "step_s": step_s, "per_run_fixed_s": round(fixed_s, 3),
                    "steps": steps}
    return result


def _progress_bar(total: int, done: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="sweep", unit="run", dynamic_ncols=True, file=sys.stderr)


def sweep(spec: str | os.PathLike | Mapping[str, Any] | SweepSpec, output: str | os.PathLike | None = None, *,
          overrides: Mapping[str, Any] | None = None, engine: str = "local", workers: Optional[int] = None,
          ray_address: Optional[str] = None, evaluate: bool = False, eval_metrics: Sequence[str] = (),
          eval_clip_model: Optional[str] = None, eval_size: Optional[int] = 512, retry_failed: bool = True,
          progress: bool = False, figures: bool = True, rows: Optional[str] = None, cols: Optional[str] = None,
          should_stop: Callable[[], bool] | None = None) -> Any:
    """Run a sweep into ``output`` (default ``runs/<spec name>``) and return its table as a pandas DataFrame.

    spec: a ``.yaml``/``.json`` file (paths in it relative to the file), a mapping in the same form, or a
    `SweepSpec`. overrides: `StyleConfig` settings over the spec's ``base`` (axes still win). Finished runs
    in ``output`` are skipped (resume); runs that failed before are retried unless ``retry_failed`` is False.
    A failing run is recorded and the sweep goes on. engine: ``local`` (one process) or ``ray`` (``workers``
    workers, one GPU each where the cluster has GPUs; ``ray_address`` joins a running cluster). evaluate:
    score each run with `clipstyle_opt.evaluate` (``eval_metrics``, default all; under ``eval_clip_model``,
    default each run's own encoder; at ``eval_size`` px). figures: draw the contact sheet (``rows`` x
    ``cols`` axes) and one plot per numeric axis when done. should_stop: asked between steps; when it
    returns True the sweep stops, keeping what finished.

    The frame has one row per run of this spec, in the spec's order; ``frame.attrs`` holds ``output``,
    ``failed`` (count), ``ran`` (runs done now) and ``stopped`` (True if should_stop ended it).
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if eval_size is not None and not 16 <= eval_size <= 8192:
        raise ConfigError(f"eval_size must be in 16..8192 px (or None), got {eval_size}")
    import_pandas()
    eval_settings = EvalSettings(tuple(eval_metrics), eval_clip_model, eval_size) if evaluate else None
    if engine == "ray":
        from .ray_runner import import_ray

        import_ray()  # before any work: the message says how to install it
    spec = prepare(spec, overrides=overrides)
    if figures:
        from .sheet import choose_layout

        choose_layout(spec.varying_axes(), rows, cols)  # a bad --rows/--cols fails now
    output = Path(output) if output is not None else default_output(spec)
    store = SweepStore(output)
    order = [run.run_id for run in spec.runs]
    with store.lock():
        settings = {"engine": engine, "workers": workers, "evaluate": bool(evaluate),
                    "eval_metrics": list(eval_settings.metrics) if eval_settings else [],
                    "eval_clip_model": eval_clip_model, "eval_size": eval_size}
        store.write_manifest(spec, settings)
        all_rows = {row["run_id"]: row for row in store.rows()}
        done = set(store.finished())
        skip = done if retry_failed else done | set(store.failures())
        pending = [run for run in spec.runs if run.run_id not in skip]
        bar = _progress_bar(len(spec.runs), len(spec.runs) - len(pending), progress)
        failed_now = 0
        shown = [axis for axis in spec.varying_axes() if axis != "content"]

        def record(run: Run, outcome: Outcome) -> None:
            nonlocal failed_now
            label = ", ".join(f"{axis}={run.axes[axis]}" for axis in shown) or run.run_id
            row = store.record(run, outcome, label)
            all_rows[run.run_id] = row
            failed_now += outcome.status != "ok"
            store.write_tables(_ordered(all_rows, order))
            if bar is not None:
                bar.set_postfix({"failed": failed_now}, refresh=False)
                bar.update(1)

        try:
            if engine == "ray":
                from .ray_runner import run_ray

                finished = run_ray(pending, record, workers=workers, address=ray_address,
                                   eval_settings=eval_settings, should_stop=should_stop)
            else:
                from .local import run_local

                finished = run_local(pending, record, eval_settings=eval_settings, should_stop=should_stop)
        finally:
            if bar is not None:
                bar.close()
        table_rows = _ordered(all_rows, order)
        store.write_tables(table_rows)
        mine = [all_rows[run_id] for run_id in order if run_id in all_rows]
        if figures and mine:
            _draw(store, spec, mine, rows, cols)
    frame = to_frame(mine)
    frame.attrs.update({"output": str(output), "failed": sum(r.get("status") != "ok" for r in mine),
                        "ran": len(pending) if finished else None, "stopped": not finished,
                        "missing": len(spec.runs) - len(mine)})
    return frame


def _ordered(rows: dict[str, dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    first = [rows[run_id] for run_id in order if run_id in rows]
    known = set(order)
    return first + [rows[k] for k in sorted(rows) if k not in known]


def _draw(store: SweepStore, spec: SweepSpec, rows: list[dict[str, Any]], row_axis: Optional[str],
          col_axis: Optional[str]) -> None:
    """The contact sheet and the per-axis plots; a missing plotting library is a warning, not a failure."""
    from .sheet import contact_sheet

    contact_sheet(store.root, rows, spec.varying_axes(), rows_axis=row_axis, cols_axis=col_axis)
    try:
        from .plots import axis_plots

        axis_plots(store.root, rows, spec.varying_axes())
    except ClipstyleError as exc:
        warnings.warn(ClipstyleWarning(f"no plots: {exc}"), stacklevel=3)


__all__ = ["sweep", "plan", "prepare", "Plan", "check_images", "ENGINES"]


def equivalent_steps(config: StyleConfig) -> float:
    """Steps at ``config.size`` that cost about as much as the run: coarse steps count by their pixels."""
    coarse = config.coarse_steps * (min(config.coarse_size, config.size) / config.size) ** 2
    return config.steps + coarse
