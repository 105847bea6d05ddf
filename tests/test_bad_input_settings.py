"""Issue 13, prompts, numbers, outputs and exit codes: refused before any model loads, in one line.

`no_model_load` makes loading CLIP or VGG an error, so each refusal is shown
to come first. Each CLI case checks the exit code, the message and the
directory listing before and after.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from PIL import Image

from clipstyle_opt import Stylizer
from clipstyle_opt.cli.common import resolve_output
from clipstyle_opt.errors import ConfigError
from clipstyle_opt.imageio import save_image
from clipstyle_opt.encoders.prompts import max_prompt_tokens

from faults_helpers import TINY, error_line, fast_models, listing, no_model_load, run, saved_unet  # noqa: F401

LONG_PROMPT = " ".join(["a watercolor painting of a lighthouse on a cliff at dusk"] * 6) + " with seagulls"


@pytest.fixture
def folder(tmp_path, photo):
    (tmp_path / "photo.png").write_bytes(photo.read_bytes())
    return tmp_path


def refused(folder, *args):
    """Run the CLI; return (exit code, its one error line), after checking nothing changed under ``folder``."""
    before = listing(folder)
    result = run(*args)
    assert listing(folder) == before
    return result.exit_code, error_line(result.output)


def stylize(folder, prompt, *extra):
    return refused(folder, "stylize", folder / "photo.png", prompt, "-o", folder / "out.png", *TINY, *extra)


# --- 3. prompts ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt", ["", "   \t "])
def test_empty_prompt(folder, prompt, no_model_load):
    code, line = stylize(folder, prompt)
    assert code == 2 and line == 'error: the prompt is empty; give a text such as "a watercolor painting"'


def test_long_prompt_is_refused_naming_the_words_that_would_not_fit(folder, no_model_load):
    code, line = stylize(folder, LONG_PROMPT)
    assert code == 2
    assert f"the prompt is too long for CLIP: 68 tokens, but at most {max_prompt_tokens()} fit" in line
    assert '77-token context' in line and '("with seagulls" would not fit)' in line


def test_long_source_text_is_refused_too(folder, no_model_load):
    code, line = stylize(folder, "fire", "--source-text", LONG_PROMPT)
    assert code == 2 and line.startswith("error: --source-text is too long for CLIP")


def test_the_same_long_prompt_rule_in_eval_and_the_python_api(folder, tiny_stylizer, no_model_load):
    save_image(torch.rand(1, 3, 32, 32), folder / "styled.png", {"prompt": LONG_PROMPT, "content": "photo.png"})
    code, line = refused(folder, "eval", folder / "styled.png", "--clip-model", "ViT-B/32")
    assert code == 2 and f"the prompt of {folder / 'styled.png'} is too long for CLIP" in line
    code, line = refused(folder, "eval", folder / "styled.png", "--prompt", "a" + " b" * 80)
    assert code == 2 and "is too long for CLIP" in line
    with pytest.raises(ConfigError, match="the prompt is too long for CLIP"):
        tiny_stylizer.stylize(folder / "photo.png", LONG_PROMPT)
    with pytest.raises(ConfigError, match="too long for CLIP"):
        tiny_stylizer.clip.encode_prompt(LONG_PROMPT)
    # A prompt of exactly the limit fits every template and is encoded whole.
    assert tiny_stylizer.clip.encode_prompt(" ".join(["red"] * max_prompt_tokens())).shape == (64,)


def test_non_ascii_and_emoji_prompts_work_and_are_recorded_exactly(folder, fast_models):
    prompt = "aquarelle « café » 🔥 水彩画"
    result = run("stylize", folder / "photo.png", prompt, "-o", folder / "styled", *TINY, "--steps", "1")
    assert result.exit_code == 0, result.output
    (image,) = (folder / "styled").glob("*.png")
    assert image.name.startswith("photo_aquarelle-caf-") and image.name.isascii()
    assert json.loads(image.with_suffix(".json").read_text(encoding="utf-8"))["prompt"] == prompt
    with Image.open(image) as png:
        assert png.text["prompt"] == prompt
    # Prompts of emoji or other scripts only get distinct names, not all "style".
    assert len({resolve_output("out", "photo.png", p) for p in ["🔥", "🌊", "水彩画", "油絵"]}) == 4


# --- 4. numbers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--lambda-c", "-1"], "--lambda-c must be >= 0, got -1.0"),
    (["--lambda-patch", "nan"], "--lambda-patch must be a finite number, got nan"),
    (["--lambda-dir", "inf"], "--lambda-dir must be a finite number, got inf"),
    (["--crop-size", "96"], "--crop-size (96 px) is larger than the training size --size (64 px); crops are cut from the "
     "training image"),
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--threshold", "2.5"], "--threshold must be in [0, 2] (1 - cos ranges over [0, 2]), got 2.5"),
    (["--threshold", "-0.1"], "--threshold must be >= 0, got -0.1"),
    (["--precision", "fp16"], "--precision fp16 is not supported on the CPU; use bf16 or fp32"),
])
def test_bad_numbers_are_refused_naming_the_flag(folder, flags, message, no_model_load):
    code, line = stylize(folder, "fire", *flags)
    assert code == 2 and line == f"error: {message}"


def test_bad_value_in_a_config_file_names_the_file(folder, no_model_load):
    (folder / "c.yaml").write_text("lambda_c: -3\n")
    code, line = stylize(folder, "fire", "--config", folder / "c.yaml")
    assert code == 2 and line == f"error: {folder / 'c.yaml'}: lambda_c must be >= 0, got -3"


def test_unknown_device_is_a_usage_error(folder, no_model_load):
    before = listing(folder)
    result = run("stylize", folder / "photo.png", "fire", "-o", folder / "out.png", "--device", "tpu")
    assert result.exit_code == 2 and "Invalid value for '--device'" in result.output.splitlines()[-1]
    assert listing(folder) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_device_this_machine_lacks(folder, no_model_load):
    code, line = refused(folder, "stylize", folder / "photo.png", "fire", "-o", folder / "out.png", "--device", "cuda")
    assert code == 2 and line == "error: --device cuda was asked for, but torch sees no CUDA GPU (try --device cpu)"


# --- 5. outputs ----------------------------------------------------------------------------------------

def test_missing_output_directory(folder, no_model_load):
    code, line = stylize(folder, "fire", "-o", folder / "nowhere" / "out.png")
    assert code == 1 and line == f"error: output directory does not exist: {folder / 'nowhere'} (create it first)"


def test_missing_output_directory_for_eval_and_report(folder, no_model_load):
    save_image(torch.rand(1, 3, 32, 32), folder / "styled.png", {"prompt": "fire", "content": "photo.png"})
    code, line = refused(folder, "eval", folder / "styled.png", "--csv", folder / "nowhere" / "scores.csv")
    assert code == 1 and line == f"error: output directory does not exist: {folder / 'nowhere'} (create it first)"
    code, line = refused(folder, "report", folder, "-o", folder / "nowhere" / "report.html")
    assert code == 1 and line == f"error: output directory does not exist: {folder / 'nowhere'} (create it first)"


def test_output_directory_is_a_file(folder, no_model_load):
    (folder / "notes.txt").write_text("x")
    code, line = stylize(folder, "fire", "-o", folder / "notes.txt" / "out.png")
    assert code == 1 and f"{folder / 'notes.txt'} is not a directory" in line


@pytest.fixture
def unwritable_dir(tmp_path):
    """A directory nobody may write to: a read-only tmpfs as root (root ignores permissions), else mode 0555."""
    directory = tmp_path / "locked"
    directory.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(directory)],
                                 capture_output=True)
        if mounted.returncode != 0:
            pytest.skip("running as root without permission to mount a read-only tmpfs")
        yield directory
        subprocess.run(["umount", str(directory)], check=True)
    else:
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)


def test_unwritable_output_directory(folder, unwritable_dir, no_model_load):
    code, line = stylize(folder, "fire", "-o", unwritable_dir / "out.png")
    assert code == 1 and line == f"error: output directory is not writable: {unwritable_dir}"
    code, line = stylize(folder, "fire", "-o", unwritable_dir / "sub" / "dir")
    assert code == 1 and line == f"error: output directory is not writable: {unwritable_dir}"


def test_output_equal_to_an_input_is_refused_even_with_overwrite(folder, tmp_path, monkeypatch, no_model_load):
    photo = folder / "photo.png"
    code, line = refused(folder, "stylize", photo, "fire", "-o", photo, *TINY, "--overwrite")
    assert code == 2 and line.startswith(f"error: the output {photo} is also an input")
    monkeypatch.chdir(folder)  # the same file by another name
    code, line = refused(folder, "stylize", "photo.png", "fire", "-o", "./sub/../photo.png", *TINY, "--overwrite")
    assert code == 2 and "is also an input" in line
    code, line = refused(folder, "stylize", photo, "fire", "-o", folder / "out.png", "--style-image", folder / "out.png")
    assert code == 2 and "is also an input" in line
    unet = saved_unet(tmp_path / "style.unet.pt")
    code, line = refused(folder, "apply", unet, photo, "-o", photo, "--overwrite")
    assert code == 2 and "is also an input" in line
    save_image(torch.rand(1, 3, 32, 32), folder / "styled.png", {"prompt": "fire", "content": "photo.png"})
    code, line = refused(folder, "eval", folder / "styled.png", "--json", folder / "styled.json", "--overwrite")
    assert code == 2 and f"the output {folder / 'styled.json'} is also an input" in line


def test_existing_outputs_need_overwrite(folder, tmp_path, no_model_load):
    (folder / "out.png").write_bytes(b"old image")
    code, line = stylize(folder, "fire")
    assert code == 1 and line == f"error: {folder / 'out.png'} exists; pass --overwrite (overwrite=True) to replace it"
    (folder / "out.png").unlink()
    (folder / "out.json").write_text("{}")  # an orphan sidecar is somebody's data too
    code, line = stylize(folder, "fire")
    assert code == 1 and f"{folder / 'out.json'} exists" in line
    (folder / "out.json").unlink()
    (folder / "out.unet.pt").write_bytes(b"old u-net")
    code, line = stylize(folder, "fire", "--save-unet")
    assert code == 1 and f"{folder / 'out.unet.pt'} exists" in line
    unet = saved_unet(tmp_path / "style.unet.pt")
    (folder / "applied.png").write_bytes(b"old")
    code, line = refused(folder, "apply", unet, folder / "photo.png", "-o", folder / "applied.png")
    assert code == 1 and "applied.png exists; pass --overwrite" in line
    (folder / "report.html").write_text("old")
    code, line = refused(folder, "report", folder, "-o", folder / "report.html")
    assert code == 1 and "report.html exists; pass --overwrite" in line


# --- 7. exit codes and tracebacks ----------------------------------------------------------------------

def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(folder, monkeypatch):
    import clipstyle_opt.imageio as imageio

    def broken(*args, **kwargs):
        raise ValueError("something nobody foresaw")

    monkeypatch.setattr(imageio, "read_image", broken)
    code, line = refused(folder, "stylize", folder / "photo.png", "fire", "-o", folder / "out.png", *TINY)
    assert code == 1
    assert line == ("error: unexpected ValueError: something nobody foresaw (a bug: rerun with --debug for the "
                    "traceback and please report it)")
    result = run("--debug", "stylize", folder / "photo.png", "fire", "-o", folder / "out.png", *TINY)
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.output and 'raise ValueError("something' in result.output
    assert result.output.splitlines()[-1] == line


def test_console_script_traceback_only_with_debug(folder):
    # Without --debug the same command prints one line and no traceback (test_missing_photo, and
    # test_cli's console-script test); here the real process with --debug.
    command = [sys.executable, "-m", "clipstyle_opt", "--debug", "stylize", str(folder / "nope.png"), "fire",
               "-o", str(folder / "out.png")]
    debug = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == f"error: photo not found: {folder / 'nope.png'}"
    assert sorted(p.name for p in folder.iterdir()) == ["photo.png"]


def test_python_api_refuses_zero_steps_and_bad_weights_before_loading(tiny_config):
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        tiny_config.replace(steps=0)
    with pytest.raises(ConfigError, match="lambda_c must be a finite number"):
        Stylizer(tiny_config.replace(lambda_c=float("nan")))
