"""Execute the project's notebooks, or check / strip their outputs.

    python tools/run_notebooks.py                      # execute notebooks/*.ipynb into build/notebooks/
    python tools/run_notebooks.py --fast               # tiny sizes (CLIPSTYLE_NOTEBOOK_FAST=1) into build/notebooks-fast/
    python tools/run_notebooks.py --check              # exit 1 if a committed notebook carries outputs
    python tools/run_notebooks.py --strip              # remove outputs and execution counts in place

Executed copies (with outputs, for reading) go to ``build/notebooks/``; the notebooks' own files
(images, sidecars, sweep folders) to ``build/notebooks/outputs/`` (``CLIPSTYLE_NOTEBOOK_OUT``).
The notebooks under ``notebooks/`` stay without outputs: commit them stripped.

Uses nbclient (the executor Jupyter itself uses) with the ``python3`` kernel of this interpreter.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "build" / "notebooks"
FAST_BUILD = ROOT / "build" / "notebooks-fast"
"""Fast-mode executed copies (``--fast``, and tests/test_notebooks.py): what CI's docs build renders."""
CELL_TIMEOUT_S = 1800
"""Per cell: a real-CLIP sweep on a CPU takes minutes."""


@contextlib.contextmanager
def fast_build_lock() -> Iterator[Path]:
    """Hold ``build/notebooks-fast/`` for this process alone (waits for any other holder), yield the folder.

    The suite runs on two pytest-xdist workers: tests/test_notebooks.py writes the fast copies while
    tests/test_site.py may be about to render them on the other worker. An exclusive ``flock`` on a file
    in the folder lets one write (or read) a whole set at a time; the kernel releases it if a holder dies.
    """
    FAST_BUILD.mkdir(parents=True, exist_ok=True)
    with open(FAST_BUILD / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield FAST_BUILD
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def notebook_paths(directory: Path = NOTEBOOKS) -> list[Path]:
    """The notebooks of ``directory``, in name order (``01_...``, ``02_...``)."""
    return sorted(directory.glob("*.ipynb"))


def output_problems(notebook: Any) -> list[str]:
    """What makes a notebook unfit to commit: code cells with outputs or execution counts."""
    problems = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {index} has {len(cell.outputs)} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {index} has execution count {cell.execution_count}")
    return problems


def strip(notebook: Any) -> bool:
    """Remove outputs and execution counts in place; True if anything changed."""
    changed = False
    for cell in notebook.cells:
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            cell.outputs, cell.execution_count = [], None
            changed = True
    return changed


def execute(path: Path, *, fast: bool, output_dir: Optional[Path] = None, timeout: int = CELL_TIMEOUT_S) -> Any:
    """Run ``path`` top to bottom in a fresh kernel started in its folder; returns the executed notebook.

    A cell that raises raises ``nbclient.exceptions.CellExecutionError`` (naming the cell and the error).
    fast: set ``CLIPSTYLE_NOTEBOOK_FAST=1`` for the kernel (micro CLIP, tiny sizes). output_dir: the
    notebooks' own files go under it (``CLIPSTYLE_NOTEBOOK_OUT``).
    """
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    env = {**os.environ, "CLIPSTYLE_NOTEBOOK_FAST": "1" if fast else "0"}
    if output_dir is not None:
        env["CLIPSTYLE_NOTEBOOK_OUT"] = str(output_dir)
    env.pop("MPLBACKEND", None)  # a non-inline backend set for tests would hide the figures
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=env)  # passed on to the kernel manager: the kernel's whole environment
    return notebook


def save_executed(notebook: Any, target: Path) -> Path:
    """Write an executed notebook to ``target`` atomically (a reader never sees half a file); returns it."""
    import nbformat

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".tmp")
    nbformat.write(notebook, partial)
    os.replace(partial, target)
    return target


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="Default: every notebooks/*.ipynb.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="Exit 1 if a notebook carries outputs.")
    mode.add_argument("--strip", action="store_true", help="Remove outputs and execution counts in place.")
    parser.add_argument("--fast", action="store_true", help="Micro CLIP, tiny sizes (what `make test` runs).")
    parser.add_argument("-o", "--output-dir", type=Path, default=None,
                        help=f"Executed copies go here (default {BUILD.relative_to(ROOT)}, "
                             f"with --fast {FAST_BUILD.relative_to(ROOT)}).")
    args = parser.parse_args(argv)
    if args.output_dir is None:
        args.output_dir = FAST_BUILD if args.fast else BUILD
    import nbformat

    paths = args.notebooks or notebook_paths()
    if not paths:
        print(f"error: no notebooks under {NOTEBOOKS}", file=sys.stderr)
        return 1
    if args.check or args.strip:
        dirty = 0
        for path in paths:
            notebook = nbformat.read(path, as_version=4)
            if args.strip:
                if strip(notebook):
                    nbformat.write(notebook, path)
                    print(f"stripped {path}")
            elif problems := output_problems(notebook):
                dirty += 1
                print(f"{path}: {'; '.join(problems)}")
        if dirty:
            print(f"error: {dirty} notebook(s) carry outputs; run `python tools/run_notebooks.py --strip`",
                  file=sys.stderr)
        return 1 if dirty else 0
    from nbclient.exceptions import CellExecutionError

    args.output_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in paths:
        started = time.perf_counter()
        try:
            notebook = execute(path, fast=args.fast, output_dir=args.output_dir / "outputs")
        except CellExecutionError as error:
            failed += 1
            print(f"FAILED {path.name}: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
            continue
        target = save_executed(notebook, args.output_dir / path.name)
        print(f"ran {path.name} in {time.perf_counter() - started:.0f} s -> {target}")
    if failed:
        print(f"error: {failed} of {len(paths)} notebook(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
