"""The ``clipstyle`` group: its options, every command registered by name, and `main`, the console script."""
from __future__ import annotations

import click

from .apply import apply_command
from .correlate import correlate_command
from .evaluate import eval_command
from .models import models_command
from .report import report_command
from .serve import serve_command
from .study import study_command
from .stylize import stylize_command
from .sweep import sweep_command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="clipstyle_opt")
@click.option("--debug", is_flag=True, envvar="CLIPSTYLE_DEBUG",
              help="Print the full traceback of an error (also: CLIPSTYLE_DEBUG=1).")
def cli(debug: bool) -> None:
    """Text-driven image style transfer by per-image optimization (CLIPstyler).

    Errors end in one line: exit 2 for a bad flag or setting, 1 for a failure
    while running, 130/143 when interrupted. Images over 200,000,000 pixels are
    refused unless CLIPSTYLE_MAX_PIXELS allows more.
    """


cli.add_command(stylize_command)
cli.add_command(apply_command)
cli.add_command(models_command)
cli.add_command(eval_command)
cli.add_command(report_command)
cli.add_command(sweep_command)
cli.add_command(correlate_command)
cli.add_command(serve_command)
cli.add_command(study_command)


def main() -> None:
    """Console-script entry point. SIGTERM raises like Ctrl-C, so cleanup runs and the exit status is 143."""
    from ..interrupts import raise_on_sigterm

    raise_on_sigterm()
    cli(prog_name="clipstyle")


__all__ = ["cli", "main"]
