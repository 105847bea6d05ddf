"""The notebooks under ``notebooks/`` run top to bottom and are committed without outputs.

Each notebook is executed by nbclient in a fresh kernel (the one Jupyter itself would start) with
``CLIPSTYLE_NOTEBOOK_FAST=1``: the micro CLIP, tiny sizes, a few steps. What this can show: every
cell runs against the current public API, and each notebook leaves the files and inline figures it
promises. What it cannot show: that the pictures look good (at these sizes they show nothing but
that the code runs; `make notebooks` executes them at readable sizes into ``build/notebooks/``).

Each executed copy is also saved to ``build/notebooks-fast/`` (`runner.FAST_BUILD`): the docs site renders
those copies when ``make notebooks`` has not written readable ones (CI renders these fast-mode copies;
``tests/test_site.py`` runs after this file and executes any copy that is missing).
"""
from __future__ import annotations

import ast
import csv
import shutil

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from tools import run_notebooks as runner  # noqa: E402  (after the skips: it is only useful with nbclient)

NOTEBOOKS = runner.notebook_paths()
EXPECTED = ["01_quickstart.ipynb", "02_ablation_sweep.ipynb", "03_evaluation.ipynb", "04_encoders_and_fusion.ipynb"]

# What each notebook must leave under its output folder (beyond running without an error).
EXPECTED_FILES = {
    "01_quickstart": ["stylized.png", "stylized.json", "stylized.unet.pt"],
    "02_ablation_sweep": ["sweep/results.csv", "sweep/contact_sheet.png", "sweep/plots/lambda_patch.png",
                          "sweep/plots/lambda_c.png"],
    "03_evaluation": ["metrics.csv", "metrics.json", "report.html", "ratings.csv"],
    "04_encoders_and_fusion": ["encoder_0.png", "encoder_1.png", "encoder_2.png", "masked.png"],
}


def test_the_folder_holds_the_four_notebooks():
    assert [path.name for path in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_carries_no_outputs(path):
    problems = runner.output_problems(nbformat.read(path, as_version=4))
    assert not problems, f"{path.name}: {problems}; run `python tools/run_notebooks.py --strip`"


def test_the_output_check_sees_outputs_and_strip_removes_them():
    notebook = nbformat.read(NOTEBOOKS[0], as_version=4)
    cell = next(c for c in notebook.cells if c.cell_type == "code")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    cell.execution_count = 3
    assert len(runner.output_problems(notebook)) == 2
    assert runner.strip(notebook) and runner.output_problems(notebook) == []
    assert runner.strip(notebook) is False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_uses_only_public_names(path):
    """No private names (``_x``) and nothing from the test helpers: a reader copies this code."""
    notebook = nbformat.read(path, as_version=4)
    source = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("clipstyle_opt"):
            assert "testing" not in node.module.split("."), f"{path.name} imports {node.module}"
            private = [alias.name for alias in node.names if alias.name.startswith("_")]
            assert not private, f"{path.name} imports private {private} from {node.module}"


@pytest.fixture(scope="module")
def fast_build():
    """``build/notebooks-fast/``, held by this module until its last notebook ran (tests/test_site.py waits)."""
    with runner.fast_build_lock() as folder:
        yield folder


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, fast_build):
    # A cell that raises raises CellExecutionError here, which fails the test. The saved copy goes first,
    # so a notebook that fails leaves no stale copy for the docs to render.
    saved = runner.FAST_BUILD / path.name
    saved.unlink(missing_ok=True)
    # The notebook's files go beside the saved copy (build/notebooks-fast/outputs/<name>/, emptied first, so
    # nothing left from an earlier run can satisfy the checks): the docs link to them (03's report page).
    output_dir = runner.FAST_BUILD / "outputs"
    shutil.rmtree(output_dir / path.stem, ignore_errors=True)
    executed = runner.execute(path, fast=True, output_dir=output_dir, timeout=600)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert figures, f"{path.name} showed no picture inline"
    folder = output_dir / path.stem
    missing = [name for name in EXPECTED_FILES[path.stem] if not (folder / name).is_file()]
    assert not missing, f"{path.name} did not write {missing} under {folder}"
    if path.stem == "02_ablation_sweep":
        with open(folder / "sweep" / "results.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 8 and all(row["status"] == "ok" for row in rows)
        assert {"clip_score", "patch_clip_score", "lpips_vgg"} <= set(rows[0])
    runner.save_executed(executed, saved)
