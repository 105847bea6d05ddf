"""The Ray runner on a real local Ray (2 CPUs, 2 workers): the same runs give the same images and losses
as the local runner. One module, one cluster: starting Ray takes seconds."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle_opt import sweep
from clipstyle_opt.errors import ClipstyleError
from clipstyle_opt.testing.tolerances import reordered_gradient

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def cluster():
    """A local Ray whose workers import this checkout's clipstyle_opt (as `sweep` itself starts one)."""
    from clipstyle_opt.sweeps.ray_runner import _package_root

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": _package_root()}})
    yield
    ray.shutdown()


def spec_for(clip_path: Path) -> dict:
    return {"contents": [str(EXAMPLES / "chelsea.png")], "prompts": ["fire", "water"],
            "grid": {"lambda_patch": [0, 9000]},
            "base": {"clip_model": str(clip_path), "size": 64, "steps": 2, "n_crops": 2, "crop_size": 32,
                     "device": "cpu", "precision": "fp32", "max_output_size": 64}}


def test_ray_workers_give_the_images_of_the_local_runner(cluster, tiny_clip_path, tmp_path):
    spec = spec_for(tiny_clip_path)
    remote = sweep(spec, tmp_path / "ray", engine="ray", workers=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each 1-CPU worker runs
    try:
        local = sweep(spec, tmp_path / "local")
    finally:
        torch.set_num_threads(threads)
    assert remote.attrs["failed"] == 0 and len(remote) == 4
    assert list(remote["run_id"]) == list(local["run_id"])
    # Float noise (another process, another kernel choice) may move a pixel across an 8-bit rounding boundary:
    # one level at most. The losses agree to the bound of a reordered fp32 gradient computation.
    for run_id in local["run_id"]:
        a = np.asarray(Image.open(tmp_path / "ray" / "runs" / f"{run_id}.png"), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "local" / "runs" / f"{run_id}.png"), dtype=np.int16)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, run_id
    for column in ("loss_total", "loss_patch", "loss_content", "loss_dir"):
        np.testing.assert_allclose(remote[column], local[column], rtol=reordered_gradient(), atol=0)
    sidecar = json.loads((tmp_path / "ray" / "runs" / f"{local['run_id'][0]}.json").read_text())
    assert sidecar["content"] == str(EXAMPLES / "chelsea.png")  # the driver's path, not the worker's tensor
    rows = (tmp_path / "ray" / "results.csv").read_text().splitlines()
    assert len(rows) == 5


@pytest.mark.parametrize("threads", [1, 2])
def test_the_same_threads_give_the_same_images_on_both_engines(cluster, tiny_clip_path, tmp_path, threads):
    """``threads`` set on the sweep (``--threads``): the local runner and the Ray workers give the same bits,
    whatever torch's thread count was in the calling process, and each sidecar records the count and the CPU."""
    from clipstyle_opt.devices import cpu_model

    spec = spec_for(tiny_clip_path)
    before = torch.get_num_threads()
    torch.set_num_threads(3 - threads)  # the caller's own count must not matter
    try:
        local = sweep(spec, tmp_path / "local", overrides={"threads": threads})
        assert torch.get_num_threads() == 3 - threads  # restored after each run
    finally:
        torch.set_num_threads(before)
    remote = sweep(spec, tmp_path / "ray", engine="ray", overrides={"threads": threads})
    assert remote.attrs["failed"] == 0 and list(remote["run_id"]) == list(local["run_id"])
    for run_id in local["run_id"]:
        a = np.asarray(Image.open(tmp_path / "ray" / "runs" / f"{run_id}.png"))
        b = np.asarray(Image.open(tmp_path / "local" / "runs" / f"{run_id}.png"))
        assert np.array_equal(a, b), run_id
        for engine in ("ray", "local"):
            sidecar = json.loads((tmp_path / engine / "runs" / f"{run_id}.json").read_text())
            assert (sidecar["threads"], sidecar["hardware"]) == (threads, cpu_model()), engine
    np.testing.assert_array_equal(remote["loss_total"], local["loss_total"])


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch, tiny_clip_path, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ClipstyleError, match=r"pip install 'clipstyle_opt\[ray\]'"):
        sweep(spec_for(tiny_clip_path), tmp_path / "x", engine="ray")
    assert not (tmp_path / "x").exists()
