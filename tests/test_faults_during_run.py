"""Issue 13, faults during a run: NaN losses, SIGINT/SIGTERM, out of memory, a full disk.

Faults are injected (a loss term made NaN, a signal sent from inside a step,
an allocator error raised, a write cut short) so each case is exact and quick;
one test sends a real SIGTERM to a real process, and one fills a real small
tmpfs where the test may mount one.
"""
from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle_opt.unet import tiling
from clipstyle_opt.errors import NonFiniteLossError, WriteError
from clipstyle_opt.imageio import save_image
from clipstyle_opt.objective.style_objective import StyleObjective

from faults_helpers import TINY, error_line, fast_models, listing, run, saved_unet  # noqa: F401


@pytest.fixture
def folder(tmp_path, photo):
    (tmp_path / "photo.png").write_bytes(photo.read_bytes())
    return tmp_path


def on_backward(monkeypatch, change):
    """Call ``change(n, values)`` after the n-th optimizer step's backward pass (n from 1); it returns the values."""
    original = StyleObjective.backward
    calls = [0]

    def backward(self, *args, **kwargs):
        calls[0] += 1
        return change(calls[0], original(self, *args, **kwargs))

    monkeypatch.setattr(StyleObjective, "backward", backward)


def stylize(folder, *extra):
    return run("stylize", folder / "photo.png", "fire", "-o", folder / "out.png", *TINY, *extra)


# --- non-finite losses -----------------------------------------------------------------------------------

def test_nan_loss_stops_naming_step_and_term_and_keeps_the_last_good_image(folder, fast_models, tiny_stylizer,
                                                                           monkeypatch):
    # What the weights after one step give: the U-Net whose output scored finite at step 2.
    reference = np.asarray(tiny_stylizer.stylize(folder / "photo.png", "fire", steps=1, max_output_size=64).image)
    two_steps = np.asarray(tiny_stylizer.stylize(folder / "photo.png", "fire", steps=2, max_output_size=64).image)

    def poison(n, values):
        if n == 3:
            values["patch"] = float("nan")
        return values

    on_backward(monkeypatch, poison)
    before = listing(folder)
    result = stylize(folder, "--steps", "5", "--save-unet")
    assert result.exit_code == 1
    out = folder / "out.png"
    assert error_line(result.output) == (
        f"error: the patch loss became NaN or infinite at step 3 of 5; stopped, keeping the output of step 2 "
        f"(try a lower --lr or loss weights); saved it as {out}, marked stopped in its sidecar")
    assert sorted(set(listing(folder)) - set(before)) == ["out.json", "out.png", "out.unet.pt"]
    sidecar = json.loads((folder / "out.json").read_text())
    assert sidecar["status"] == "stopped" and sidecar["steps_done"] == 2
    assert sidecar["reason"] == "the patch loss became NaN or infinite at step 3"
    kept = np.asarray(Image.open(out).convert("RGB"))
    assert np.array_equal(kept, reference)
    assert not np.array_equal(kept, two_steps)


def test_nan_at_the_first_step_keeps_nothing(folder, fast_models, monkeypatch):
    on_backward(monkeypatch, lambda n, values: {**values, "content": float("inf")})
    before = listing(folder)
    result = stylize(folder, "--steps", "3")
    assert result.exit_code == 1
    assert error_line(result.output) == ("error: the content loss became NaN or infinite at step 1 of 3, before any "
                                         "good step; nothing to keep (try a lower --lr or loss weights)")
    assert listing(folder) == before


def test_python_api_carries_the_last_good_result(tiny_stylizer, photo, monkeypatch):
    on_backward(monkeypatch, lambda n, values: {**values, "dir": float("nan")} if n == 2 else values)
    with pytest.raises(NonFiniteLossError) as caught:
        tiny_stylizer.stylize(photo, "fire", steps=4)
    assert (caught.value.step, caught.value.term) == (2, "dir")
    assert caught.value.result.extra["steps_done"] == 1 and len(caught.value.result.history) == 1
    assert torch.isfinite(caught.value.result.tensor).all()


# --- SIGINT / SIGTERM ------------------------------------------------------------------------------------

def send_at_step(monkeypatch, step, *signals):
    def change(n, values):
        if n == step:
            for signum in signals:
                signal.raise_signal(signum)
                time.sleep(0.05)  # let the handler run before the next one (signals of one kind coalesce)
        return values

    on_backward(monkeypatch, change)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_the_result_so_far_marked_interrupted(folder, fast_models, monkeypatch, signum, code):
    send_at_step(monkeypatch, 2, signum)
    before = listing(folder)
    # What the process had before (Python's default_int_handler, or SIG_IGN when started in the
    # background by a non-interactive shell): the run must put back exactly that.
    handlers_before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    result = stylize(folder, "--steps", "50", "--save-unet")
    assert result.exit_code == code
    name = signal.Signals(signum).name
    assert result.output.splitlines()[-1] == (f"interrupted ({name}) after step 2 of 50: saved {folder / 'out.png'} "
                                              "and its sidecar, marked interrupted")
    assert f"{name}: stopping after this step" in result.output and "Traceback" not in result.output
    assert sorted(set(listing(folder)) - set(before)) == ["out.json", "out.png", "out.unet.pt"]
    sidecar = json.loads((folder / "out.json").read_text())
    assert sidecar["status"] == "interrupted" and sidecar["steps_done"] == 2
    assert {sig: signal.getsignal(sig) for sig in handlers_before} == handlers_before  # handlers put back


