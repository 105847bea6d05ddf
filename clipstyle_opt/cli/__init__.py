"""``clipstyle``: the command line. It parses flags, prints, and calls the public API.

Every failure ends in one ``error:`` line on stderr (a traceback only with
``--debug``): exit 2 for a usage error (a bad flag, argument or setting),
1 for a runtime failure, 130/143 for a run stopped by SIGINT/SIGTERM.

One module per command (`stylize`, `apply`, `models`, `evaluate`, `report`,
`sweep`, `correlate`); what they share is in `common`; `main` holds the group
that registers them. Command modules import `common`, never `main`.
"""
from .main import cli, main

__all__ = ["cli", "main"]
