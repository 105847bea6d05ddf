"""The package's layering holds: no import circles, and every import points down the layers of ``.importlinter``.

`lint-imports` (import-linter) reads the contracts from ``.importlinter`` at the repository root;
grimp builds the import graph statically, so imports inside functions count as much as those at
the top of a module (the circles this guards against were lazy imports). The last test plants an
upward import and a circle in a copy of the package and checks that the contracts catch both.
"""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(package_parent: Path) -> subprocess.CompletedProcess:
    """Run lint-imports on the ``clipstyle_opt`` found in ``package_parent`` (imported from there, not the venv)."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(CONTRACTS), "--no-cache"], cwd=package_parent,
                          env=env, capture_output=True, text=True, timeout=300)


def layer_modules() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(CONTRACTS)
    names = set()
    for line in parser["importlinter:contract:layers"]["layers"].split("\n"):
        for part in line.split("|"):
            if part.strip():
                names.add(part.strip().strip("()"))
    return names


def test_the_package_keeps_its_contracts():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_top_level_module_has_a_layer():
    package = ROOT / "clipstyle_opt"
    present = {f"clipstyle_opt.{p.stem}" for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    present |= {f"clipstyle_opt.{p.parent.name}" for p in package.glob("*/__init__.py")}
    missing = present - layer_modules()
    assert not missing, f"place these modules in a layer of .importlinter: {sorted(missing)}"


PLANTED = [
    # an upward import, inside a function as the old tiling -> engine one was
    ("unet/tiling.py", "\ndef _planted():\n    from ..engine import Stylizer\n",
     "clipstyle_opt.unet is not allowed to import clipstyle_opt.engine"),
    # a circle inside one layer: two sibling modules of the objective importing each other
    ("objective/losses.py", "\ndef _planted():\n    from .style_objective import StyleObjective\n",
     "No cycles are allowed in clipstyle_opt.objective."),
]


def test_the_contracts_catch_planted_violations(tmp_path):
    """Both planted in one copy (one lint run instead of two): each must be reported by name."""
    shutil.copytree(ROOT / "clipstyle_opt", tmp_path / "clipstyle_opt",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for module, line, _ in PLANTED:
        target = tmp_path / "clipstyle_opt" / module
        target.write_text(target.read_text() + line)
    result = lint(tmp_path)
    assert result.returncode != 0
    report = " ".join(result.stdout.split())
    for module, _, broken in PLANTED:
        assert broken in report, f"the violation planted in {module} was not reported:\n{result.stdout[-3000:]}"
