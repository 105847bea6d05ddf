"""``threads``: torch's CPU threads per run, set for the run and restored, recorded with the hardware in every
sidecar, and left out of a sweep run's id (like device and clip_batch, it changes the bits by rounding only).
Same threads, same bits across the two sweep engines: tests/test_sweep_ray.py."""
from __future__ import annotations

import json

import pytest
import torch

from clipstyle_opt import StyleConfig
from clipstyle_opt.config import settings
from clipstyle_opt.devices import cpu_model, hardware_name, torch_threads
from clipstyle_opt.errors import ConfigError
from clipstyle_opt.sweeps.identity import run_id


def test_torch_threads_sets_the_count_for_the_block_and_restores_it():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other) as inside:
        assert inside == other == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with torch_threads(None) as inside:
        assert inside == before
    with pytest.raises(RuntimeError):
        with torch_threads(other):
            raise RuntimeError("a failing run")
    assert torch.get_num_threads() == before


def test_a_run_records_its_threads_and_hardware_and_restores_the_callers_count(tiny_stylizer, photo, tmp_path):
    before = torch.get_num_threads()
    seen = []
    result = tiny_stylizer.stylize(photo, "fire", steps=2, threads=1,
                                   callback=lambda info: seen.append(torch.get_num_threads()))
    assert seen == [1, 1] and torch.get_num_threads() == before
    sidecar = json.loads(result.save(tmp_path / "out.png").with_suffix(".json").read_text())
    assert sidecar["threads"] == 1 and sidecar["config"]["threads"] == 1
    assert sidecar["hardware"] == cpu_model() == hardware_name(torch.device("cpu"))
    default = tiny_stylizer.stylize(photo, "fire", steps=1)
    assert default.metadata()["threads"] == before and default.config.threads is None


def test_threads_is_described_once_and_checked():
    item = {s.name: s for s in settings()}["threads"]
    assert item.type is int and item.optional and item.minimum == 1 and item.speed_only
    for bad in (0, -2, 1.5, "two"):
        with pytest.raises(ConfigError, match="threads"):
            StyleConfig(threads=bad)


def test_threads_do_not_change_a_sweep_run_id():
    ids = {run_id("c" * 64, "fire", None, StyleConfig(threads=threads)) for threads in (None, 1, 4)}
    assert len(ids) == 1
    assert run_id("c" * 64, "fire", None, StyleConfig(seed=1)) not in ids  # the id does see a real setting
