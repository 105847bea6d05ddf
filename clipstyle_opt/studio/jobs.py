"""Runs in the studio: one `Job` per browser session, trained step by step so that previews, the loss curve,
Stop and "Continue N steps" can reach the page between steps.

A job wraps a `clipstyle_opt.style_run.StyleRun`. Stop goes through `GracefulStop.request`, the hook Ctrl-C sets
in the command line, so a stopped job ends exactly as an interrupted ``clipstyle stylize``: after the step in
progress, its result marked "interrupted". Continuing K steps from step S trains what one run of S + K steps
computes (`StyleRun.plan`). Nothing here imports gradio.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from PIL import Image

from ..config import PRESETS, StyleConfig
from ..engine import Stylizer
from ..style_run import StyleRun
from ..imageio import to_pil
from ..interrupts import GracefulStop
from ..result import Result, StepInfo
from . import DEFAULT_PREVIEW_EVERY
from .security import ModelPolicy, UploadLimits



@dataclass
class StudioOptions:
    """What ``clipstyle serve`` fixes for the whole server.

    clip_models: the encoders offered (the first is the default); device: "auto", "cpu", "cuda", "mps";
    output_dir: where results and U-Nets go (the gallery reads it back); preview_every: seconds of training
    between previews (>= 0; 0: every step); model_dirs: folders under which checkpoints may be named.
    """

    clip_models: Sequence[str]
    device: str = "auto"
    output_dir: Path = Path("studio-outputs")
    preview_every: float = DEFAULT_PREVIEW_EVERY
    model_dirs: Sequence[str] = ()
    limits: UploadLimits = field(default_factory=UploadLimits)

    def policy(self) -> ModelPolicy:
        """Which model names the page may ask for: the models given at start and folders under the model dirs."""
        return ModelPolicy(list(self.clip_models), list(self.model_dirs))


@dataclass
class Progress:
    """What the page shows after a step: the preview (training size; None: no new one), the step, the planned
    total, the loss curve so far as (step, total loss) pairs, steps per second, the seconds left (None before
    the first step), and once the job ends its `Result` (``status`` "done", "interrupted" or "paused")."""

    step: int
    steps: int
    preview: Image.Image | None
    losses: list[tuple[int, float]]
    steps_per_second: float
    eta_s: float | None
    result: Result | None = None
    status: str = "running"

    def line(self) -> str:
        """"step 12 / 100 · 3.1 steps/s · about 28 s left"."""
        text = f"step {self.step} / {self.steps}"
        if self.steps_per_second > 0:
            text += f" · {self.steps_per_second:.2f} steps/s"
        if self.status != "running":
            return text + f" · {self.status}"
        return text + (f" · about {self.eta_s:.0f} s left" if self.eta_s is not None else "")


class Engines:
    """The loaded `Stylizer` of each offered encoder, made on first use and kept (encoders load once)."""

    def __init__(self, options: StudioOptions) -> None:
        self.options = options
        self._stylizers: dict[str, Stylizer] = {}
        self._lock = threading.Lock()

    def stylizer(self, clip_model: str) -> Stylizer:
        """The `Stylizer` for ``clip_model`` on this server's device, loaded once and shared by every session."""
        with self._lock:
            if clip_model not in self._stylizers:
                self._stylizers[clip_model] = Stylizer(StyleConfig(clip_model=clip_model, device=self.options.device))
            return self._stylizers[clip_model]


class Job:
    """One session's run: a `StyleRun` on ``photo``, trained in pieces (`train`), stopped with `stop`."""

    def __init__(self, run: StyleRun, photo: Path, preview_every: float) -> None:
        self.run, self.photo, self.preview_every = run, photo, preview_every
        self.stopper = GracefulStop()
        self.losses: list[tuple[int, float]] = []
        self.last: Result | None = None

    def focus_map(self) -> Image.Image | None:
        """The focus text's relevance map as a grey image at the training size (white = most relevant), known
        as soon as the run is started; None without a focus."""
        relevance = self.run.focus_map
        if relevance is None:
            return None
        return to_pil(relevance.float().cpu().expand(1, 3, -1, -1)).convert("L")

    def stop(self) -> None:
        """Stop after the step in progress, as a first Ctrl-C does in the command line."""
        self.stopper.request()

    def train(self, more: int | None = None) -> Iterator[Progress]:
        """Train to the planned end (``more``: K steps past those done, "Continue K steps"), yielding a
        `Progress` with a preview after the first step and then every ``preview_every`` seconds of training at
        most, and a last one with the `Result`."""
        self.stopper = GracefulStop()
        run = self.run
        if more is not None:
            run.plan(run.step + more)
        since_preview: float | None = None  # None: no preview yet in this piece
        recent: list[float] = []
        latest: list[StepInfo] = []
        while not run.finished and not self.stopper.requested():
            run.advance(1, callback=latest.append, should_stop=self.stopper.requested)
            info = latest.pop()
            self.losses.append((info.step, float(info.terms["total"])))
            recent = (recent + [info.seconds])[-20:]
            due = since_preview is None or since_preview + info.seconds >= self.preview_every
            since_preview = info.seconds if since_preview is None else since_preview + info.seconds
            if due and not run.finished:
                since_preview = 0.0
                rate = len(recent) / sum(recent)
                yield Progress(info.step, run.total_steps, to_pil(info.output), list(self.losses), rate,
                               (run.total_steps - info.step) / rate)
        if self.stopper.requested():
            run.interrupt()
        self.last = run.result()
        status = self.last.extra.get("status") or ("done" if run.finished else "interrupted")
        rate = len(recent) / sum(recent) if recent else 0.0
        yield Progress(run.step, run.total_steps, None, list(self.losses), rate, 0.0, self.last, status)


class Sessions:
    """Each browser session's job (by Gradio's session hash), so one page's Stop or Continue acts on its own
    run only, and a closed page stops its run (`close`)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def put(self, session: str, job: Job) -> None:
        """Make ``job`` the session's run; a run the session had before is stopped after its current step."""
        with self._lock:
            old = self._jobs.get(session)
            if old is not None:
                old.stop()
            self._jobs[session] = job

    def get(self, session: str) -> Job | None:
        """The session's run (None: it has none yet)."""
        with self._lock:
            return self._jobs.get(session)

    def close(self, session: str) -> None:
        """The page is gone: stop its run after the current step (the job keeps its result for the gallery)."""
        with self._lock:
            job = self._jobs.pop(session, None)
        if job is not None:
            job.stop()


def config_for(preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings of a page's run: the preset's values under the page's, as the command line merges a preset
    and flags (the encoder settings are the server's)."""
    return {**PRESETS[preset], **overrides}


__all__ = ["DEFAULT_PREVIEW_EVERY", "Engines", "Job", "Progress", "Sessions", "StudioOptions", "config_for"]
