"""Start the behaviour lock's two recorders, and collect what they wrote.

The lock records the same fixed runs with two trees (an earlier commit's and this
checkout's), each in its own single-threaded process. Those processes need no pytest,
so ``tests/conftest.py`` starts them as soon as the session knows it will run the lock,
at the lowest CPU priority, and moves the lock's tests to the end of the session: the
recorders then run on the core time the rest of the suite leaves idle (pure-Python tests,
subprocess start-ups, the browser, Ray), and the lock's tests mostly find them finished.
Nothing about the recording changes: the same commands, threads and environment, whether
started early or by the test itself.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORDER = ROOT / "tests" / "behaviour_lock" / "record.py"
LOCK_BASE = os.environ.get("CLIPSTYLE_LOCK_BASE", "96dbb94620566382d349b80e291d5dda6c2cb53b")
"""The tree before the structure change (issue: one home for each idea)."""

BACKGROUND_NICENESS = 19
"""Niceness of recorders started ahead of their tests: they take only the core time the
rest of the suite leaves idle. Priority changes no result: each recorder is one thread."""


class LockSetupError(RuntimeError):
    """The lock could not start: the base tree could not be extracted."""


LOCK_RECORDING = pytest.StashKey["Recording | LockSetupError"]()
"""Where conftest keeps the recording it started early (or why it could not start it)."""


def extract(ref: str, into: Path) -> Path:
    """Write ``clipstyle_opt/`` as it was at ``ref`` under ``into`` and return ``into``."""
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref, "clipstyle_opt"],
                                 check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        stderr = getattr(exc, "stderr", b"") or b""
        raise LockSetupError(f"cannot extract the lock's base {ref} with git (a clone with history is needed): "
                             f"{stderr.decode(errors='replace').strip() or exc}") from None
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


@dataclass
class Recording:
    """Two recorder processes (``base`` and ``current``) writing into ``work``."""

    work: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    owns_work: bool = False

    def collect(self, timeout_s: float = 900) -> dict[str, dict]:
        """Wait for both recorders and return their records by tree name.

        Raises AssertionError with the recorder's last output when one failed.
        """
        import torch

        records = {}
        for process in self.processes.values():
            _restore_priority(process)
        for name, process in self.processes.items():
            process.wait(timeout=timeout_s)
            log = (self.work / f"{name}.log").read_text(errors="replace")
            assert process.returncode == 0, f"recording the {name} tree failed:\n{log[-3000:]}"
            records[name] = torch.load(self.work / f"{name}.pt", weights_only=False)
        return records

    def stop(self) -> None:
        """Kill recorders still running and remove the working folder if this recording made it."""
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        if self.owns_work:
            shutil.rmtree(self.work, ignore_errors=True)


def _restore_priority(process: subprocess.Popen) -> None:
    """Give a recorder still running this process's priority: its test is now waiting for it.

    Raising a priority needs privileges on most systems; without them it keeps running niced.
    """
    if process.poll() is None:
        try:
            os.setpriority(os.PRIO_PROCESS, process.pid, os.getpriority(os.PRIO_PROCESS, 0))
        except (PermissionError, ProcessLookupError):
            pass


def start(work: Path | None = None, niceness: int = 0) -> Recording:
    """Extract the base tree and start both recorders (one thread each); return at once.

    ``work`` defaults to a new temporary folder that :meth:`Recording.stop` removes.
    Raises LockSetupError when the base tree cannot be extracted.
    """
    recording = Recording(work=Path(work) if work else Path(tempfile.mkdtemp(prefix="clipstyle-lock-")),
                          owns_work=work is None)
    trees = {"base": extract(LOCK_BASE, recording.work / "base"), "current": ROOT}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    env.pop("PYTHONPATH", None)

    def lower_priority() -> None:
        os.nice(niceness)

    for name, tree in trees.items():
        # output to a file, not a pipe: a recorder started early is read only at the end, and a full pipe would stall it
        log = open(recording.work / f"{name}.log", "wb")
        # each its own cache: two processes converting the bundled VGG16 into one cache race on its temp file
        recording.processes[name] = subprocess.Popen(
            [sys.executable, str(RECORDER), str(tree), str(recording.work / f"{name}.pt")],
            env={**env, "CLIPSTYLE_CACHE": str(recording.work / f"cache_{name}")},
            stdout=log, stderr=subprocess.STDOUT, cwd=recording.work,
            preexec_fn=lower_priority if niceness else None)
        log.close()  # the child holds its own descriptor
    return recording