def test_a_second_ctrl_c_quits_at_once_without_saving(folder, fast_models, monkeypatch):
    send_at_step(monkeypatch, 2, signal.SIGINT, signal.SIGINT)
    before = listing(folder)
    result = stylize(folder, "--steps", "50")
    assert result.exit_code == 130
    assert result.output.splitlines()[-1] == "interrupted (SIGINT): nothing more was saved"
    assert listing(folder) == before


def test_sigterm_to_a_real_process_saves_and_exits_143(folder, tiny_clip_path):
    out = folder / "out.png"
    command = [sys.executable, "-m", "clipstyle_opt", "stylize", str(folder / "photo.png"), "fire", "-o", str(out),
               "--clip-model", str(tiny_clip_path), *TINY, "--steps", "100000", "--save-every", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (folder / "out_steps" / "step_00001.png").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no step within 240 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    assert "interrupted (SIGTERM) after step" in stderr.splitlines()[-1] and "Traceback" not in stderr
    sidecar = json.loads((folder / "out.json").read_text())
    assert sidecar["status"] == "interrupted" and sidecar["steps_done"] >= 1
    assert Image.open(out).size == (64, 43)
    assert not [p for p in folder.rglob("*.tmp")]


# --- out of memory ---------------------------------------------------------------------------------------

CPU_OOM = RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you "
                       "tried to allocate 2147483648 bytes. Error code 12 (Cannot allocate memory)")
CUDA_OOM = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.77 GiB total)")


@pytest.mark.parametrize("error", [CPU_OOM, CUDA_OOM], ids=["cpu", "cuda"])
def test_out_of_memory_names_size_and_crops_to_lower(folder, fast_models, monkeypatch, error):
    def allocate(n, values):
        raise error

    on_backward(monkeypatch, allocate)
    before = listing(folder)
    result = stylize(folder, "--steps", "3")
    assert result.exit_code == 1
    assert error_line(result.output) == ("error: out of memory on cpu training at size 64 with 4 crops: lower --size "
                                         "(now 64) or --n-crops (now 4); --clip-batch 8 also saves memory")
    assert listing(folder) == before


def test_out_of_memory_in_apply_names_the_output_size(folder, monkeypatch, tmp_path):
    unet = saved_unet(tmp_path / "style.unet.pt")

    def allocate(*args, **kwargs):
        raise CPU_OOM

    monkeypatch.setattr(tiling, "apply_unet", allocate)  # the one-tile render, as the untiled U-Net
    before = listing(folder)
    result = run("apply", unet, folder / "photo.png", "-o", folder / "out.png")
    assert result.exit_code == 1
    assert error_line(result.output) == ("error: out of memory applying the U-Net to 451x300 px: lower --tile-size "
                                         "(now 1024), or --output-size / --output-scale")
    assert listing(folder) == before


# --- a full disk -----------------------------------------------------------------------------------------

def disk_full_after_half(monkeypatch):
    """Every image write puts half its bytes in the file, then fails as a full disk does."""
    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(self, buffer, *args, **kwargs)
        Path(fp).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", save)


def test_full_disk_at_the_end_of_a_run_leaves_no_partial_file(folder, fast_models, monkeypatch):
    disk_full_after_half(monkeypatch)
    before = listing(folder)
    result = run("stylize", folder / "photo.png", "fire", "-o", folder / "new" / "out.png", *TINY, "--steps", "1")
    assert result.exit_code == 1  # the directory -o names is missing: refused before the run
    result = stylize(folder, "--steps", "1")
    assert result.exit_code == 1
    assert error_line(result.output) == (f"error: cannot write {folder / 'out.png'}: No space left on device (nothing "
                                         "was left behind); free some space or write elsewhere")
    assert listing(folder) == before


def test_full_disk_while_overwriting_leaves_the_old_files_whole(tmp_path, monkeypatch):
    out = save_image(torch.rand(1, 3, 16, 16), tmp_path / "out.png", {"prompt": "old"})
    before = listing(tmp_path)
    real_write_text = Path.write_text

    def write_text(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", write_text)  # the image fits, its sidecar does not
    with pytest.raises(WriteError, match=r"cannot write .*out\.json: No space left on device \(it is unchanged\)"):
        save_image(torch.rand(1, 3, 16, 16), out, {"prompt": "new"}, overwrite=True)
    assert listing(tmp_path) == before


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 256 KiB file system, where the test may mount one (root); skipped elsewhere."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the fault-injected tests cover the logic")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_real_full_disk_leaves_no_partial_file(small_tmpfs):
    (small_tmpfs / "filler").write_bytes(bytes(200 * 1024))
    before = listing(small_tmpfs)
    noise = torch.rand(1, 3, 256, 256)  # about 200 KB as PNG: it cannot fit in what is left
    with pytest.raises(WriteError, match="No space left on device"):
        save_image(noise, small_tmpfs / "out.png", {"prompt": "fire"})
    assert listing(small_tmpfs) == before
