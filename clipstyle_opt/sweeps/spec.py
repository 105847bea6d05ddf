"""Sweep specs: read (YAML or JSON), validate before anything runs, expand into runs.

A spec names the photos, prompts and settings, and the axes to vary::

    name: patch-ablation
    contents: [photos/*.jpg]           # files or globs, relative to the spec file
    prompts: ["fire", "a watercolor painting"]
    style_images: [starry.jpg]         # optional axis
    base: {size: 256, steps: 100}      # overrides of any StyleConfig field
    grid:                              # Cartesian product
      lambda_patch: [0, 4500, 9000]
      threshold: [0, 0.7]
    zip:                               # paired lists (one group; a list of mappings makes several)
      n_crops: [16, 64]
      crop_size: [64, 128]
    variants:                          # named sets of overrides, an axis called "variant"
      - {name: full}
      - {name: no-patch, lambda_patch: 0}
    seeds: [0, 1]

``content``, ``prompt`` and ``style_image`` are axes like any other: they may
also appear under ``grid`` or ``zip`` (e.g. zip each photo with its own prompt).
The runs are the product of all axis groups. Each run's id is a hash of what
determines its image (the content and style files' bytes, the prompt and the
resolved `StyleConfig`), not of its position, so adding an axis value later
reruns nothing that exists.

Every error names the field and where it was written: ``spec.yaml:7:20:
grid.threshold[1]: threshold must be in [0, 2] ...``. Reading a file and
locating its fields: `clipstyle_opt.sweeps.spec_file`; run ids:
`clipstyle_opt.sweeps.identity`.
"""
from __future__ import annotations

import difflib
import glob
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from ..config import StyleConfig, settings
from ..encoders.prompts import check_text
from ..errors import ClipstyleError, ConfigError, ImageReadError
from .identity import SPEED_ONLY, canonical_config, file_digest, run_id
from .spec_file import Path_, Where, read_spec_file

#: The top-level keys a sweep spec may have; any other is refused with a suggestion.
SPEC_KEYS = ("name", "contents", "prompts", "style_images", "base", "grid", "zip", "variants", "seeds")
RUN_AXES = ("content", "prompt", "style_image")
"""Axes that are not `StyleConfig` fields."""
CONFIG_FIELDS = tuple(item.name for item in settings())
"""The `StyleConfig` settings a spec may set (under base, grid, zip, variants)."""


