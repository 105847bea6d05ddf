"""`clipstyle stylize` end to end at tiny sizes (random-init CLIP)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from clipstyle_opt.cli import cli

TINY = ["--size", "64", "--steps", "3", "--n-crops", "4", "--crop-size", "32", "--max-output-size", "96",
        "--device", "cpu", "--precision", "fp32"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_help_shows_every_knob_with_reference_defaults():
    text = run("stylize", "--help").output
    for flag, default in [("--lambda-dir", "500.0"), ("--lambda-patch", "9000.0"), ("--lambda-c", "150.0"),
                          ("--lambda-tv", "0.002"), ("--lr", "0.0005"), ("--steps", "200"), ("--size", "512"),
                          ("--n-crops", "64"), ("--crop-size", "128"), ("--threshold", "0.7"),
                          ("--distortion", "0.5"), ("--clip-model", "ViT-B/32"), ("--source-text", "a Photo"),
                          ("--content-layers", "relu4_2,relu5_2"), ("--lr-decay-every", "100")]:
        assert flag in text
        block = text[text.index(flag):]
        assert f"[default: {default}]" in " ".join(block.split())[:400], flag
    for flag in ("--output-size", "--device", "--precision", "--style-image", "--lambda-style", "--save-every",
                 "--save-unet", "--overwrite", "--quiet", "--preset", "--seed", "--vgg"):
        assert flag in text
    assert "preview" in text


def test_stylize_writes_png_with_metadata_and_refuses_to_overwrite(tiny_clip_path, photo, tmp_path):
    out = tmp_path / "out.png"
    result = run("stylize", photo, "fire", "--clip-model", tiny_clip_path, "-o", out, *TINY, "--quiet")
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        assert img.text["prompt"] == "fire"
        config = json.loads(img.text["config"])
    assert config["steps"] == 3 and config["lambda_patch"] == 9000
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["prompt"] == "fire" and sidecar["config"] == config and sidecar["seed"] == 0
    before = out.read_bytes()
    again = run("stylize", photo, "fire", "--clip-model", tiny_clip_path, "-o", out, *TINY, "--quiet")
    assert again.exit_code == 1
    assert "exists" in again.output and "--overwrite" in again.output and len(again.output.strip().splitlines()) == 1
    assert out.read_bytes() == before
    forced = run("stylize", photo, "fire", "--clip-model", tiny_clip_path, "-o", out, *TINY, "--quiet",
                 "--overwrite", "--seed", "1")
    assert forced.exit_code == 0 and out.read_bytes() != before


def test_output_directory_preset_config_file_and_extras(tiny_clip_path, photo, tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text("steps: 2\nlambda_c: 300\n")
    result = run("stylize", photo, "A Watercolor painting!", "--clip-model", tiny_clip_path, "-o", tmp_path / "dir",
                 "--preset", "preview", "--config", config_file, "--size", "64", "--crop-size", "32",
                 "--max-output-size", "96", "--precision", "fp32", "--save-every", "1", "--save-unet")
    assert result.exit_code == 0, result.output
    out = tmp_path / "dir" / "chelsea_a-watercolor-painting.png"
    config = json.loads(out.with_suffix(".json").read_text())["config"]
    # preset < file < flags
    assert (config["n_crops"], config["steps"], config["lambda_c"], config["size"]) == (16, 2, 300, 64)
    assert sorted(p.name for p in (tmp_path / "dir" / "chelsea_a-watercolor-painting_steps").iterdir()) == \
        ["step_00001.png", "step_00002.png"]
    unet = tmp_path / "dir" / "chelsea_a-watercolor-painting.unet.pt"
    assert unet.is_file()
    applied = run("apply", unet, photo.parent / "coffee.png", "-o", tmp_path / "applied.jpg", "--output-size", "80")
    assert applied.exit_code == 0, applied.output
    assert max(Image.open(tmp_path / "applied.jpg").size) == 80


@pytest.mark.parametrize("args, message, code", [
    (["missing.png", "fire"], "photo not found", 1),
    (["{photo}", "fire", "--steps", "-1"], "--steps must be >= 1", 2),
    (["{photo}", "fire", "-o", "{tmp}/x.gif"], "output must end in one of", 2),
    (["{photo}", "fire", "--clip-model", "{tmp}/nothing.pt"], "neither an existing checkpoint file", 1),
    (["{photo}", "fire", "--config", "{tmp}/nope.yaml"], "cannot read config", 2),
])
def test_user_errors_end_in_one_line(args, message, code, photo, tmp_path):
    filled = [a.format(photo=photo, tmp=tmp_path) for a in args]
    result = run("stylize", *filled, "-o", tmp_path / "o.png") if "-o" not in filled else run("stylize", *filled)
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.output


def test_console_script_offline_message_without_traceback(photo, tmp_path):
    script = Path(sys.executable).with_name("clipstyle")
    env = {**os.environ, "CLIPSTYLE_CACHE": str(tmp_path / "cache"),
           # A closed local port as proxy: no download can succeed, whatever network CI has.
           "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    # The download's own time limit is checked in tests/test_clip_encoder.py; the 60 s bound here only
    # keeps a hang from stalling the suite (no stopwatch: wall time on a shared machine proves nothing).
    proc = subprocess.run([str(script), "stylize", str(photo), "fire", "-o", str(tmp_path / "o.png")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    line = error_lines[0]
    assert "ViT-B/32" in line and str(tmp_path / "cache" / "clip") in line and "--clip-model" in line
    assert not (tmp_path / "o.png").exists()
