"""``clipstyle sweep``: parse flags, call `clipstyle_opt.sweeps`, print."""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

import click

from ..errors import ConfigError
from ..interrupts import exit_code
from .common import config_options, given_on_command_line, handle_errors

SPEC_SUFFIXES = (".yaml", ".yml", ".json")

_SWEEP_HELP = """Run many stylizations under varied settings into one directory, with a table, a contact
sheet and plots.

INPUTS is either one spec file (.yaml/.json; see the manual's sweeps guide) or photos (files or globs) for the
shorthand, where -p gives the prompts and --grid/--zip/--seeds the axes:

\b
  clipstyle sweep photos/*.jpg -p fire -p watercolor \\
      --grid lambda_patch=0,4500,9000 --grid threshold=0,0.7 -o runs/ablation

Setting flags (--size, --steps, --clip-model, ...) override the spec's base for every run; axes win over them.
Each run's id is a hash of its content, prompt and resolved settings: rerunning the same command skips the
finished runs (resume after a crash, a kill or Ctrl-C) and retries failed ones. A failing run is recorded in
DIR/failed/ and the sweep goes on; the exit status is then 1 and the last line says how many failed.

Writes DIR/runs/<id>.png with sidecars, DIR/results.csv (and results.parquet with pyarrow),
DIR/contact_sheet.png and DIR/plots/<axis>.png; `clipstyle report DIR` builds the HTML page.
"""


def _parse_axis(option: str, text: str) -> tuple[str, list[Any]]:
    """``lambda_patch=0,4500,9000`` -> ("lambda_patch", [0, 4500, 9000]) (values read as YAML scalars)."""
    import yaml

    key, sep, values = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key or not values.strip():
        raise ConfigError(f"{option} must be SETTING=V1,V2,... (e.g. lambda_patch=0,4500,9000), got {text!r}")
    out = []
    for part in values.split(","):
        part = part.strip()
        try:
            value = yaml.safe_load(part) if part else None
        except yaml.YAMLError:
            value = part
        out.append(part if value is None or isinstance(value, (list, dict)) else value)
    return key, out


def shorthand_spec(inputs: tuple[str, ...], prompts: tuple[str, ...], style_images: tuple[str, ...],
                   grids: tuple[str, ...], zips: tuple[str, ...], seeds: Optional[str]) -> tuple[dict, Any]:
    """The spec mapping the shorthand flags describe, and a locator that names the flags in errors."""
    from ..sweeps.spec_file import Where

    data: dict[str, Any] = {"name": "sweep", "contents": list(inputs)}
    names: dict[tuple, str] = {("contents",): "photo", ("prompts",): "-p/--prompt",
                               ("style_images",): "--style-image", ("seeds",): "--seeds"}
    if prompts:
        data["prompts"] = list(prompts)
    if style_images:
        data["style_images"] = list(style_images)
    for option, entries, target in (("--grid", grids, "grid"), ("--zip", zips, "zip")):
        for text in entries:
            key, values = _parse_axis(option, text)
            if key in data.get(target, {}):
                raise ConfigError(f"{option} {key} is given twice")
            data.setdefault(target, {})[key] = values
            names[(target, key)] = f"{option} {key}"
    if seeds is not None:
        _, data["seeds"] = _parse_axis("--seeds", f"seed={seeds}")
    if not prompts:
        raise ConfigError("give at least one prompt with -p/--prompt (or a spec file)")
    return data, Where("command line", names=names)


def _describe_axes(axes: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in axes.items() if k not in skip)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@click.command("sweep", help=_SWEEP_HELP)
@click.argument("inputs", nargs=-1, required=True)
@click.option("-p", "--prompt", "prompts", multiple=True, help="A prompt (repeat: an axis). Shorthand only.")
@click.option("--style-image", "style_images", multiple=True, type=click.Path(dir_okay=False),
              help="A style image (repeat: an axis). Shorthand only.")
@click.option("--grid", "grids", multiple=True, metavar="SETTING=V1,V2,...",
              help="An axis of the Cartesian product (repeat for more). Shorthand only.")
@click.option("--zip", "zips", multiple=True, metavar="SETTING=V1,V2,...",
              help="Paired values: all --zip axes advance together (same lengths). Shorthand only.")
@click.option("--seeds", default=None, metavar="S1,S2,...", help="Seeds as an axis. Shorthand only.")
@click.option("-o", "--output", default=None, help="Sweep directory [default: runs/<spec name>].")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: one process. ray: Ray workers (pip install 'clipstyle_opt[ray]').")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Ray workers [default: one per GPU, else one per CPU].")
@click.option("--ray-address", default=None, help="Join this Ray cluster instead of starting a local one.")
@click.option("--eval", "do_eval", is_flag=True,
              help="Score every run as `clipstyle eval` does; the metrics join results.csv.")
@click.option("--eval-metrics", default=None, help="Comma-separated subset of eval metrics [default: all].")
@click.option("--eval-clip-model", default=None, help="CLIP for the eval metrics [default: each run's own].")
@click.option("--eval-size", type=click.IntRange(16, 8192), default=512, show_default=True,
              help="Long side (px) for LPIPS/DISTS/SSIM/content_loss, as `eval --size`.")
