"""Sweep specs: expansion (grid x zip x variants x seeds), stable run ids, and validation errors that
name the field and where it was written. Nothing here loads a model."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from clipstyle_opt.cli import cli
from clipstyle_opt.errors import ConfigError
from clipstyle_opt.sweeps.spec import load_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(EXAMPLES / name, folder / name)
    return folder


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_times_zip_times_seeds_expands_to_the_product(tmp_path, photos):
    spec = load_spec(write(tmp_path, """
contents: [photos/*.png]
prompts: [fire, water]
base: {size: 64, steps: 2}
grid:
  lambda_patch: [0, 9000]
  threshold: [0, 0.7]
zip:
  n_crops: [4, 8, 16]
  crop_size: [32, 48, 64]
seeds: [0, 1]
"""))
    assert len(spec.runs) == 2 * 2 * 2 * 2 * 3 * 2
    assert spec.axes == ["content", "prompt", "lambda_patch", "threshold", "n_crops", "crop_size", "seed"]
    pairs = {(run.config.n_crops, run.config.crop_size) for run in spec.runs}
    assert pairs == {(4, 32), (8, 48), (16, 64)}  # zipped, not crossed
    combos = {(r.axes["content"], r.prompt, r.config.lambda_patch, r.config.threshold, r.config.n_crops, r.config.seed)
              for r in spec.runs}
    assert len(combos) == len(spec.runs)
    assert all(run.config.size == 64 and run.config.steps == 2 for run in spec.runs)
    assert {r.axes["content"] for r in spec.runs} == {"chelsea.png", "coffee.png"}
    assert len({run.run_id for run in spec.runs}) == len(spec.runs)


def test_variants_are_one_axis_of_named_overrides(tmp_path, photos):
    spec = load_spec(write(tmp_path, """
contents: [photos/chelsea.png]
prompts: [fire]
variants:
  - {name: full}
  - {name: no-patch, lambda_patch: 0}
  - {name: no-augment, distortion: 0}
"""))
    by_name = {run.axes["variant"]: run.config for run in spec.runs}
    assert set(by_name) == {"full", "no-patch", "no-augment"}
    assert by_name["no-patch"].lambda_patch == 0 and by_name["full"].lambda_patch == 9000
    assert by_name["no-augment"].distortion == 0 and by_name["no-patch"].distortion == 0.5
    assert spec.varying_axes() == ["variant"]


def test_run_ids_depend_on_the_resolved_config_not_the_position(tmp_path, photos):
    small = load_spec(write(tmp_path, "contents: [photos/chelsea.png]\nprompts: [fire]\n"
                                      "grid: {lambda_patch: [0, 9000]}\n", "a.yaml"))
    larger = load_spec(write(tmp_path, "contents: [photos/chelsea.png]\nprompts: [fire]\n"
                                       "grid: {lambda_patch: [4500, 0.0, 9000]}\nbase: {device: cpu}\n", "b.yaml"))
    ids = {run.config.lambda_patch: run.run_id for run in small.runs}
    ids_larger = {run.config.lambda_patch: run.run_id for run in larger.runs}
    # 0 and 0.0 are the same setting; the device (speed only) is not part of the id; positions moved.
    assert ids[0] == ids_larger[0] and ids[9000] == ids_larger[9000]
    assert ids_larger[4500] not in ids.values()
    # Another content file with the same name changes the id: the bytes count, not the path.
    shutil.copy(EXAMPLES / "coffee.png", photos / "chelsea.png")
    again = load_spec(write(tmp_path, "contents: [photos/chelsea.png]\nprompts: [fire]\n"
                                      "grid: {lambda_patch: [0, 9000]}\n", "a.yaml"))
    assert {run.run_id for run in again.runs}.isdisjoint(ids.values())


def test_a_json_spec_reads_like_yaml(tmp_path, photos):
    spec = load_spec(write(tmp_path, json.dumps({"contents": ["photos/*.png"], "prompts": ["fire"],
                                                 "grid": {"threshold": [0, 0.7]}}), "spec.json"))
    assert len(spec.runs) == 4


@pytest.mark.parametrize("text, where, message", [
    ("contents: [photos/*.png]\nprompts: [fire]\ngrid:\n  threshold: [0, 3]\n", "spec.yaml:4:18: grid.threshold[1]",
     "threshold must be in [0, 2]"),
    ("contents: [photos/*.png]\nprompts: [fire]\ngrid:\n  treshold: [0, 1]\n", "spec.yaml:4:3: grid.treshold",
     "unknown key 'treshold' (did you mean 'threshold'?)"),
    ("contents: [photos/*.jpg]\nprompts: [fire]\n", "spec.yaml:1:12: contents[0]", "matches no file"),
    ("contents: [photos/*.png]\nprompts: [fire]\nzip:\n  n_crops: [4, 8]\n  crop_size: [32]\n", "spec.yaml:3:1: zip",
     "zipped lists must have the same length (n_crops: 2, crop_size: 1)"),
    ("contents: [photos/*.png]\nprompts: [fire, '']\n", "spec.yaml:2:17: prompts[1]", "the prompt is empty"),
    ("contents: [photos/*.png]\nprompts: [fire]\nbase:\n  size: 32\n", "spec.yaml:4:9: base.size",
     "size must be in 64..4096"),
    ("contents: [photos/*.png]\nprompts: [fire]\nseeds: [0, -1]\n", "spec.yaml:3:12: seeds[1]", "seed must be >= 0"),
    ("contents: [photos/*.png]\nprompts: [fire]\ngrid: {seed: [0]}\nseeds: [1]\n", "spec.yaml:4:1: seeds",
     "'seed' is already an axis"),
    ("contents: [photos/*.png]\nprompts: [fire]\nvariants:\n  - {name: a}\n  - {lambda_c: 3}\n",
     "spec.yaml:5:5: variants[1]", "each variant needs a name"),
    ("prompts: [fire]\n", "spec.yaml", "no contents"),
    ("contents: [photos/*.png]\nprompts: [fire\n", "spec.yaml:3:1", "not valid YAML"),
    ("contents: [photos/*.png]\nprompt: [fire]\n", "spec.yaml:2:1: prompt", "unknown key 'prompt' (did you mean"),
])
def test_validation_errors_name_the_field_and_its_position(tmp_path, photos, text, where, message):
    with pytest.raises(ConfigError) as info:
        load_spec(write(tmp_path, text))
    text = str(info.value)
    assert text.startswith(str(tmp_path / where)), text
    assert message in text


def test_a_combination_that_only_fails_together_names_its_run(tmp_path, photos):
    # Each value is valid alone; one pair is not (style layers of VGG19 under VGG16).
    with pytest.raises(ConfigError) as info:
        load_spec(write(tmp_path, "contents: [photos/chelsea.png]\nprompts: [fire]\nbase: {vgg: vgg19}\n"
                                  "grid:\n  vgg: [vgg19, vgg16]\n  style_layers: [relu5_4, relu5_1]\n"))
    assert "grid.vgg" in str(info.value) or "grid.style_layers" in str(info.value)
    assert "(in the run " in str(info.value) and "vgg=vgg16" in str(info.value)


def test_json_syntax_errors_give_line_and_column(tmp_path, photos):
    with pytest.raises(ConfigError, match=r"spec.json:2:1: not valid JSON"):
        load_spec(write(tmp_path, '{"contents": ["photos/*.png"],\n}', "spec.json"))


def test_cli_shorthand_dry_run_counts_and_lists_runs_without_loading_models(photos, monkeypatch):
    monkeypatch.chdir(photos.parent)
    result = CliRunner().invoke(cli, ["sweep", "photos/*.png", "-p", "fire", "-p", "watercolor",
                                      "--grid", "lambda_patch=0,4500,9000", "--grid", "threshold=0,0.7",
                                      "-o", "runs/ablation", "--dry-run", "--probe-steps", "0", "--show", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("24 runs over content (2) x prompt (2) x lambda_patch (3) x threshold (2); "
                               "0 already done")
    assert lines[1] == "first 2 run(s):"
    assert lines[2].split()[1:] == ["content=chelsea.png", "prompt=fire", "lambda_patch=0", "threshold=0"]
    assert not (photos.parent / "runs").exists()  # a dry run writes nothing


@pytest.mark.parametrize("args, message", [
    (["--grid", "lambda_patch"], "--grid must be SETTING=V1,V2,..."),
    (["--grid", "lambda_patch=0,-1"], "error: command line: --grid lambda_patch[1]: lambda_patch must be >= 0"),
    (["--zip", "n_crops=4,8", "--zip", "crop_size=32"], "zipped lists must have the same length"),
    (["--size", "32"], "error: command line: base: size must be in 64..4096"),
    (["--rows", "seed"], "--rows: 'seed' is not an axis that varies in this sweep"),
])
def test_cli_usage_errors_exit_2_with_one_line(photos, monkeypatch, args, message):
    monkeypatch.chdir(photos.parent)
    result = CliRunner().invoke(cli, ["sweep", "photos/*.png", "-p", "fire", "--dry-run", "--probe-steps", "0",
                                      *args])
    assert result.exit_code == 2, result.output
    assert message in result.output.strip().splitlines()[-1]


def test_cli_without_prompts_or_with_a_spec_and_axes_is_refused(photos, monkeypatch, tmp_path):
    monkeypatch.chdir(photos.parent)
    result = CliRunner().invoke(cli, ["sweep", "photos/*.png", "--dry-run"])
    assert result.exit_code == 2 and "give at least one prompt" in result.output
    spec = write(tmp_path, "contents: [photos/*.png]\nprompts: [fire]\n")
    result = CliRunner().invoke(cli, ["sweep", str(spec), "-p", "x", "--dry-run"])
    assert result.exit_code == 2 and "not both" in result.output


# Run ids are SHA-256 hashes of JSON, the same on every CPU: these are the ids version 0.1 (before `init` and
# `threads` existed) gave, so a sweep it made resumes without re-running anything.
EARLIER_IDS = {(): "655f3f0a377b", (("lambda_c", 300), ("steps", 100)): "2896e8ce3065"}


@pytest.mark.parametrize("overrides", list(EARLIER_IDS))
def test_settings_added_since_keep_earlier_run_ids(overrides):
    from clipstyle_opt import StyleConfig
    from clipstyle_opt.sweeps.identity import run_id

    config = StyleConfig(**dict(overrides))
    assert run_id("0" * 64, "fire", None, config) == EARLIER_IDS[overrides]
    # a start other than the paper's random one gives another image, so another id
    assert run_id("0" * 64, "fire", None, config.replace(init="identity")) != EARLIER_IDS[overrides]
