"""Sweeps that run, on a random-init tiny CLIP at 64 px: the acceptance grid (2 x 2 settings x 2 photos x
2 prompts = 16 runs), resume after a real SIGKILL, failure isolation, the lock, the contact sheet, the
plots and the report of a sweep directory. The images mean nothing; the bookkeeping is what is tested."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from clipstyle_opt import sweep
from clipstyle_opt.cli import cli
from clipstyle_opt.sweeps import SweepStore
from clipstyle_opt.sweeps.sheet import CAPTION_H, CELL, HEADER_H, LABEL_W, PAD
from clipstyle_opt.sweeps.store import SweepLockedError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def tiny_base(clip_path: Path, steps: int = 1) -> dict:
    return {"clip_model": str(clip_path), "size": 64, "steps": steps, "n_crops": 2, "crop_size": 32,
            "device": "cpu", "precision": "fp32", "max_output_size": 64}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((folder / "runs").glob("*")) if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def acceptance(tiny_clip_path, tmp_path_factory):
    """The issue's acceptance sweep, run once for the module."""
    spec = {"contents": [str(EXAMPLES / "chelsea.png"), str(EXAMPLES / "coffee.png")], "prompts": ["fire", "water"],
            "base": tiny_base(tiny_clip_path), "grid": {"lambda_patch": [0, 9000], "threshold": [0, 0.7]}}
    out = tmp_path_factory.mktemp("sweep") / "ablation"
    frame = sweep(spec, out)
    return spec, out, frame


def test_the_acceptance_grid_yields_16_rows_with_axes_losses_and_images(acceptance):
    _, out, frame = acceptance
    assert len(frame) == 16 and frame.attrs["failed"] == 0 and frame.attrs["ran"] == 16
    rows = read_csv(out / "results.csv")
    assert len(rows) == 16 and {r["status"] for r in rows} == {"ok"}
    for column in ("run_id", "image", "content", "prompt", "lambda_patch", "threshold", "loss_total", "loss_patch",
                   "train_s"):
        assert column in rows[0]
    combos = {(r["content"], r["prompt"], float(r["lambda_patch"]), float(r["threshold"])) for r in rows}
    assert len(combos) == 16
    for row in rows:
        image = out / row["image"]
        with Image.open(image) as opened:
            assert max(opened.size) == 64
        sidecar = json.loads(image.with_suffix(".json").read_text())
        assert sidecar["sweep"]["row"]["run_id"] == row["run_id"] and sidecar["prompt"] == row["prompt"]
        assert sidecar["config"]["lambda_patch"] == float(row["lambda_patch"])
    # lambda_patch = 0 weighs the patch term out of the total (same seed, same first-step losses otherwise).
    first = {(r["content"], r["prompt"], float(r["lambda_patch"])): float(r["loss_total"]) for r in rows}
    assert first[("chelsea.png", "fire", 9000.0)] > first[("chelsea.png", "fire", 0.0)]
    import pandas

    parquet = pandas.read_parquet(out / "results.parquet")
    assert list(parquet["run_id"]) == [r["run_id"] for r in rows]


def test_the_contact_sheet_has_one_labelled_cell_per_run(acceptance):
    _, out, _ = acceptance
    with Image.open(out / "contact_sheet.png") as sheet:
        sheet = sheet.convert("RGB")
    # Columns: threshold (the last grid axis), 2 values; rows: content x prompt x lambda_patch, 8 combinations.
    cell_w, cell_h = CELL + 2 * PAD, CELL + CAPTION_H + 2 * PAD
    assert sheet.size == (LABEL_W + 2 * cell_w, HEADER_H + 8 * cell_h)
    for i in range(8):
        for j in range(2):
            left, top = LABEL_W + j * cell_w + PAD, HEADER_H + i * cell_h + PAD
            picture = sheet.crop((left, top, left + CELL, top + CELL))
            caption = sheet.crop((left, top + CELL, left + CELL, top + CELL + CAPTION_H))
            assert picture.getextrema() != ((255, 255), (255, 255), (255, 255)), (i, j)  # an image is there
            assert caption.convert("L").getextrema()[0] < 128, (i, j)  # and a caption
        label = sheet.crop((0, HEADER_H + i * cell_h, LABEL_W, HEADER_H + (i + 1) * cell_h))
        assert label.convert("L").getextrema()[0] < 128  # each row is labelled


def test_one_plot_per_numeric_axis(acceptance):
    _, out, _ = acceptance
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["lambda_patch.png", "threshold.png"]
    with Image.open(out / "plots" / "threshold.png") as plot:
        assert plot.width > 200 and plot.height > 150


