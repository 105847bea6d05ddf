"""The behaviour lock: the same fixed runs give the same images, bit for bit, before and after a refactor.

`tests/behaviour_lock/record.py` runs a few fixed stylizations (default, the reference
structure, the captured step, fusion with a mask, style images, regions, focus, a
coarse-to-fine schedule, a two-member ensemble, tiled and untiled apply) with whichever
tree it is given. This test extracts the tree of ``LOCK_BASE`` (a commit before the change
being guarded) with ``git archive``, records both trees in two processes on this machine at
the same time, and compares every image and every step's loss values exactly.

Not against stored numbers: the CPUs these tests run on (Intel with AMX, AMD without)
differ in their last bits, so only the same machine can say "unchanged". The recorders
start in the background when the session is collected and these tests run last
(`tests/behaviour_lock/launch.py` says why). After a refactor
that lands, move ``LOCK_BASE`` forward to the commit before the next one (or set
``CLIPSTYLE_LOCK_BASE``). A change that is *meant* to alter results moves it past itself.
What this cannot show: that the results are right; only that they did not move.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from behaviour_lock.launch import LOCK_BASE, LOCK_RECORDING, LockSetupError, ROOT, start  # noqa: F401  (LOCK_BASE: see launch.py)


@pytest.fixture(scope="module")
def records(request, tmp_path_factory) -> dict[str, dict]:
    """Both trees' records: from the recorders conftest started at collection, or started now."""
    early = request.config.stash.get(LOCK_RECORDING, None)
    if isinstance(early, LockSetupError):
        pytest.fail(str(early))
    if early is not None:
        return early.collect()
    try:
        recording = start(tmp_path_factory.mktemp("lock"))
    except LockSetupError as exc:
        pytest.fail(str(exc))
    try:
        return recording.collect()
    finally:
        recording.stop()


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
