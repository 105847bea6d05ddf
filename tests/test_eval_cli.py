"""`clipstyle eval` end to end on outputs made with a random-init tiny CLIP.

Random CLIP: the CLIP numbers here only have to be finite, in range and
repeatable; what they mean is out of reach of these tests.
"""
from __future__ import annotations

import csv
import json
import math
import shutil
import urllib.error
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from clipstyle_opt.cli import cli
from clipstyle_opt.encoders import weights
from clipstyle_opt.errors import ImageReadError
from clipstyle_opt.evaluate import METRICS, Evaluator, evaluate, resolve_job
from clipstyle_opt.imageio import load_image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY = ["--size", "64", "--steps", "2", "--n-crops", "4", "--crop-size", "32", "--max-output-size", "96",
        "--device", "cpu", "--precision", "fp32", "--quiet"]
FAST = ["--device", "cpu", "--size", "0", "--quiet"]  # compare at the outputs' own (96 px) size


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def outputs(tiny_clip_path, tmp_path_factory) -> Path:
    """Two stylize outputs (fire, water) of chelsea.png with sidecars, and a plain photo without metadata."""
    folder = tmp_path_factory.mktemp("outputs")
    for prompt in ("fire", "water"):
        result = run("stylize", EXAMPLES / "chelsea.png", prompt, "--clip-model", tiny_clip_path,
                     "-o", folder / f"{prompt}.png", *TINY)
        assert result.exit_code == 0, result.output
    with Image.open(EXAMPLES / "coffee.png") as photo:
        photo.convert("RGB").resize((96, 64)).save(folder / "plain.png")
    return folder