def test_plots_show_what_varies_and_leave_out_bookkeeping_times():
    from clipstyle_opt.sweeps.plots import metric_columns

    rows = [{"status": "ok", "seed": 0, "lambda_c": c, "loss_style": 0.0, "loss_content": c / 10, "train_s": t,
             "run_s": t + 1, "eval_s": 0.5 * t, "clip_score": s, "patch_kept": 1.0}
            for c, t, s in ((50, 2.0, 0.3), (150, 2.5, 0.2))]
    rows.append({"status": "failed", "seed": 0, "lambda_c": 300, "error": "boom"})
    assert metric_columns(rows, ["lambda_c"]) == ["loss_content", "train_s", "clip_score"]


def test_rerunning_the_same_sweep_redoes_nothing(acceptance):
    spec, out, frame = acceptance
    before = stamps(out)
    again = sweep(spec, out)
    assert again.attrs["ran"] == 0 and len(again) == 16
    assert stamps(out) == before
    assert list(again["run_id"]) == list(frame["run_id"])
    assert list(again["loss_total"]) == list(frame["loss_total"])


def test_report_of_a_sweep_directory_has_the_axes_as_sortable_columns(acceptance):
    _, out, _ = acceptance
    result = CliRunner().invoke(cli, ["report", str(out), "--max-side", "64"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    start = html.index('<script type="application/json" id="report-data">') + len(
        '<script type="application/json" id="report-data">')
    data = json.loads(html[start:html.index("</script>", start)])
    axes = {m["key"] for m in data["metrics"] if m.get("axis")}
    assert axes == {"lambda_patch", "threshold"}
    outputs = [o for g in data["groups"] for o in g["outputs"]]
    assert len(outputs) == 16
    assert all(set(o["metrics"]) >= axes for o in outputs)
    assert any(o["label"].startswith("prompt=fire, lambda_patch=9000") for o in outputs)


def test_a_second_sweep_on_the_same_directory_is_refused(acceptance):
    spec, out, _ = acceptance
    with SweepStore(out).lock():
        with pytest.raises(SweepLockedError, match=r"another sweep \(pid \d+\) is writing into"):
            sweep(spec, out)


def test_a_failing_run_is_recorded_the_others_finish_and_the_exit_status_is_1(tiny_clip_path, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(EXAMPLES / "chelsea.png", photos / "good.png")
    data = (EXAMPLES / "coffee.png").read_bytes()
    (photos / "broken.png").write_bytes(data[: len(data) // 2])  # the header reads; the pixels do not
    base = tiny_base(tiny_clip_path)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in base.items()]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["sweep", str(photos / "*.png"), "-p", "fire", *flags, "-o", str(out), "-q"],
                                catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1].startswith("error: 1 of 2 runs failed")
    rows = {r["content"]: r for r in read_csv(out / "results.csv")}
    assert rows["good.png"]["status"] == "ok" and (out / rows["good.png"]["image"]).is_file()
    assert rows["broken.png"]["status"] == "failed" and "truncated or corrupt" in rows["broken.png"]["error"]
    record = json.loads((out / "failed" / f"{rows['broken.png']['run_id']}.json").read_text())
    assert "broken.png" in record["error"] and "Traceback" in record["traceback"]


def test_a_sweep_killed_with_sigkill_resumes_without_redoing_or_losing_runs(tiny_clip_path, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({"contents": [str(EXAMPLES / "chelsea.png")], "prompts": ["fire", "water"],
                                "seeds": [0, 1], "base": tiny_base(tiny_clip_path)}))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "clipstyle_opt", "sweep", str(spec), "-o", str(out), "-q"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = SweepStore(out)
    deadline = time.monotonic() + 300
    while not store.finished() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()  # still running: killed mid-way
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    done = store.finished()
    assert 1 <= len(done) < 4
    before = stamps(out)
    frame = sweep(spec, out)
    assert frame.attrs["ran"] == 4 - len(done)  # nothing done twice
    assert {name: stamp for name, stamp in stamps(out).items() if name in before} == before
    rows = read_csv(out / "results.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}  # nothing lost
    assert set(done) <= {r["run_id"] for r in rows}
    assert not list((out / "runs").glob(".*.tmp"))


def test_eval_scores_each_run_as_clipstyle_eval_scores_its_file(tiny_clip_path, tmp_path):
    from clipstyle_opt.evaluate import evaluate

    spec = {"contents": [str(EXAMPLES / "chelsea.png")], "prompts": ["fire"], "base": tiny_base(tiny_clip_path)}
    metrics = ("clip_score", "patch_clip_score", "clip_direction", "ssim")
    frame = sweep(spec, tmp_path / "out", evaluate=True, eval_metrics=metrics, eval_size=64, figures=False)
    row = frame.iloc[0]
    scored = evaluate([tmp_path / "out" / row["image"]], clip_model=str(tiny_clip_path), device="cpu",
                      metrics=metrics, size=64)[0]
    for metric in metrics:
        assert row[metric] == pytest.approx(scored[metric], rel=1e-5, abs=1e-6), metric
