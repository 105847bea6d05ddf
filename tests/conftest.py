"""Shared fixtures: a random-init tiny CLIP, the bundled VGG16, small photos.

Random-init CLIP carries no meaning: tests built on it check shapes, plumbing,
determinism and the arithmetic of the losses, never stylization quality
(that is what the micro CLIP tests do).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from clipstyle_opt import StyleConfig, Stylizer
from clipstyle_opt.encoders.clip import load_clip
from clipstyle_opt.encoders.vgg import load_vgg
from clipstyle_opt.testing import make_random_clip

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
"""This process's name when ``make test`` runs the suite on pytest-xdist workers (gw0, gw1), else None."""

# Alone, a session has both cores. On two xdist workers each gets one: two threads each would put four busy
# threads on two cores, and torch's threads spin while they wait for each other (a step then takes several
# times longer). Subprocesses the tests start (the CLI, recorders) inherit the one thread through the environment.
if XDIST_WORKER:
    os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1 if XDIST_WORKER else 2)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep the cache (converted VGG weights, downloads) inside the test run."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CLIPSTYLE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory) -> Path:
    return make_random_clip(tmp_path_factory.mktemp("clip") / "tiny_clip.pt", "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_path):
    return load_clip(str(tiny_clip_path), "cpu")


@pytest.fixture(scope="session")
def vgg16():
    config = StyleConfig()
    return load_vgg("vgg16", (*config.content_layers, *config.style_layers), "cpu")


@pytest.fixture(scope="session")
def tiny_config(tiny_clip_path) -> StyleConfig:
    """Small, fast settings: 64 px long side, 4 crops of 32 px, fp32."""
    return StyleConfig(clip_model=str(tiny_clip_path), size=64, steps=4, n_crops=4, crop_size=32,
                       device="cpu", precision="fp32", max_output_size=96)


@pytest.fixture(scope="session")
def tiny_stylizer(tiny_config, tiny_clip, vgg16) -> Stylizer:
    return Stylizer(tiny_config, clip=tiny_clip, vgg=vgg16)


@pytest.fixture
def photo() -> Path:
    return EXAMPLES / "chelsea.png"


# The behaviour lock (tests/test_behaviour_lock.py) records two trees in two single-threaded
# processes that need nothing from pytest. In one process, they start as soon as the session is
# collected, at the lowest priority, and the lock's tests run last: the recording overlaps the rest
# of the suite. On xdist workers every worker collects every test, so none starts them early: the
# lock's file goes first instead, and the worker it lands on records (its own fixture starts the
# recorders) while the other worker runs the rest of the suite.
LOCK_TESTS = "test_behaviour_lock.py"


def pytest_collection_modifyitems(session, config, items):
    """Move the behaviour lock's tests to the end (to the front on xdist workers), keeping the rest's order."""
    lock = [item for item in items if item.path.name == LOCK_TESTS]
    rest = [item for item in items if item.path.name != LOCK_TESTS]
    items[:] = lock + rest if XDIST_WORKER else rest + lock


def pytest_collection_finish(session):
    """Start the lock's recorders in the background when this one process will run the lock."""
    from behaviour_lock.launch import BACKGROUND_NICENESS, LOCK_RECORDING, LockSetupError, start

    if (XDIST_WORKER or session.config.option.collectonly
            or not any(item.path.name == LOCK_TESTS for item in session.items)):
        return
    try:
        session.config.stash[LOCK_RECORDING] = start(niceness=BACKGROUND_NICENESS)
    except LockSetupError as exc:  # reported by the lock's fixture, as a failure of its tests
        session.config.stash[LOCK_RECORDING] = exc


def pytest_unconfigure(config):
    """Stop a recording that is still running (an interrupted session) and remove its folder."""
    from behaviour_lock.launch import LOCK_RECORDING, Recording

    recording = config.stash.get(LOCK_RECORDING, None)
    if isinstance(recording, Recording):
        recording.stop()