def test_eval_end_to_end_prints_a_table_and_writes_csv_and_json(outputs, tiny_clip_path, tmp_path):
    images = [outputs / "fire.png", outputs / "water.png"]
    result = run("eval", *images, "--clip-model", tiny_clip_path, *FAST,
                 "--csv", tmp_path / "scores.csv", "--json", tmp_path / "scores.json")
    assert result.exit_code == 0, result.output
    table = result.output.splitlines()
    assert table[0].split()[:2] == ["image", "prompt"] and all(m in table[0] for m in METRICS)
    assert [line.split()[0] for line in table[1:]] == ["fire.png", "water.png", "mean"]

    with open(tmp_path / "scores.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["image"]).name for r in rows] == ["fire.png", "water.png"]
    assert [r["prompt"] for r in rows] == ["fire", "water"]
    assert all(Path(r["content"]).name == "chelsea.png" and r["source_text"] == "a Photo" for r in rows)
    assert all((r["width"], r["height"]) == ("96", "64") for r in rows)
    for row in rows:
        values = {m: float(row[m]) for m in METRICS}
        assert all(math.isfinite(v) for v in values.values())
        for name in ("clip_score", "patch_clip_score", "clip_direction", "ssim"):
            assert -1 <= values[name] <= 1, name
        for name in ("lpips_vgg", "lpips_alex", "dists", "content_loss"):
            assert values[name] > 0, name

    payload = json.loads((tmp_path / "scores.json").read_text())
    assert payload["format"] == "clipstyle_opt.eval/1"
    assert payload["settings"]["seed"] == 0 and payload["settings"]["metrics"] == list(METRICS)
    assert payload["settings"]["patch_long_side"] == 512 and payload["settings"]["size"] is None
    for row, from_json in zip(rows, payload["results"]):
        for name in METRICS:
            assert float(row[name]) == from_json[name]
    assert payload["mean"]["ssim"] == pytest.approx(sum(float(r["ssim"]) for r in rows) / 2)

    # Same seed, same numbers (the patch crops are seeded).
    again = run("eval", *images, "--clip-model", tiny_clip_path, *FAST, "--metrics", "patch_clip_score",
                "--json", tmp_path / "again.json")
    assert again.exit_code == 0, again.output
    repeated = json.loads((tmp_path / "again.json").read_text())["results"]
    assert [r["patch_clip_score"] for r in repeated] == [r["patch_clip_score"] for r in payload["results"]]


def test_eval_refuses_to_overwrite_its_outputs(outputs, tiny_clip_path, tmp_path):
    existing = tmp_path / "scores.csv"
    existing.write_text("keep me\n")
    result = run("eval", outputs / "fire.png", "--clip-model", tiny_clip_path, *FAST, "--csv", existing)
    assert result.exit_code == 1
    lines = error_lines(result.output)
    assert len(lines) == 1 and "exists" in lines[0] and "--overwrite" in lines[0]
    assert existing.read_text() == "keep me\n"
    forced = run("eval", outputs / "fire.png", "--clip-model", tiny_clip_path, *FAST, "--metrics", "ssim",
                 "--csv", existing, "--overwrite")
    assert forced.exit_code == 0, forced.output
    assert existing.read_text().startswith("image,content,prompt")


def test_missing_sidecar_without_flags_is_one_clear_line(outputs, tiny_clip_path):
    result = run("eval", outputs / "plain.png", "--clip-model", tiny_clip_path, *FAST)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = error_lines(result.output)
    assert len(lines) == 1 and "plain.png" in lines[0] and "--content" in lines[0] and "--prompt" in lines[0]
    assert result.output.strip() == lines[0]


def test_flags_stand_in_for_a_missing_sidecar_and_override_one(outputs, tiny_clip_path, tmp_path):
    result = run("eval", outputs / "plain.png", outputs / "fire.png", "--content", EXAMPLES / "coffee.png",
                 "--prompt", "ice", "--source-text", "a picture", "--clip-model", tiny_clip_path, *FAST,
                 "--metrics", "clip_direction,ssim", "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "s.json").read_text())["results"]
    assert [r["prompt"] for r in rows] == ["ice", "ice"]
    assert all(Path(r["content"]).name == "coffee.png" and r["source_text"] == "a picture" for r in rows)
    assert set(rows[0]) >= {"clip_direction", "ssim"} and "lpips_vgg" not in rows[0]
    assert rows[0]["ssim"] > 0.9  # plain.png is coffee.png shrunk


def test_without_clip_metrics_no_clip_is_loaded(outputs, tmp_path):
    result = run("eval", outputs / "fire.png", "--clip-model", tmp_path / "no-such-model.pt", *FAST,
                 "--metrics", "ssim,lpips_alex")
    assert result.exit_code == 0, result.output
    assert "lpips_alex" in result.output and "clip_score" not in result.output


def test_unknown_metric_and_missing_image_are_clear_errors(outputs, tmp_path):
    bad = run("eval", outputs / "fire.png", *FAST, "--metrics", "ssim,fid")
    assert bad.exit_code == 2 and "fid" in error_lines(bad.output)[0]
    missing = run("eval", tmp_path / "nope.png", *FAST)
    assert missing.exit_code == 1 and "not found" in error_lines(missing.output)[0]


def test_default_clip_model_offline_fails_with_one_line(outputs, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPSTYLE_CACHE", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(weights.urllib.request, "urlopen", no_network)
    result = run("eval", outputs / "fire.png", *FAST)
    assert result.exit_code == 1
    lines = error_lines(result.output)
    assert len(lines) == 1 and "ViT-B/32" in lines[0] and "--clip-model" in lines[0]
    assert "Traceback" not in result.output


def test_content_path_relative_to_the_output_folder(outputs, tmp_path):
    shutil.copy(EXAMPLES / "chelsea.png", tmp_path / "photo.png")
    shutil.copy(outputs / "fire.png", tmp_path / "out.png")
    metadata = json.loads((outputs / "fire.json").read_text())
    metadata["content"] = "photo.png"
    (tmp_path / "out.json").write_text(json.dumps(metadata))
    assert resolve_job(tmp_path / "out.png").content == tmp_path / "photo.png"
    metadata["content"] = "gone.png"
    (tmp_path / "out.json").write_text(json.dumps(metadata))
    with pytest.raises(ImageReadError, match="gone.png.*--content"):
        resolve_job(tmp_path / "out.png")


def test_python_api_keeps_order_and_content_caching_changes_nothing(outputs, tiny_clip, tmp_path):
    other = tmp_path / "other.png"
    shutil.copy(outputs / "plain.png", other)
    (tmp_path / "other.json").write_text(json.dumps({"prompt": "ice", "content": str(EXAMPLES / "coffee.png")}))
    images = [outputs / "fire.png", other, outputs / "water.png"]
    metrics = ("clip_direction", "lpips_alex", "ssim")
    # Scored grouped by content (fire, water, then other), returned in the order given.
    result = evaluate(images, clip=tiny_clip, device="cpu", size=None, metrics=metrics)
    assert [Path(r["image"]).name for r in result] == ["fire.png", "other.png", "water.png"]
    assert [Path(r["content"]).name for r in result] == ["chelsea.png", "coffee.png", "chelsea.png"]
    assert set(result.mean()) == set(metrics)
    assert "other.png" in result.table() and "mean" in result.table()

    evaluator = Evaluator(clip=tiny_clip, device="cpu", size=None, metrics=metrics)
    for image, row in zip(images, result):
        job = resolve_job(image)
        fresh = evaluator.score(load_image(image), load_image(job.content), job.prompt)  # no content_key: no cache
        for name in metrics:
            assert fresh[name] == pytest.approx(row[name], abs=1e-6), (image.name, name)


def test_help_explains_sizes_and_metrics():
    text = " ".join(run("eval", "--help").output.split())
    for phrase in ("patch_clip_score", "64 random square crops", "512 px", "--size", "sidecar", "lpips_alex",
                   "resize the output", "--overwrite", "--csv", "--json"):
        assert phrase in text, phrase