@dataclass
class Run:
    """One run of a sweep: what goes into `Stylizer.stylize`, its id and its axis values.

    content / style_image: absolute paths. axes: the value of every axis of the
    sweep for this run (content and style image by file name).
    """

    run_id: str
    content: str
    prompt: str
    style_image: Optional[str]
    config: StyleConfig
    axes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what travels to a Ray worker and into ``sweep.json``)."""
        return {"run_id": self.run_id, "content": self.content, "prompt": self.prompt,
                "style_image": self.style_image, "config": self.config.to_dict(), "axes": dict(self.axes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Run":
        """A `Run` from the dict its ``to_dict`` wrote (as sent to Ray workers and kept in sidecars)."""
        return cls(data["run_id"], data["content"], data["prompt"], data.get("style_image"),
                   StyleConfig.from_dict(data["config"]), dict(data.get("axes", {})))


@dataclass
class SweepSpec:
    """A parsed, validated spec: the runs it expands to and the axes that vary.

    axes: names of the axes in expansion order (only those with more than one
    value are "varying"; see `varying_axes`). source: the spec file, or None.
    """

    name: str
    runs: list[Run]
    axes: list[str]
    source: Optional[Path] = None
    raw: dict[str, Any] = field(default_factory=dict)
    duplicates: int = 0

    def varying_axes(self) -> list[str]:
        """The axes whose value differs between runs, in expansion order."""
        out = []
        for axis in self.axes:
            values = {json.dumps(run.axes.get(axis), sort_keys=True, default=str) for run in self.runs}
            if len(values) > 1:
                out.append(axis)
        return out


# --- validation and expansion -----------------------------------------------------------------------

def _unknown_key(where: Where, path: Path_, key: Any, known: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return where.error(path, f"unknown key {key!r}{hint}")


def _as_list(value: Any, where: Where, path: Path_, what: str) -> list[Any]:
    if isinstance(value, (str, int, float)) or value is None:
        return [value]
    if not isinstance(value, list):
        raise where.error(path, f"{what} must be a list, got {type(value).__name__}")
    if not value:
        raise where.error(path, f"{what} is empty: give at least one value")
    return value


def _expand_files(patterns: Iterable[Any], base_dir: Path, where: Where, path: Path_, what: str) -> list[Any]:
    """Files or globs (relative to ``base_dir``) -> sorted absolute paths; None stays None (no style image)."""
    out: list[Any] = []
    for index, pattern in enumerate(patterns):
        here = path + (index,)
        if pattern is None and what == "style_image":
            out.append(None)
            continue
        if not isinstance(pattern, str) or not pattern.strip():
            raise where.error(here, f"{what} must be a file name or glob, got {pattern!r}")
        expanded = os.path.expanduser(pattern)
        full = expanded if os.path.isabs(expanded) else str(base_dir / expanded)
        if glob.has_magic(pattern):
            matches = sorted(p for p in glob.glob(full) if os.path.isfile(p))
            if not matches:
                raise where.error(here, f"{pattern!r} matches no file", what)
            out.extend(str(Path(m).resolve()) for m in matches)
        else:
            if not os.path.isfile(full):
                raise where.error(here, f"{what} file not found: {pattern}", what)
            out.append(str(Path(full).resolve()))
    return out


def _check_axis_value(key: str, value: Any, base: dict[str, Any], where: Where, path: Path_) -> None:
    if key == "prompt":
        if not isinstance(value, str):
            raise where.error(path, f"a prompt must be a string, got {value!r}")
        try:
            check_text(value, "the prompt", clip_model=base.get("clip_model", StyleConfig.clip_model))
        except ConfigError as exc:
            raise where.error(path, str(exc)) from None
        return
    if key in ("content", "style_image"):
        return
    try:
        StyleConfig.from_dict({**base, key: value})
    except ConfigError as exc:
        raise where.error(path, str(exc), key) from None


def _short_names(paths: Sequence[str]) -> dict[str, str]:
    """File name of each path; the path relative to their common folder where names collide."""
    names = {p: Path(p).name for p in paths}
    if len(set(names.values())) < len(names):
        common = os.path.commonpath(list(paths)) if len(paths) > 1 else str(Path(paths[0]).parent)
        names = {p: os.path.relpath(p, common) for p in paths}
    return names


def build_spec(data: Mapping[str, Any], *, base_dir: str | os.PathLike = ".", where: Where | None = None,
               overrides: Mapping[str, Any] | None = None, source: Optional[Path] = None) -> SweepSpec:
    """Validate a spec mapping and expand it into runs. Nothing is loaded; every file is checked to exist.

    overrides: `StyleConfig` settings applied over ``base`` (axes still win), e.g. from command-line flags.
    """
    where = where or Where("sweep spec")
    base_dir = Path(base_dir)
    for key in data:
        if key not in SPEC_KEYS:
            raise _unknown_key(where, (key,), key, SPEC_KEYS)
    name = data.get("name") or (source.stem if source else "sweep")
    if not isinstance(name, str):
        raise where.error(("name",), f"name must be a string, got {name!r}")

    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise where.error(("base",), "base must be a mapping of StyleConfig settings")
    for key, value in base.items():
        if key not in CONFIG_FIELDS:
            raise _unknown_key(where, ("base", key), key, CONFIG_FIELDS)
        _check_axis_value(key, value, {}, where, ("base", key))
    merged_base = {**base, **dict(overrides or {})}
    try:
        StyleConfig.from_dict(merged_base)
    except ConfigError as exc:
        raise where.error(("base", exc.key) if exc.key in base else ("base",), str(exc), exc.key) from None

    groups: list[list[tuple[dict[str, Any], dict[str, Path_]]]] = []
    seen: dict[str, Path_] = {}
    axes: list[str] = []
    known = (*RUN_AXES, *CONFIG_FIELDS)

    def claim(key: str, path: Path_) -> None:
        if key in seen:
            raise where.error(path, f"{key!r} is already an axis (at {where(seen[key]).split(': ')[0]})")
        seen[key] = path
        axes.append(key)

    def values_of(key: str, raw: Any, path: Path_) -> list[Any]:
        values = _as_list(raw, where, path, f"{'.'.join(str(p) for p in path)}")
        if key in ("content", "style_image"):
            return values  # expanded below (globs)
        for index, value in enumerate(values):
            _check_axis_value(key, value, merged_base, where, path + (index,))
        return values

    def file_axis(key: str, raw: Any, path: Path_) -> tuple[list[Any], list[Path_]]:
        values = _as_list(raw, where, path, key)
        expanded, origins = [], []
        for index, pattern in enumerate(values):
            found = _expand_files([pattern], base_dir, where, path + (index,), key)
            expanded.extend(found)
            origins.extend([path + (index,)] * len(found))
        return expanded, origins

    for top, axis in (("contents", "content"), ("prompts", "prompt"), ("style_images", "style_image")):
        if top in data:
            claim(axis, (top,))
            if axis == "prompt":
                values = values_of(axis, data[top], (top,))
                groups.append([({axis: v}, {axis: (top, i)}) for i, v in enumerate(values)])
            else:
                values, origins = file_axis(axis, data[top], (top,))
                groups.append([({axis: v}, {axis: o}) for v, o in zip(values, origins)])

    variants = data.get("variants")
    if variants is not None:
        if not isinstance(variants, list) or not variants:
            raise where.error(("variants",), "variants must be a non-empty list of mappings, each with a name")
        claim("variant", ("variants",))
        group = []
        names_seen: set[str] = set()
        for index, variant in enumerate(variants):
            here = ("variants", index)
            if not isinstance(variant, dict):
                raise where.error(here, "each variant must be a mapping: {name: ..., SETTING: VALUE, ...}")
            label = variant.get("name")
            if not isinstance(label, str) or not label.strip():
                raise where.error(here, "each variant needs a name (a string)")
            if label in names_seen:
                raise where.error(here + ("name",), f"variant name {label!r} is used twice")
            names_seen.add(label)
            assignment, origin = {"variant": label}, {"variant": here + ("name",)}
            for key, value in variant.items():
                if key == "name":
                    continue
                if key not in CONFIG_FIELDS:
                    raise _unknown_key(where, here + (key,), key, CONFIG_FIELDS)
                _check_axis_value(key, value, merged_base, where, here + (key,))
                assignment[key] = value
                origin[key] = here + (key,)
            group.append((assignment, origin))
        groups.append(group)

    grid = data.get("grid") or {}
    if not isinstance(grid, dict):
        raise where.error(("grid",), "grid must be a mapping of SETTING: [values]")
    for key, raw in grid.items():
        here = ("grid", key)
        if key not in known:
            raise _unknown_key(where, here, key, known)
        claim(key, here)
        if key in ("content", "style_image"):
            values, origins = file_axis(key, raw, here)
            groups.append([({key: v}, {key: o}) for v, o in zip(values, origins)])
        else:
            values = values_of(key, raw, here)
            groups.append([({key: v}, {key: here + (i,)}) for i, v in enumerate(values)])

    zips = data.get("zip") or []
    if isinstance(zips, dict):
        zips = [zips]
        zip_paths: list[Path_] = [("zip",)]
    elif isinstance(zips, list):
        zip_paths = [("zip", i) for i in range(len(zips))]
    else:
        raise where.error(("zip",), "zip must be a mapping of SETTING: [values] (or a list of such mappings)")
    for group_raw, group_path in zip(zips, zip_paths):
        if not isinstance(group_raw, dict) or not group_raw:
            raise where.error(group_path, "each zip group must be a non-empty mapping of SETTING: [values]")
        columns: dict[str, tuple[list[Any], list[Path_]]] = {}
        for key, raw in group_raw.items():
            here = group_path + (key,)
            if key not in known:
                raise _unknown_key(where, here, key, known)
            claim(key, here)
            if key in ("content", "style_image"):
                values, origins = file_axis(key, raw, here)
                if len(values) != len(_as_list(raw, where, here, key)):
                    raise where.error(here, f"a zipped {key} must name single files, not globs")
            else:
                values = values_of(key, raw, here)
                origins = [here + (i,) for i in range(len(values))]
            columns[key] = (values, origins)
        lengths = {key: len(values) for key, (values, _) in columns.items()}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{k}: {n}" for k, n in lengths.items())
            raise where.error(group_path, f"zipped lists must have the same length ({listed})")
        count = next(iter(lengths.values()))
        groups.append([({k: v[0][i] for k, v in columns.items()}, {k: v[1][i] for k, v in columns.items()})
                       for i in range(count)])

    if "seeds" in data:
        claim("seed", ("seeds",))
        values = values_of("seed", data["seeds"], ("seeds",))
        groups.append([({"seed": v}, {"seed": ("seeds", i)}) for i, v in enumerate(values)])

    for axis, top in (("content", "contents"), ("prompt", "prompts")):
        if axis not in seen:
            raise where.error((), f"no {top}: give {top} (or a {axis} axis under grid or zip)")

    runs, duplicates = _expand(groups, merged_base, where)
    names = _short_names(sorted({r.content for r in runs} | {r.style_image for r in runs if r.style_image}))
    for run in runs:
        if "content" in run.axes:
            run.axes["content"] = names[run.content]
        if run.style_image and "style_image" in run.axes:
            run.axes["style_image"] = names[run.style_image]
    for run in runs:
        run.axes = {axis: run.axes.get(axis) for axis in axes}
    return SweepSpec(name=name, runs=runs, axes=axes, source=source, raw=dict(data), duplicates=duplicates)


def _expand(groups: list[list[tuple[dict[str, Any], dict[str, Path_]]]], base: dict[str, Any],
            where: Where) -> tuple[list[Run], int]:
    digests: dict[str, str] = {}
    runs: list[Run] = []
    ids: set[str] = set()
    duplicates = 0
    for combination in itertools.product(*groups):
        values: dict[str, Any] = {}
        origins: dict[str, Path_] = {}
        for assignment, origin in combination:
            values.update(assignment)
            origins.update(origin)
        config_values = {k: v for k, v in values.items() if k in CONFIG_FIELDS}
        try:
            config = StyleConfig.from_dict({**base, **config_values})
        except ConfigError as exc:
            path = origins.get(exc.key or "", ("base", exc.key) if exc.key in base else ())
            raise where.error(path, f"{exc} (in the run {_describe(values)})", exc.key) from None
        content, prompt, style = values.get("content"), values.get("prompt"), values.get("style_image")
        try:
            identity = run_id(file_digest(content, digests), prompt, file_digest(style, digests) if style else None,
                              config)
        except OSError as exc:
            raise ImageReadError(f"cannot read {exc.filename}: {exc.strerror}") from None
        if identity in ids:
            duplicates += 1
            continue
        ids.add(identity)
        runs.append(Run(identity, content, prompt, style, config, dict(values)))
    return runs, duplicates


def _describe(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={Path(v).name if k in ('content', 'style_image') and v else v}" for k, v in values.items())


def load_spec(spec: str | os.PathLike | Mapping[str, Any], *, overrides: Mapping[str, Any] | None = None,
              base_dir: str | os.PathLike | None = None) -> SweepSpec:
    """A `SweepSpec` from a spec file (paths in it relative to the file) or a mapping (paths relative to
    ``base_dir``, default the working directory). Raises `ConfigError` naming the field and its position."""
    if isinstance(spec, Mapping):
        return build_spec(spec, base_dir=base_dir or ".", overrides=overrides)
    path = Path(spec)
    data, where = read_spec_file(path)
    return build_spec(data, base_dir=base_dir or path.parent, where=where, overrides=overrides, source=path)


__all__ = ["Run", "SweepSpec", "load_spec", "build_spec", "read_spec_file", "run_id", "canonical_config",
           "SPEC_KEYS", "SPEED_ONLY", "ClipstyleError"]