@click.option("--rows", "rows_axis", default=None, help="Axis of the contact sheet's rows [default: the first].")
@click.option("--cols", "cols_axis", default=None, help="Axis of its columns [default: the last varying setting].")
@click.option("--no-retry-failed", is_flag=True, help="Skip runs that failed before instead of retrying them.")
@click.option("--dry-run", is_flag=True,
              help="Print the run count, a time estimate from a short probe, and the first runs; run nothing.")
@click.option("--probe-steps", type=click.IntRange(min=0), default=3, show_default=True,
              help="Steps of the dry run's timing probe, timed by their median (0: no probe, no estimate).")
@click.option("--show", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many runs --dry-run lists.")
@config_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@handle_errors
def sweep_command(inputs: tuple[str, ...], prompts: tuple[str, ...], style_images: tuple[str, ...],
                  grids: tuple[str, ...], zips: tuple[str, ...], seeds: Optional[str], output: Optional[str],
                  engine: str, workers: Optional[int], ray_address: Optional[str], do_eval: bool,
                  eval_metrics: Optional[str], eval_clip_model: Optional[str], eval_size: int,
                  rows_axis: Optional[str], cols_axis: Optional[str], no_retry_failed: bool, dry_run: bool,
                  probe_steps: int, show: int, quiet: bool, **flag_values: Any) -> None:
    from ..interrupts import GracefulStop
    from ..sweeps.api import plan, prepare, sweep
    from ..sweeps.sheet import choose_layout
    from ..sweeps.spec import build_spec, load_spec

    overrides = given_on_command_line(flag_values)
    is_spec = len(inputs) == 1 and Path(inputs[0]).suffix.lower() in SPEC_SUFFIXES
    if is_spec:
        if prompts or style_images or grids or zips or seeds is not None:
            raise ConfigError("axes go either in the spec file or on the command line (-p, --grid, --zip, "
                              "--seeds, --style-image), not both")
        spec = load_spec(inputs[0], overrides=overrides)
    else:
        if any(Path(i).suffix.lower() in SPEC_SUFFIXES for i in inputs):
            raise ConfigError("give one spec file alone, or photos with -p and --grid")
        data, where = shorthand_spec(inputs, prompts, style_images, grids, zips, seeds)
        spec = build_spec(data, base_dir=".", where=where, overrides=overrides)
    metrics = tuple(m.strip() for m in eval_metrics.split(",") if m.strip()) if eval_metrics else ()
    if metrics:
        from ..evaluate import check_metrics

        check_metrics(metrics)
    spec = prepare(spec)
    choose_layout(spec.varying_axes(), rows_axis, cols_axis)
    if engine == "ray":
        from ..sweeps.ray_runner import import_ray

        import_ray()

    if dry_run:
        result = plan(spec, output, probe_steps=probe_steps)
        axes = " x ".join(f"{a} ({len({str(r.axes[a]) for r in spec.runs})})" for a in spec.varying_axes())
        click.echo(f"{len(spec.runs)} runs over {axes or 'no varying axis'}; {len(result.done)} already done in "
                   f"{result.output}" + (f"; {spec.duplicates} duplicate(s) dropped" if spec.duplicates else ""))
        if result.probe:
            click.echo(f"probe: {result.probe['steps']} step(s) of the first pending run; encoders loaded in "
                       f"{result.probe['load_s']:.1f} s, {result.probe['step_s']:.2f} s/step")
        if result.estimate_s is not None:
            click.echo(f"estimate: {_duration(result.estimate_s)} for the {len(result.pending)} pending run(s) "
                       f"(locally, every step timed as the probe's)")
        if show:
            click.echo(f"first {min(show, len(spec.runs))} run(s):")
            for run in spec.runs[:show]:
                mark = "done" if run.run_id in result.done else "    "
                click.echo(f"  {run.run_id}  {mark}  {_describe_axes(run.axes)}")
        return

    started = time.perf_counter()
    with GracefulStop(notice=lambda line: click.echo(f"\n{line}", err=True)) as stop:
        frame = sweep(spec, output, engine=engine, workers=workers, ray_address=ray_address, evaluate=do_eval,
                      eval_metrics=metrics, eval_clip_model=eval_clip_model, eval_size=eval_size,
                      retry_failed=not no_retry_failed, progress=not quiet, rows=rows_axis, cols=cols_axis,
                      should_stop=stop.requested)
    out = frame.attrs["output"]
    failed = int(frame.attrs["failed"])
    done = len(frame) - failed
    if frame.attrs["stopped"]:
        name = signal.Signals(stop.signum).name if stop.signum else "stopped"
        click.echo(f"interrupted ({name}): {done} of {len(spec.runs)} runs finished and kept in {out}; rerun the "
                   "same command to resume", err=True)
        sys.exit(exit_code(stop.signum or signal.SIGINT))
    if not quiet:
        # Name only what exists: no plots without a numeric axis, no sheet when nothing finished.
        written = [name for name in ("results.csv", "contact_sheet.png", "plots/") if (Path(out) / name).exists()]
        click.echo(f"{len(spec.runs)} runs in {out} ({frame.attrs['ran']} run now) in "
                   f"{_duration(time.perf_counter() - started)}: {', '.join(written)}", err=True)
    if failed:
        click.echo(f"error: {failed} of {len(spec.runs)} runs failed (errors in {Path(out) / 'failed'}; rerun the "
                   "same command to retry them)", err=True)
        sys.exit(1)


__all__ = ["sweep_command", "shorthand_spec"]
