"""The package as users get it: ``python -m build`` makes an sdist and a wheel (the wheel built from the sdist,
so the sdist is complete), ``twine check`` passes on both, the wheel holds what it must and nothing of the
repository's own, and installed into a new virtual environment outside the repository (not editable) it gives
a working ``clipstyle``.

The new environment reuses this one's installed dependencies (torch among them, as the Makefile installs
them from local files) through a path file, without running this environment's own path files, so an
editable install of the repository here does not leak in: the test asserts that ``clipstyle_opt`` is
imported from the new environment. Set CLIPSTYLE_WHEEL_DIR to a folder holding an sdist and a wheel already
built from this tree to reuse them.

Each Python interpreter claimed in setup.cfg was checked by installing the wheel with its dependencies
resolved by pip (tools/check_pythons.py; minutes per interpreter, so not part of make test).
"""
from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import clipstyle_opt

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("build")


@pytest.fixture(scope="session")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel of this tree: {"sdist": ..., "wheel": ...}."""
    given = os.environ.get("CLIPSTYLE_WHEEL_DIR")
    folder = Path(given) if given else tmp_path_factory.mktemp("dist")
    if not given:
        # --no-isolation: build with this environment's setuptools, offline
        done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(folder), str(ROOT)],
                              capture_output=True, text=True, cwd=folder)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    version = clipstyle_opt.__version__
    out = {"sdist": folder / f"clipstyle_opt-{version}.tar.gz",
           "wheel": folder / f"clipstyle_opt-{version}-py3-none-any.whl"}
    for path in out.values():
        assert path.is_file(), f"{path.name} not built (the version is written once, in clipstyle_opt/__init__.py)"
    return out


def test_twine_check_passes_on_the_sdist_and_the_wheel(dist):
    pytest.importorskip("twine")
    done = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(dist["sdist"]), str(dist["wheel"])],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2


SHIPPED_WEIGHTS = "clipstyle_opt/unet/identity_init.pt"


def test_the_wheel_holds_the_package_its_data_and_nothing_of_the_repository(dist):
    names = zipfile.ZipFile(dist["wheel"]).namelist()
    assert "clipstyle_opt/report_template.html" in names and "clipstyle_opt/py.typed" in names
    # the one model file the package ships: the identity initialization `--init identity` starts from
    assert SHIPPED_WEIGHTS in names
    assert {"clipstyle_opt/study/pages/participant.html", "clipstyle_opt/study/pages/admin.html"} <= set(names)
    assert "clipstyle_opt/testing/__init__.py" in names  # the public helper for random-init models
    tops = {name.split("/")[0] for name in names}
    assert tops == {"clipstyle_opt", f"clipstyle_opt-{clipstyle_opt.__version__}.dist-info"}, tops
    for name in names:
        assert not re.search(r"(^|/)(tests?|data|microclip|notebooks|benchmarks|tools)/", name), name
        assert name == SHIPPED_WEIGHTS or not name.endswith((".ipynb", ".pt", ".ckpt", ".png")), name
        assert "train_micro" not in name and "micro_siglip" not in name, name
    source = {path.relative_to(ROOT).as_posix() for path in (ROOT / "clipstyle_opt").rglob("*.py")}
    assert source <= set(names), sorted(source - set(names))  # every module of the package ships


def test_the_wheel_metadata_carries_the_version_the_pythons_and_the_entry_point(dist):
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        info = f"clipstyle_opt-{clipstyle_opt.__version__}.dist-info"
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert f"\nVersion: {clipstyle_opt.__version__}\n" in metadata
    assert "clipstyle = clipstyle_opt.cli:main" in entry_points
    assert "Provides-Extra: all" in metadata
    assert "\nLicense: MIT\n" in metadata or "\nLicense-Expression: MIT\n" in metadata
    assert any(name.startswith(f"{info}/") and name.endswith("/LICENSE") or name == f"{info}/LICENSE"
               for name in zipfile.ZipFile(dist["wheel"]).namelist())  # the license's text travels with the wheel
    # python_requires and the classifiers claim the same minor versions, this interpreter's among them
    requires = re.search(r"^Requires-Python: (.+)$", metadata, re.M).group(1)
    claimed = set(re.findall(r"^Classifier: Programming Language :: Python :: (3\.\d+)$", metadata, re.M))
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(requires)
    allowed = {f"3.{minor}" for minor in range(0, 30) if spec.contains(f"3.{minor}.0")}
    assert claimed == allowed, (requires, claimed)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in claimed
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(r"^## (\S+)", changelog, re.M).group(1) == clipstyle_opt.__version__


def test_the_sdist_builds_the_wheel_and_leaves_out_the_tests(dist):
    names = tarfile.open(dist["sdist"]).getnames()
    prefix = f"clipstyle_opt-{clipstyle_opt.__version__}/"
    for needed in ("setup.cfg", "setup.py", "pyproject.toml", "README.rst", "CHANGELOG.md", "LICENSE",
                   "clipstyle_opt/report_template.html", "clipstyle_opt/py.typed"):
        assert prefix + needed in names, needed
    assert not [n for n in names if re.search(r"/(tests|microclip|notebooks)/", n)]


def test_the_all_extra_covers_every_optional_feature():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    extras = {name: {line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")}
              for name, text in config["options.extras_require"].items()}
    # not features of the installed package: the tests, the docs, the micro-model kit, the notebooks
    for name, packages in extras.items():
        if name not in ("all", "test", "docs", "train", "notebooks"):
            assert packages <= extras["all"], (name, packages - extras["all"])


def _new_environment(root: Path) -> Path:
    """A new virtual environment (no pip) that sees this environment's packages but not its path files."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv


