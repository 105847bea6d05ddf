"""Sphinx configuration of the clipstyle_opt manual (``make docs`` -> build/docs/html).

Two parts of the source tree are written here, before reading, and are not committed:

- ``docs/api/``: one page per public module, listing exactly the public names of
  ``tools/public_api.py`` (the same listing tests/test_docstrings.py holds to docstrings);
- ``docs/notebooks/``: executed copies of ``notebooks/*.ipynb``, rendered with their outputs.
  Nothing is executed here (myst-nb's execution is off): the copies come from ``make notebooks``
  (``build/notebooks/``, readable sizes) when it has run since the notebooks last changed, else
  from the fast-mode copies tests/test_notebooks.py saves (``build/notebooks-fast/``: what CI
  renders), else from ``CLIPSTYLE_DOCS_NOTEBOOKS=DIR``.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import clipstyle_opt  # noqa: E402  (after the path: the tree being documented, not an installed copy)
from tools import public_api  # noqa: E402

project = "clipstyle_opt"
author = "the clipstyle_opt authors"
copyright = "2026, the clipstyle_opt authors"
release = version = clipstyle_opt.__version__

extensions = [
    "myst_nb",  # MyST Markdown pages and rendered notebooks (it loads myst_parser itself)
    "sphinx.ext.autodoc",
    "sphinx_click",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "notebooks/_*"]
templates_path: list[str] = []

html_theme = "furo"
html_title = f"clipstyle_opt {release}"
html_static_path: list[str] = []
# Files the notebooks link to in their outputs (the report page of 03), copied by write_notebook_pages.
html_extra_path = ["_extra"]
html_last_updated_fmt = None
html_show_sourcelink = False  # the source is the repository; the copies of executed notebooks are large
html_copy_source = False

# MyST: headings up to ### get anchors, so links to page.md#section are checked like page links.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]
# Notebooks are rendered, never run: see the module docstring for which executed copies.
nb_execution_mode = "off"
nb_merge_streams = True

# Every cross-reference must resolve (-W turns the warnings into errors). Names of other projects
# cannot be resolved offline (no intersphinx inventories here), so those alone are let through.
nitpicky = True
EXTERNAL = ("torch", "PIL", "numpy", "np", "pandas", "pd", "click", "os", "pathlib", "typing", "collections",
            "ray", "nbformat", "open_clip", "matplotlib", "kornia", "yaml", "types", "io", "dataclasses",
            "concurrent", "contextlib", "enum", "threading", "subprocess", "argparse", "logging", "json",
            "tqdm", "av", "sqlalchemy", "fastapi", "gradio", "selenium", "abc", "re", "signal", "hashlib",
            "collections.abc", "builtins", "csv", "random", "tempfile", "uuid", "functools", "itertools",
            "warnings", "datetime", "decimal", "fractions", "numbers", "math", "sys", "clip", "timm",
            "transformers", "safetensors", "torchvision", "scipy", "urllib", "http", "socket", "zipfile")
nitpick_ignore_regex = [
    (r"py:.*", rf"({'|'.join(EXTERNAL)})(\..*)?"),
    # builtins and typing names as annotations show them
    (r"py:.*", r"(int|float|str|bytes|bool|None|NoneType|object|dict|list|tuple|set|frozenset|type|callable"
               r"|Any|Optional|Union|Callable|Iterable|Iterator|Sequence|Mapping|Literal|Generator|ClassVar"
               r"|Path|PathLike|Tensor|Image|DataFrame|Module|ellipsis|TextIO|BinaryIO|IO|Self|Protocol|"
               r"TypeVar|Hashable|MutableMapping|NamedTuple|Enum|Exception|ValueError|RuntimeError|OSError)"),
    (r"py:.*", r"\w+\.\w+Error"),
    # generic annotations of constants (``dict[str, Any]``) that the data directive's type field splits
    (r"py:class", r".*\[.*"),
]

# Docstrings quote names in single backquotes (`Stylizer`, `augment.StaticCrops`, `clipstyle eval`): as
# py:obj references they link to the object when one documented name ends with them, and stay code when
# none does (see _link_short_names). Explicit roles (:py:func:, {py:mod}) and annotations stay nitpicky.
default_role = "py:obj"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True  # show `size=DEFAULT` as written, not a long repr
autodoc_inherit_docstrings = False  # a method without its own docstring must show as such (and fails the test)

API = DOCS / "api"
NOTEBOOK_PAGES = DOCS / "notebooks"
EXTRA = DOCS / "_extra"
NOTEBOOK_SOURCES = (ROOT / "build" / "notebooks", ROOT / "build" / "notebooks-fast")
NOTEBOOK_KIND = {"notebooks": "`make notebooks`: readable sizes, the real CLIP when it could be downloaded, "
                              "else the micro CLIP",
                 "notebooks-fast": "the fast mode of tests/test_notebooks.py (`CLIPSTYLE_NOTEBOOK_FAST=1`): "
                                   "micro CLIP, 64 px, 8 steps"}


def _title(text: str, mark: str = "=") -> str:
    return f"{text}\n{mark * len(text)}\n"


def _write_if_changed(path: Path, text: str) -> None:
    # Sphinx rereads a source whose mtime moved: rewriting identical pages would rebuild them all.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def write_api_pages() -> None:
    """One reST page per public module under docs/api/, and docs/api/index.rst listing them."""
    API.mkdir(exist_ok=True)
    by_module: dict[str, list[public_api.PublicName]] = {}
    names = public_api.public_names()
    for name in names:
        if name.kind == "module":
            by_module[name.qualified] = []
        elif name.kind not in ("method", "property"):
            by_module[name.qualified.rpartition(".")[0]].append(name)
    # A constant re-exported by a package whose defining module lists only functions and classes (no
    # __all__) is still documented once, on its defining module's page.
    for name in names:
        if name.kind == "constant" and name.home != name.qualified:
            entries = by_module[name.home.rpartition(".")[0]]
            if name.home not in {e.qualified for e in entries}:
                entries.append(public_api.PublicName(name.home, "constant", name.documented, name.home))
    members: dict[str, list[str]] = {}
    for name in names:
        if name.kind in ("method", "property"):
            members.setdefault(name.qualified.rpartition(".")[0], []).append(name.qualified.rpartition(".")[2])
    pages = []
    for module_name, entries in by_module.items():
        module = sys.modules[module_name]
        lines = [_title(f"``{module_name}``"), f".. automodule:: {module_name}\n   :no-members:\n"]
        own = [e for e in entries if e.home == e.qualified]
        elsewhere = [e for e in entries if e.home != e.qualified]
        for entry in own:
            short = entry.qualified.rpartition(".")[2]
            value = getattr(module, short)
            if entry.kind == "command":
                command = "clipstyle" if value.name in ("cli", "clipstyle") else f"clipstyle {value.name}"
                lines.append(f".. py:data:: {short}\n\n   The ``{command}`` command (a :class:`click.Command`; "
                             f"its options are in the :doc:`command line reference </cli>`).\n")
            elif entry.kind == "class":
                listed = ", ".join(members.get(entry.qualified, []))
                lines.append(f".. autoclass:: {entry.qualified}\n   :show-inheritance:\n"
                             + (f"   :members: {listed}\n" if listed else ""))
            elif entry.kind == "function":
                lines.append(f".. autofunction:: {entry.qualified}\n")
            else:
                lines.append(f".. autodata:: {entry.qualified}\n   :no-value:\n")
        if elsewhere:
            lines.append(".. rubric:: Also importable from here\n")
            for entry in elsewhere:
                role = {"class": "class", "function": "func"}.get(entry.kind, "data")
                lines.append(f"- ``{entry.qualified.rpartition('.')[2]}``: :py:{role}:`{entry.home}`")
            lines.append("")
        page = API / f"{module_name}.rst"
        _write_if_changed(page, "\n".join(lines))
        pages.append(page.stem)
    for stale in API.glob("*.rst"):
        if stale.stem not in pages and stale.name != "index.rst":
            stale.unlink()
    index = [_title("API reference"),
             "Generated from the docstrings: every public module of the package, and in each its public "
             "functions, classes (with their public methods) and documented constants. What counts as "
             "public is ``tools/public_api.py``; ``tests/test_docstrings.py`` fails on a public name "
             "without a docstring, so nothing here is listed undocumented. Names that a package re-exports "
             "(``from clipstyle_opt import Stylizer``) link to the module that defines them.\n",
             ".. toctree::\n   :maxdepth: 1\n"]
    index += [f"   {page}" for page in pages]
    _write_if_changed(API / "index.rst", "\n".join(index) + "\n")


def notebook_copies() -> Path:
    """The folder of executed copies to render (see the module docstring); exits with one line if none fits."""
    sources = sorted((ROOT / "notebooks").glob("*.ipynb"))

    def fresh(folder: Path) -> bool:
        return all((folder / s.name).is_file() and (folder / s.name).stat().st_mtime >= s.stat().st_mtime
                   for s in sources)

    chosen = os.environ.get("CLIPSTYLE_DOCS_NOTEBOOKS")
    if chosen:
        if not fresh(Path(chosen)):
            sys.exit(f"error: CLIPSTYLE_DOCS_NOTEBOOKS={chosen} lacks executed copies of "
                     f"{', '.join(s.name for s in sources)} newer than notebooks/")
        return Path(chosen)
    for folder in NOTEBOOK_SOURCES:
        if fresh(folder):
            return folder
    sys.exit("error: no executed notebooks to render (the docs build runs none itself): run `make notebooks` "
             "or `python tools/run_notebooks.py --fast` (what `make docs` does when none exist)")


def _relink_outputs(text: str, stem: str) -> str:
    """Point the local file links in a notebook's HTML outputs (``FileLink``) at copies the site carries.

    In Jupyter such a link is relative to the notebook's folder; on the site it would be dead. A target
    that still exists is copied to ``nbfiles/<notebook>/`` in the site's root (html_extra_path) and the link
    points there; one that is gone (a test's temporary folder) becomes its path as code, not a dead link.
    """
    notebook = json.loads(text)

    def relink(match: re.Match) -> str:
        href, label = match.group(1), match.group(2)
        source = (ROOT / "notebooks" / href).resolve()
        if not source.is_file():
            return f"<code>{label}</code>"
        copied = EXTRA / "nbfiles" / stem / source.name
        copied.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copied)
        return f'<a href="../nbfiles/{stem}/{source.name}" target="_blank">{label}</a>'

    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html")
            if html is not None:
                joined = "".join(html) if isinstance(html, list) else html
                output["data"]["text/html"] = re.sub(r'<a href=[\'"](?![a-z]+:|#|/)([^\'"]+)[\'"][^>]*>(.*?)</a>',
                                                     relink, joined, flags=re.S)
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def write_notebook_pages() -> None:
    """Copy the chosen executed notebooks into docs/notebooks/, with _source.md saying which copies they are."""
    folder = notebook_copies()
    NOTEBOOK_PAGES.mkdir(exist_ok=True)
    names = []
    shutil.rmtree(EXTRA / "nbfiles", ignore_errors=True)
    EXTRA.mkdir(exist_ok=True)
    for copy in sorted(folder.glob("*.ipynb")):
        _write_if_changed(NOTEBOOK_PAGES / copy.name, _relink_outputs(copy.read_text(encoding="utf-8"), copy.stem))
        names.append(copy.stem)
    for stale in NOTEBOOK_PAGES.glob("*.ipynb"):
        if stale.stem not in names:
            stale.unlink()
    where = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
    kind = NOTEBOOK_KIND.get(folder.name, "a folder named by CLIPSTYLE_DOCS_NOTEBOOKS")
    _write_if_changed(NOTEBOOK_PAGES / "_source.md", f"**This build renders `{where}/`**: {kind}.\n")


write_api_pages()
write_notebook_pages()


def _warn_on_empty_docstring(app, what, name, obj, options, lines) -> None:
    """A second net beside tests/test_docstrings.py: an undocumented public object fails the -W build."""
    if what in ("module", "class", "function", "method", "property") and not any(line.strip() for line in lines):
        if not name.rpartition(".")[2].startswith("_") and not inspect.ismodule(obj) or what == "module":
            from sphinx.util import logging

            logging.getLogger(__name__).warning(f"{what} {name} has no docstring", type="clipstyle",
                                                subtype="undocumented")


def _separate_items(app, what, name, obj, options, lines) -> None:
    """Give the package's plain docstring layout the blank lines reST needs.

    Docstrings here list parameters as ``name: text`` lines whose continuation is indented, and
    start lists right under a sentence, without blank lines (they read well as plain text). reST
    reads an indented continuation as a definition, but wants a blank line wherever the indentation
    steps back or a new item starts after a paragraph. Only blank lines are added; no text changes.
    """
    if not name.startswith("clipstyle_opt"):
        return
    fixed: list[str] = []
    for index, line in enumerate(lines):
        previous = fixed[-1] if fixed else ""
        following = lines[index + 1] if index + 1 < len(lines) else ""
        starts_item = following.startswith(" ") and following.strip()
        if line.strip() and not line.startswith(" ") and previous.strip() and not previous.rstrip().endswith("::"):
            if previous.startswith(" ") or starts_item:
                fixed.append("")
        fixed.append(line)
    lines[:] = fixed


def _link_short_names(app, env, node, contnode):
    """Resolve a default-role name by its dotted suffix; one that names no documented object stays code."""
    if node.get("refdomain") != "py" or node.get("reftype") != "obj":
        return None
    from sphinx.util.nodes import make_refnode

    target = node["reftarget"].lstrip("~.")
    objects = env.get_domain("py").objects
    matches = [name for name in objects if name == target or name.endswith("." + target)]
    if not matches:
        return contnode  # not a Python name (a flag, a command, a parameter): shown as code, not a link
    here = node.get("py:module") or ""
    # Several candidates: the one sharing the longest module prefix with the page, then the shortest name.
    best = max(matches, key=lambda name: (len(os.path.commonprefix([name, here])), -len(name)))
    entry = objects[best]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, best)


def _escape_stars(app, ctx, lines) -> None:
    """Command help is plain text (``photos/*.jpg``): a lone ``*`` must not open emphasis in reST."""
    lines[:] = [line.replace("*", "\\*") for line in lines]


def setup(app) -> None:
    """Register the docstring layout fix, the undocumented-name check and the help escaping."""
    for part in ("description", "options", "arguments", "epilog"):
        app.connect(f"sphinx-click-process-{part}", _escape_stars)
    app.connect("autodoc-process-docstring", _separate_items)
    app.connect("missing-reference", _link_short_names)
    app.connect("autodoc-process-docstring", _warn_on_empty_docstring)
