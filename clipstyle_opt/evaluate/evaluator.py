"""Score output images on disk: what `clipstyle eval` runs, usable from Python.

>>> result = evaluate(["out/cat_fire.png"], clip_model="ViT-B/32")  # doctest: +SKIP
>>> result[0]["patch_clip_score"], result[0]["lpips_vgg"]             # doctest: +SKIP
>>> result.write_json("scores.json")                                  # doctest: +SKIP

Each output's JSON sidecar (``out.json`` beside ``out.png``) supplies its
content image, prompt and source text; arguments override them.

Sizes. CLIP metrics see whole images resized to the model's input size
(``clip_score``, ``clip_direction``) or 64 crops of the output at 512 px long
side (``patch_clip_score``, as the paper). The full-reference metrics
(``lpips_vgg``, ``lpips_alex``, ``dists``, ``ssim``, ``content_loss``) resize
the output to ``size`` px on its long side (aspect kept; 512 by default, the
paper's output size; None keeps the output's size) and the content to exactly
that size, so outputs larger, smaller or squashed relative to their content
are compared pixel for pixel.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import torch

from . import metrics as M
from ..config import StyleConfig
from ..devices import resolve_device
from ..encoders.base import ImageTextEncoder
from ..encoders.registry import encoder_list, load_encoder, parse_model_spec
from ..encoders.vgg import VGGFeatures
from ..errors import ConfigError, ImageReadError
from ..imageio import load_image, read_metadata, sidecar_path
from ..objective.losses import content_loss
from ..encoders.prompts import check_text
from ..unet.video import is_video
from .video import score_video
from .results import CLIP_METRICS, DEFAULT_SIZE, METRICS, format_table, metric_names, summarize, write_csv, write_json

DEFAULT_CLIP_MODEL = StyleConfig.clip_model
"""The training's default encoder: scores default to the model the default run optimizes with."""


@dataclass
class EvalJob:
    """One output to score: its file, its content image, the texts, and its sidecar metadata."""

    image: Path
    content: Path
    prompt: str
    source_text: str = M.SOURCE_TEXT
    metadata: dict[str, Any] = field(default_factory=dict)
    prompts: tuple[tuple[str, float], ...] = ()
    """A fused output's (prompt, normalized weight) pairs from its metadata; () for one prompt."""


def _find_content(recorded: str, image: Path) -> Optional[Path]:
    """A recorded content path as given (relative to the working directory), else relative to the output's folder."""
    candidates = [Path(recorded)]
    if not Path(recorded).is_absolute():
        candidates.append(image.parent / recorded)
    return next((c for c in candidates if c.is_file()), None)


def resolve_job(image: str | os.PathLike, *, content: str | os.PathLike | None = None, prompt: str | None = None,
                source_text: str | None = None,
                clip_model: str | Sequence[str] | None = DEFAULT_CLIP_MODEL) -> EvalJob:
    """Combine an output's sidecar with overrides; one-line `ImageReadError` when something is missing.
    Its texts are checked for ``clip_model`` before it loads (`clipstyle_opt.encoders.prompts.check_text`)."""
    image = Path(image)
    if not image.is_file():
        raise ImageReadError(f"image not found: {image}")
    metadata = read_metadata(image)
    if content is None and prompt is None and not metadata:
        raise ImageReadError(f"no metadata for {image} (no sidecar {sidecar_path(image).name}): "
                             "pass --content and --prompt")
    prompts: tuple[tuple[str, float], ...] = ()
    if prompt is None:
        prompts = _recorded_prompts(metadata)
        prompt = metadata.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ImageReadError(f"{image}: its metadata records no prompt; pass --prompt")
    if content is not None:
        content_path = Path(content)
        if not content_path.is_file():
            raise ImageReadError(f"content image not found: {content_path}")
    else:
        recorded = metadata.get("content")
        if not recorded:
            raise ImageReadError(f"{image}: its metadata records no content image; pass --content")
        found = _find_content(str(recorded), image)
        if found is None:
            raise ImageReadError(f"content image {recorded} (from the metadata of {image}) not found; pass --content")
        content_path = found
    if source_text is None:
        recorded_config = metadata.get("config")
        source_text = (recorded_config if isinstance(recorded_config, dict) else {}).get("source_text") or M.SOURCE_TEXT
    # The same rule as `stylize`: a text CLIP cannot read whole is refused, never truncated.
    if prompts:
        for text, _ in prompts:
            check_text(text, f"a prompt of {image}", clip_model=clip_model)
    else:
        check_text(prompt, f"the prompt of {image}", clip_model=clip_model)
    check_text(source_text, f"the source text of {image}", allow_empty=True, clip_model=clip_model)
    return EvalJob(image, content_path, prompt, source_text, metadata, prompts)