def _venv_site(venv: Path) -> Path:
    python = venv / "bin" / "python"
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def test_the_wheel_installs_and_runs_outside_the_repository(dist, tmp_path):
    venv = _new_environment(tmp_path)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["CLIPSTYLE_CACHE"] = os.environ.get("CLIPSTYLE_CACHE", str(tmp_path / "cache"))
    # Install first, into an environment that holds nothing yet: not editable, no dependency resolution here.
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                                "--no-index", "--no-compile", "-q", str(dist["wheel"])],
                               capture_output=True, text=True, env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # Then this environment's packages (torch, ...) as a plain path entry: the editable install's finder is
    # installed by a path file there, which a path entry does not run.
    site = _venv_site(venv)
    (site / "zz_project_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "work"
    work.mkdir()
    assert ROOT not in work.parents

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, cwd=work, env=env, timeout=600)

    where = run(str(python), "-c", "import clipstyle_opt, importlib.metadata as m; print(clipstyle_opt.__file__); "
                "print(m.version('clipstyle_opt')); import json; print(json.dumps(m.requires('clipstyle_opt')))")
    assert where.returncode == 0, where.stderr
    module_file, version, requires = where.stdout.splitlines()
    assert Path(module_file).is_relative_to(venv), module_file  # the wheel's copy, not the repository's
    assert version == clipstyle_opt.__version__
    # each dependency the wheel declares (without extras) is satisfied in the environment it runs in
    check = run(str(python), "-c", "import json, sys, importlib.metadata as m\n"
                "from packaging.requirements import Requirement\n"
                "bad = []\n"
                "for text in json.loads(sys.argv[1]):\n"
                "    r = Requirement(text)\n"
                "    if r.marker is not None and not r.marker.evaluate({'extra': ''}): continue\n"
                "    try: v = m.version(r.name)\n"
                "    except m.PackageNotFoundError: bad.append(text); continue\n"
                "    if not r.specifier.contains(v, prereleases=True): bad.append(f'{text} ({v})')\n"
                "print(bad)", requires)
    assert check.returncode == 0 and check.stdout.strip() == "[]", check.stdout + check.stderr

    clipstyle = venv / "bin" / "clipstyle"
    helped = run(str(clipstyle), "--help")
    assert helped.returncode == 0 and "stylize" in helped.stdout, helped.stderr
    models = run(str(clipstyle), "models")
    assert models.returncode == 0 and "ViT-B/32" in models.stdout, models.stderr

    made = run(str(python), "-c", "from clipstyle_opt.testing import make_random_clip; from PIL import Image; "
               "make_random_clip('tiny.pt', 'tiny'); Image.new('RGB', (80, 64), (150, 90, 40)).save('photo.png')")
    assert made.returncode == 0, made.stderr
    styled = run(str(clipstyle), "stylize", "photo.png", "fire", "--clip-model", "tiny.pt", "-o", "out.png",
                 "--size", "64", "--steps", "2", "--n-crops", "2", "--crop-size", "32", "--device", "cpu",
                 "--precision", "fp32", "--threads", "1", "--quiet")
    assert styled.returncode == 0, styled.stderr
    sidecar = json.loads((work / "out.json").read_text())
    assert sidecar["versions"]["clipstyle_opt"] == clipstyle_opt.__version__
    assert sidecar["output_size"] == [64, 80] and sidecar["threads"] == 1
