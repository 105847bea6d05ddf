"""Helper scripts for people working in a checkout, run from the repository root.

``python tools/run_notebooks.py`` (execute, check or strip the notebooks; ``make notebooks``),
``python tools/before_after.py`` (side-by-side sheets for the README) and
``tools/gpu_session.sh`` (one GPU session's measurements). A package only so that the tests can
import a script's functions (``from tools import run_notebooks``); it is not part of the wheel,
which ships ``clipstyle_opt`` alone. The micro-model kit is in ``microclip/``.
"""
