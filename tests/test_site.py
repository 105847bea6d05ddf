"""The documentation site (docs/): it builds offline with no warnings, every link in it resolves, and it
shows what the issue asks for; the README stays a landing page.

One fresh Sphinx build per run, into a temporary folder, with ``-n -W --keep-going`` (nitpicky: every
cross-reference must resolve; a warning fails the build) — what ``make docs`` runs. The notebooks are
rendered from executed copies, never run by the build: this file sorts after tests/test_notebooks.py, which
saves its fast-mode copies to build/notebooks-fast/ (what CI renders); run alone, it executes any copy that
is missing or older than its notebook first (about a minute on 2 cores). On two xdist workers the two files
may run at once: they take turns on the folder (``run_notebooks.fast_build_lock``).

The browser test needs Debian's ``chromium`` and ``chromium-driver``, like tests/test_report.py.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from browser_helpers import headless_chromium

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")
pytest.importorskip("sphinx_click")
pytest.importorskip("furo")

from tools import public_api  # noqa: E402
from tools import run_notebooks as runner  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["index.html", "cli.html", "api/index.html", "gallery.html", "notebooks.html", "method.html",
         "architecture.html", "guides/quickstart.html", "guides/encoders.html", "guides/styles-masks-focus.html",
         "guides/sweeps.html", "guides/evaluation.html", "guides/large-images-video.html",
         "guides/performance.html", "guides/troubleshooting.html", "guides/testing.html"]


def _fresh(copy: Path, source: Path) -> bool:
    return copy.is_file() and copy.stat().st_mtime >= source.stat().st_mtime


def _executed_copies() -> Path:
    """A folder of executed notebooks the build may render (docs/conf.py's rule), executing what is missing."""
    sources = runner.notebook_paths()
    for folder in (runner.BUILD, runner.FAST_BUILD):
        if all(_fresh(folder / s.name, s) for s in sources):
            return folder
    pytest.importorskip("nbclient")
    for source in sources:  # run alone, or after a failed notebook test: make the missing fast copies explicitly
        if not _fresh(runner.FAST_BUILD / source.name, source):
            executed = runner.execute(source, fast=True, output_dir=runner.FAST_BUILD / "outputs", timeout=1200)
            runner.save_executed(executed, runner.FAST_BUILD / source.name)
    return runner.FAST_BUILD


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    # Held through the build: tests/test_notebooks.py, perhaps on the other xdist worker, rewrites the copies.
    with runner.fast_build_lock():
        folder = _executed_copies()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "CLIPSTYLE_DOCS_NOTEBOOKS": str(folder)}
        done = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-n", "-W", "--keep-going", "-q",
                               str(ROOT / "docs"), str(out / "html"), "-d", str(out / "doctrees")],
                              capture_output=True, text=True, env=env, timeout=900)
    build["log"], build["returncode"] = done.stdout + done.stderr, done.returncode
    return out / "html"


build: dict = {}
"""The build's log and return code (module state: the site fixture is built once per module)."""


def test_builds_with_no_warnings(site):
    log = build["log"]
    assert build["returncode"] == 0 and "WARNING" not in log and "ERROR" not in log, log[-4000:]


def test_every_page_the_issue_asks_for_exists(site):
    missing = [page for page in PAGES if not (site / page).is_file()]
    assert not missing
    notebooks = sorted(p.name for p in (site / "notebooks").glob("*.html"))
    assert notebooks == [p.stem + ".html" for p in runner.notebook_paths()]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        if tag == "a" and values.get("name"):
            self.ids.add(values["name"])
        for key in ("href", "src"):
            if values.get(key) and tag in ("a", "img", "link", "script", "source"):
                self.links.append(values[key])


