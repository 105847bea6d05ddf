"""Ablation sweeps: many runs of the same photos and prompts under varied settings, in one call.

>>> from clipstyle_opt import sweep
>>> frame = sweep("examples/sweeps/clipstyler_ablation.yaml", "runs/ablation")  # doctest: +SKIP

`spec` reads and expands the spec, `store` keeps the sweep directory (atomic
per-run records, ``results.csv``, a lock), `local` and `ray_runner` run it,
`sheet` and `plots` draw it, `correlate` compares metrics with human ratings.
"""
from .api import Plan, plan, prepare, sweep
from .spec import Run, SweepSpec, load_spec
from .store import SweepStore, is_sweep_dir

__all__ = ["sweep", "plan", "prepare", "Plan", "load_spec", "Run", "SweepSpec", "SweepStore", "is_sweep_dir"]
