"""The behaviour lock: the same fixed runs give the same images, bit for bit, before and after a refactor.

`tests/behaviour_lock/record.py` runs a few fixed stylizations (default, the reference
structure, the captured step, fusion with a mask, style images, regions, focus, a
coarse-to-fine schedule, a two-member ensemble, tiled and untiled apply) with whichever
tree it is given. This test extracts the tree of ``LOCK_BASE`` (a commit before the change
being guarded) with ``git archive``, records both trees in two processes on this machine at
the same time, and compares every image and every step's loss values exactly.

Not against stored numbers: the CPUs these tests run on (Intel with AMX, AMD without)
differ in their last bits, so only the same machine can say "unchanged". After a refactor
that lands, move ``LOCK_BASE`` forward to the commit before the next one (or set
``CLIPSTYLE_LOCK_BASE``). A change that is *meant* to alter results moves it past itself.
What this cannot show: that the results are right; only that they did not move.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import io
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
RECORDER = ROOT / "tests" / "behaviour_lock" / "record.py"
LOCK_BASE = os.environ.get("CLIPSTYLE_LOCK_BASE", "96dbb94620566382d349b80e291d5dda6c2cb53b")
"""The tree before the structure change (issue: one home for each idea)."""


def _extract(ref: str, into: Path) -> Path:
    """``clipstyle_opt/`` as it was at ``ref``, written under ``into``."""
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref, "clipstyle_opt"],
                                 check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        stderr = getattr(exc, "stderr", b"") or b""
        pytest.fail(f"cannot extract the lock's base {ref} with git (a clone with history is needed): "
                    f"{stderr.decode(errors='replace').strip() or exc}")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _record(trees: dict[str, Path], out_dir: Path) -> dict[str, dict]:
    """Run the recorder for each tree at once (one thread each), return their records."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    env.pop("PYTHONPATH", None)
    # each its own cache: two processes converting the bundled VGG16 into one cache race on its temp file
    procs = {name: subprocess.Popen([sys.executable, str(RECORDER), str(tree), str(out_dir / f"{name}.pt")],
                                    env={**env, "CLIPSTYLE_CACHE": str(out_dir / f"cache_{name}")}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=out_dir)
             for name, tree in trees.items()}
    records = {}
    for name, proc in procs.items():
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"recording the {name} tree failed:\n{output.decode(errors='replace')[-3000:]}"
        records[name] = torch.load(out_dir / f"{name}.pt", weights_only=False)
    return records


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict[str, dict]:
    work = tmp_path_factory.mktemp("lock")
    base = _extract(LOCK_BASE, work / "base")
    return _record({"base": base, "current": ROOT}, work)


def test_each_tree_was_imported_from_where_it_was_asked(records):
    assert Path(records["base"]["package"]).resolve().is_relative_to(Path(records["base"]["tree"]).resolve())
    assert Path(records["current"]["package"]).resolve().is_relative_to(ROOT)


RUNS = ("default", "reference_structure", "fusion_with_mask", "style_images", "regions", "focus", "coarse_to_fine",
        "captured_step", "ensemble", "default_precision", "tiled_apply_thumbnail", "tiled_apply_exact",
        "untiled_apply")


@pytest.mark.parametrize("run", RUNS)
def test_the_run_gives_the_same_image_and_losses_as_before(records, run):
    before = records["base"]["records"][run]
    after = records["current"]["records"][run]
    assert before["image"].shape == after["image"].shape
    differing = int((before["image"] != after["image"]).sum())
    assert differing == 0, f"{run}: {differing} of {before['image'].numel()} values changed"
    assert before["history"] == after["history"]