def broken_links(site: Path) -> list[str]:
    """Every relative href/src of every page that names a missing file or a missing #anchor in one."""
    parsed: dict[Path, _Links] = {}

    def parse(page: Path) -> _Links:
        if page not in parsed:
            parser = _Links()
            parser.feed(page.read_text(encoding="utf-8", errors="replace"))
            parsed[page] = parser
        return parsed[page]

    broken = []
    for page in sorted(site.rglob("*.html")):
        for link in parse(page).links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//"):
                continue  # external: not checked offline
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {link} (no such file)")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in parse(target).ids:
                broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    return broken


def test_every_internal_link_and_anchor_resolves(site):
    broken = broken_links(site)
    assert not broken, "\n".join(broken[:40])


def test_the_link_check_finds_a_missing_page_and_a_missing_anchor(tmp_path):
    (tmp_path / "a.html").write_text('<h1 id="top">A</h1><a href="b.html#there">b</a><a href="b.html#gone">x</a>'
                                     '<a href="c.html">c</a><img src="img/p.png"><a href="https://x.org/y">e</a>')
    (tmp_path / "b.html").write_text('<section id="there"></section><a href="a.html#top">a</a>')
    assert broken_links(tmp_path) == ["a.html: b.html#gone (no such anchor)", "a.html: c.html (no such file)",
                                      "a.html: img/p.png (no such file)"]


def test_the_api_reference_shows_every_public_name(site):
    pages = "".join(p.read_text(encoding="utf-8") for p in (site / "api").glob("*.html"))
    ids = set(re.findall(r'id="(clipstyle_opt[\w.]*)"', pages))
    names = public_api.public_names()
    shown = {n.home for n in names if n.home in ids}
    missing = sorted({n.home for n in names if n.kind != "module"} - shown)
    assert not missing, f"public names missing from the API pages: {missing[:20]}"
    modules = {n.qualified for n in names if n.kind == "module"}
    assert modules <= {p.stem for p in (site / "api").glob("*.html")}


def test_cli_reference_lists_every_command_and_a_setting_with_its_help(site):
    from clipstyle_opt.cli.main import cli

    page = (site / "cli.html").read_text(encoding="utf-8")
    for name in cli.commands:
        assert f"clipstyle-{name}" in page, name
    assert "--lambda-patch" in page and "--clip-model" in page


def test_notebook_pages_show_their_outputs_and_say_which_copies(site):
    page = (site / "notebooks" / "01_quickstart.html").read_text(encoding="utf-8")
    assert "<img" in page  # an inline figure from the executed copy
    index = (site / "notebooks.html").read_text(encoding="utf-8")
    assert "This build renders" in index and "CI renders the fast-mode copies" in index


def test_readme_is_a_landing_page():
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 200
    # The first section is still the two commands for a fresh machine, before anything else is explained.
    first = text.index("\n---")
    section = text[text.rfind("\n", 0, first - 1):text.index("\n---", first + 4)]
    assert "make demo\n    make test" in section
    assert "micro CLIP" in text[:text.index("Quick start")]  # the picture at the top names its model
    for target in re.findall(r"<([^<>]+)>`_", text) + re.findall(r"\.\. image:: (\S+)", text):
        if not urlsplit(target).scheme:
            assert (ROOT / target).exists(), f"README links to a missing {target}"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with headless_chromium(tmp_path_factory.mktemp("chrome-profile"), "the docs' browser test", window="1280,900") as driver:
        yield driver


@pytest.mark.parametrize("page, heading", [
    ("index.html", "clipstyle_opt"),
    ("guides/styles-masks-focus.html", "Several styles, masks, focus and attention"),
    ("guides/sweeps.html", "Sweeps: many runs, one table, on one machine or on Ray"),
])
def test_pages_open_in_a_browser_with_their_heading_and_a_picture(site, browser, page, heading):
    from selenium.webdriver.common.by import By

    browser.get((site / page).as_uri())
    h1 = browser.find_element(By.CSS_SELECTOR, "article h1")
    assert h1.text.strip().rstrip("#¶").strip() == heading
    images = browser.find_elements(By.CSS_SELECTOR, "article img")
    loaded = [img for img in images if browser.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", img)]
    assert loaded, f"{page}: no image loaded"