def _recorded_prompts(metadata: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    """The (text, weight) pairs of a fused output's metadata (``prompts``), if there are several."""
    recorded = metadata.get("prompts")
    if not isinstance(recorded, list) or len(recorded) < 2:
        return ()
    try:
        pairs = tuple((str(item["text"]), float(item["weight"])) for item in recorded)
    except (KeyError, TypeError, ValueError):
        raise ImageReadError("its metadata's prompts are not a list of {text, weight}; pass --prompt") from None
    total = sum(weight for _, weight in pairs)
    if not total > 0:
        raise ImageReadError("its metadata's prompt weights do not have a positive sum; pass --prompt")
    return tuple((text, weight / total) for text, weight in pairs)


def check_metrics(names: Iterable[str]) -> tuple[str, ...]:
    """Validate metric names; keeps the canonical order of `METRICS`."""
    names = list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    if not names:
        raise ConfigError("name at least one metric")
    return tuple(n for n in METRICS if n in names)


class Evaluator:
    """Loads the networks the chosen metrics need once, then scores any number of pairs.

    clip_model: a ``--clip-model`` string (any backend), loaded only if a CLIP
    metric is asked for; or pass a loaded ``clip``. Several models (a list)
    score every image under each: the CLIP metrics' columns are then suffixed
    with the model, ``clip_score[open_clip:ViT-B-16-SigLIP:webli]``, so an
    output optimized with one encoder can be cross-scored by others. seed: seeds the
    patch crops afresh for every image, so a score does not depend on the
    order of the images. size: long side (px) for the full-reference metrics
    (None = the output's own size). n_patches: crops of the patch score.
    """

    def __init__(self, *, clip_model: str | Sequence[str] = DEFAULT_CLIP_MODEL, device: str = "auto",
                 metrics: Sequence[str] = METRICS, seed: int = 0, size: int | None = DEFAULT_SIZE,
                 n_patches: int = M.PATCH_COUNT, clip: ImageTextEncoder | Sequence[ImageTextEncoder] | None = None,
                 vgg: VGGFeatures | None = None) -> None:
        self.metrics = check_metrics(metrics)
        if size is not None and not 16 <= size <= 8192:
            raise ConfigError(f"size must be in 16..8192 px (or None), got {size}")
        if n_patches < 1:
            raise ConfigError(f"n_patches must be >= 1, got {n_patches}")
        if seed < 0:
            raise ConfigError(f"seed must be >= 0, got {seed}")
        self.device = resolve_device(device)
        self.seed, self.size, self.n_patches = seed, size, n_patches
        given = encoder_list(clip)
        names = [clip_model] if isinstance(clip_model, str) else list(clip_model)
        if given:
            names = [encoder.name or name for encoder, name in zip(given, names + [""] * len(given))]
        elif not names:
            raise ConfigError("give at least one --clip-model")
        names = [parse_model_spec(name).text if name else name for name in names]
        if len(set(names)) != len(names):
            raise ConfigError(f"--clip-model: the same model twice ({', '.join(names)})")
        self.clip_model = names[0] if len(names) == 1 else names
        wanted = set(self.metrics)
        self.clips: list[tuple[str, ImageTextEncoder]] = []
        if wanted & CLIP_METRICS:
            # Loaded in fp32 (no autocast); a passed encoder keeps its own precision setting.
            encoders = given or [load_encoder(name, self.device) for name in names]
            suffixes = [""] if len(encoders) == 1 else [f"[{name}]" for name in names]
            self.clips = [(suffix, encoder.to(self.device)) for suffix, encoder in zip(suffixes, encoders)]
        self.clip = self.clips[0][1] if self.clips else None
        """The first (or only) encoder."""
        from .perceptual import DISTS, LPIPS, vgg16_trunk

        # LPIPS-VGG, DISTS and the content loss share one frozen VGG16 trunk (one load, one copy in memory).
        trunk = vgg16_trunk() if wanted & {"lpips_vgg", "dists"} or ("content_loss" in wanted and vgg is None) else None
        self.lpips_vgg = LPIPS("vgg16", trunk).to(self.device) if "lpips_vgg" in wanted else None
        self.lpips_alex = LPIPS("alexnet").to(self.device) if "lpips_alex" in wanted else None
        self.dists = DISTS(trunk).to(self.device) if "dists" in wanted else None
        self.vgg = None
        if "content_loss" in wanted:
            self.vgg = (vgg if vgg is not None else VGGFeatures(trunk, M.CONTENT_LAYERS, "vgg16")).to(self.device)
        self._texts: dict[tuple[int, str, bool], torch.Tensor] = {}
        self._content_key: Any = None
        self._content_cache: dict[str, Any] = {}

    def settings(self) -> dict[str, Any]:
        """What shapes the numbers (goes into the JSON output)."""
        return {"clip_model": self.clip_model if self.clip is not None else None, "seed": self.seed,
                "size": self.size, "n_patches": self.n_patches, "patch_long_side": M.PATCH_LONG_SIDE,
                "patch_sizes": [M.PATCH_MIN, M.PATCH_MAX], "metrics": list(self.metrics),
                "device": str(self.device)}

    def _text(self, text: str | Sequence[tuple[str, float]], templates: bool, index: int = 0) -> torch.Tensor:
        """A text's unit embedding; for (text, weight) pairs, their weighted mean embedding, normalized
        (the "weighted mix" a fused output is scored against)."""
        if not isinstance(text, str):
            mixed = sum(weight * self._text(part, templates, index) for part, weight in text)
            return torch.nn.functional.normalize(mixed, dim=-1)
        key = (index, text, templates)
        if key not in self._texts:
            self._texts[key] = M._text_embedding(self.clips[index][1], text, templates)
        return self._texts[key]

    def _content_features(self, key: Any, content: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        """What the metrics need from the content image; the last content's is kept (``key`` None: no caching)."""
        full_key = None if key is None else (key, tuple(target.shape))
        if full_key is not None and full_key == self._content_key:
            return self._content_cache
        wanted = set(self.metrics)
        cache: dict[str, Any] = {}
        if "clip_direction" in wanted:
            for index, (_, encoder) in enumerate(self.clips):
                cache[("clip", index)] = encoder.encode_image(content.to(self.device))
        if self.lpips_vgg is not None and "lpips_vgg" in wanted:
            cache["lpips_vgg"] = self.lpips_vgg.features_of(target)
        if self.lpips_alex is not None and "lpips_alex" in wanted:
            cache["lpips_alex"] = self.lpips_alex.features_of(target)
        if self.dists is not None and "dists" in wanted:
            cache["dists"] = self.dists.features_of(target)
        if self.vgg is not None and "content_loss" in wanted:
            cache["content_loss"] = self.vgg(target)
        self._content_key, self._content_cache = full_key, cache
        return cache

    @torch.no_grad()
    def score(self, output: torch.Tensor, content: torch.Tensor, prompt: str | Sequence[tuple[str, float]],
              source_text: str = M.SOURCE_TEXT, *, content_key: Any = None) -> dict[str, float]:
        """All chosen metrics for one (1, 3, H, W) output and its content, both in [0, 1].

        prompt: a text, or a fused output's (text, normalized weight) pairs: the CLIP metrics then
        score against the weighted mix (the weighted mean of the prompts' embeddings, normalized),
        and ``clip_score`` and ``clip_direction`` also against each prompt, in columns suffixed
        ``[prompt: TEXT]``.
        content_key: any hashable naming the content (e.g. its path); consecutive calls with the
        same key reuse the content's features instead of recomputing them.
        """
        if output.ndim != 4 or output.shape[0] != 1:
            raise ImageReadError(f"score() takes one (1, 3, H, W) image, got {tuple(output.shape)}")
        out: dict[str, float] = {}
        wanted = set(self.metrics)
        # The full-reference pair: output at `size` px long side, content resized to exactly that size.
        small = (M.resize_long_side(output, self.size) if self.size else output).to(self.device)
        target = M.match_size(content, small).to(self.device)
        cached = self._content_features(content_key, content, target)
        for index, (suffix, encoder) in enumerate(self.clips):
            embedding = encoder.encode_image(output.to(self.device))
            if "clip_score" in wanted:
                out["clip_score" + suffix] = float(embedding[0] @ self._text(prompt, False, index))
            if "patch_clip_score" in wanted:
                out["patch_clip_score" + suffix] = M.patch_clip_score(encoder, output, self._text(prompt, False, index),
                                                                      seed=self.seed, n=self.n_patches)
            if "clip_direction" in wanted:
                direction = self._text(prompt, True, index) - self._text(source_text, True, index)
                out["clip_direction" + suffix] = float(
                    M.directional_similarity(embedding, cached[("clip", index)], direction)[0])
            for text, _ in ([] if isinstance(prompt, str) else prompt):
                each = f"{suffix}[prompt: {text}]"
                if "clip_score" in wanted:
                    out["clip_score" + each] = float(embedding[0] @ self._text(text, False, index))
                if "clip_direction" in wanted:
                    direction = self._text(text, True, index) - self._text(source_text, True, index)
                    out["clip_direction" + each] = float(
                        M.directional_similarity(embedding, cached[("clip", index)], direction)[0])
        if "lpips_vgg" in wanted:
            out["lpips_vgg"] = float(self.lpips_vgg.distance(self.lpips_vgg.features_of(small), cached["lpips_vgg"])[0])
        if "lpips_alex" in wanted:
            out["lpips_alex"] = float(self.lpips_alex.distance(self.lpips_alex.features_of(small),
                                                               cached["lpips_alex"])[0])
        if "dists" in wanted:
            out["dists"] = float(self.dists.distance(self.dists.features_of(small), cached["dists"])[0])
        if "ssim" in wanted:
            out["ssim"] = float(M.ssim(small, target)[0])
        if "content_loss" in wanted:
            out["content_loss"] = float(content_loss(self.vgg(small), cached["content_loss"], M.CONTENT_LAYERS))
        return {name: out[name] for name in metric_names([out])}

    def score_job(self, job: EvalJob) -> dict[str, Any]:
        """One result row: the job's paths and texts, the output's size and every chosen metric.

        A video output (scored against its input video) gets its frames' mean metrics and the
        flow-warped temporal errors of output and input (`clipstyle_opt.evaluate.video`)."""
        if is_video(job.image):
            return score_video(self, job)
        output = load_image(job.image)
        content = load_image(job.content)
        if min(output.shape[-2:]) < 16:
            raise ImageReadError(f"{job.image} is too small to evaluate ({tuple(output.shape[-2:])} px; need >= 16)")
        started = time.perf_counter()
        scores = self.score(output, content, job.prompts or job.prompt, job.source_text,
                            content_key=str(job.content.resolve()))
        return {"image": str(job.image), "content": str(job.content), "prompt": job.prompt,
                "source_text": job.source_text, "width": int(output.shape[-1]), "height": int(output.shape[-2]),
                **scores, "seconds": round(time.perf_counter() - started, 3)}


@dataclass
class Evaluation:
    """The rows of an evaluation (one dict per image) and the settings that shaped them.

    Indexes and iterates like its list of rows.
    """

    rows: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]

    def mean(self) -> dict[str, float]:
        """Mean of each metric over the images."""
        return summarize(self.rows)

    def table(self) -> str:
        """The plain-text table `clipstyle eval` prints."""
        return format_table(self.rows)

    def write_csv(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the rows as CSV to ``path`` (refuses to replace a file unless ``overwrite``); returns the path."""
        return write_csv(self.rows, path, overwrite=overwrite)

    def write_json(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the rows and the settings as JSON to ``path`` (refuses to replace a file unless
        ``overwrite``); returns the path.
        """
        return write_json(self.rows, path, settings=self.settings, overwrite=overwrite)


def evaluate(images: Sequence[str | os.PathLike], *, content: str | os.PathLike | None = None,
             prompt: str | None = None, source_text: str | None = None,
             clip_model: str | Sequence[str] = DEFAULT_CLIP_MODEL,
             device: str = "auto", metrics: Sequence[str] = METRICS, seed: int = 0,
             size: int | None = DEFAULT_SIZE, n_patches: int = M.PATCH_COUNT,
             clip: ImageTextEncoder | Sequence[ImageTextEncoder] | None = None,
             callback: Callable[[int, int, dict[str, Any]], None] | None = None) -> Evaluation:
    """Score output images; one row (dict) per image, in the order given.

    content / prompt / source_text override every image's sidecar. All
    inputs are checked (files, sidecars) before any model is loaded.
    callback(i, n, row) runs after each image (1-based i).
    """
    if not images:
        raise ConfigError("give at least one image to evaluate")
    jobs = [resolve_job(image, content=content, prompt=prompt, source_text=source_text,
                        clip_model=clip_model if clip is None else None) for image in images]
    evaluator = Evaluator(clip_model=clip_model, device=device, metrics=metrics, seed=seed, size=size,
                          n_patches=n_patches, clip=clip)
    rows: list[dict[str, Any]] = [{} for _ in jobs]
    # Outputs of the same content one after another, so its features are computed once.
    order = sorted(range(len(jobs)), key=lambda i: str(jobs[i].content.resolve()))
    for done, index in enumerate(order, 1):
        rows[index] = evaluator.score_job(jobs[index])
        if callback is not None:
            callback(done, len(jobs), rows[index])
    return Evaluation(rows, evaluator.settings())
