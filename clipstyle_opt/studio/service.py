"""`Studio`: what the page's handlers and the API share (the server's options, loaded engines, sessions and
model policy), and the two things they do with it: start a session's run with every check done before any
training, and save a finished run like the command line does. Nothing here imports gradio."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from ..config import PRESETS, StyleConfig
from ..errors import ConfigError
from .gallery import save_result
from .jobs import Engines, Job, Sessions, StudioOptions, config_for


class Studio:
    """What the handlers share: the server's options, loaded engines, sessions and model policy."""

    def __init__(self, options: StudioOptions) -> None:
        self.options = options
        self.engines = Engines(options)
        self.sessions = Sessions()
        self.policy = options.policy()

    def start(self, session: str, photo: str | None, prompts: list[tuple[str, float]], preset: str,
              clip_model: str | None, overrides: dict[str, Any], *,
              regions: Sequence[tuple[str, str]] = (), **guidance: Any) -> Job:
        """A new job for ``session`` (its old one is stopped): every check before any training.

        prompts: (text, weight) pairs (blank texts are dropped); regions: (mask file, prompt) pairs, as
        ``--region MASK PROMPT``, instead of prompts; guidance: the other keywords of `Stylizer.start`
        (style_image, style_weights, mask, focus)."""
        if photo is None:
            raise ConfigError("give a photo")
        texts = [(text.strip(), weight) for text, weight in prompts if text and text.strip()]
        if not texts and not regions:
            raise ConfigError("give a PROMPT (or several, or a region's mask and prompt)")
        if texts and regions:  # the command line's rule and words (`clipstyle stylize --region`)
            raise ConfigError("with regions each prompt goes with its mask; clear the prompts above")
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        model = self.policy.check(clip_model)
        stylizer = self.engines.stylizer(model)
        options = config_for(preset, overrides)
        StyleConfig.from_dict({**options, "clip_model": model})  # a bad setting: its one line, now
        prompt: Any = [] if regions else texts[0][0] if len(texts) == 1 else texts
        if regions:
            guidance["regions"] = list(regions)
        run = stylizer.start(photo, prompt, **guidance, **options)
        job = Job(run, Path(photo), self.options.preview_every)
        self.sessions.put(session, job)
        return job

    def finish(self, job: Job, photo_name: str) -> tuple[str, str, dict[str, Any]]:
        """Save the job's last result in the output folder: (image path, U-Net path, metadata).

        The sidecar's ``content`` is the uploaded file's own name (``photo_name``, as the browser sent it),
        not the server's temporary copy: the command line likewise records the photo as it was given."""
        assert job.last is not None
        result = dataclasses.replace(job.last, content_path=photo_name)
        saved = save_result(result, self.options.output_dir, photo_name)
        return str(saved.image), str(saved.unet), result.metadata()


__all__ = ["Studio"]
