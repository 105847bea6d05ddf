"""What every ``clipstyle`` command shares: the setting flags, the config they build, output names, errors.

The setting flags come from the `StyleConfig` descriptions (`clipstyle_opt.config.settings`): one
flag per setting, its help, its click type and the default shown. `handle_errors` turns every
failure into one ``error:`` line and an exit code.
"""
from __future__ import annotations

import functools
import hashlib
import re
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, NoReturn

import click

from ..config import PRESETS, Setting, StyleConfig, read_config_file, settings
from ..devices import is_out_of_memory
from ..errors import ClipstyleError, ClipstyleWarning, ConfigError, first_line
from ..interrupts import exit_code

def flag(name: str) -> str:
    """The command-line flag of a setting: ``crop_size`` -> ``--crop-size``."""
    return "--" + name.replace("_", "-")


def splits_on_commas(item: Setting) -> bool:
    """Whether the setting's flag takes one comma-separated list (``--content-layers relu4_2,relu5_2``);
    a setting that takes one value or several repeats its flag instead (``--clip-model``)."""
    return item.multiple and not item.single_ok


def setting_option(item: Setting) -> Callable[[Callable], Callable]:
    """The click option of one setting: its flag, help and type from its description.

    A bool is a ``--x/--no-x`` switch; one-or-several values repeat the flag; a tuple is a
    comma-separated list; choices are a `click.Choice`. The default shown is the reference
    default, or what None means (``none_means``); an empty list shows none (its help says it).
    """
    default = item.default
    if item.type is bool:
        return click.option(f"{flag(item.name)}/--no-{item.name.replace('_', '-')}", item.name, default=default,
                            help=item.help, show_default=True)
    if item.single_ok:  # repeatable: several make a tuple (e.g. an ensemble)
        return click.option(flag(item.name), item.name, multiple=True, default=(default,), help=item.help,
                            show_default=True)
    kind: Any = item.type
    if item.choices is not None and not item.multiple:
        kind = click.Choice(item.choices)
    elif splits_on_commas(item):
        kind, default = str, ",".join(str(value) for value in default)
    shown: Any = True if default is not None else (item.none_means or "none")
    if default == "":
        shown = False
    return click.option(flag(item.name), item.name, type=kind, default=default, help=item.help, show_default=shown)


def config_options(command: Callable) -> Callable:
    """Add one option per `StyleConfig` setting, in field order, defaulting to the reference value.

    Only flags given on the command line override the preset and the config
    file (see `build_config`), so the defaults shown are informative.
    """
    for item in reversed(settings()):
        command = setting_option(item)(command)
    return command


def given_on_command_line(values: dict[str, Any]) -> dict[str, Any]:
    """The `StyleConfig` flags the user typed, parsed (comma lists become tuples)."""
    ctx = click.get_current_context()
    out = {}
    for item in settings():
        if ctx.get_parameter_source(item.name) is not click.core.ParameterSource.COMMANDLINE:
            continue
        value = values[item.name]
        if splits_on_commas(item):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        out[item.name] = value
    return out


def name_the_flag(exc: ConfigError, given: dict[str, Any], file_keys: set[str], config_file: str | None) -> ConfigError:
    """The same error, naming the flag (``--crop-size``) or the config file where the bad value came from."""
    message, key = str(exc), exc.key
    if key in given and message.startswith(key):
        message = flag(key) + message[len(key):]
    elif key in file_keys and config_file:
        message = f"{config_file}: {message}"
    return ConfigError(message, key)


def build_config(preset: str, config_file: str | None, given: dict[str, Any]) -> StyleConfig:
    """Reference defaults < preset < config file < flags given on the command line.

    A bad value's error names its flag, or the config file it came from. A
    crop size set above the training size is refused (the library clamps it).
    """
    merged: dict[str, Any] = dict(PRESETS[preset])
    file_values: dict[str, Any] = {}
    if config_file:
        try:
            file_values = read_config_file(config_file)
        except ConfigError as exc:
            raise name_the_flag(exc, {}, {exc.key} if exc.key else set(), config_file) from None
        merged.update(file_values)
    merged.update(given)
    try:
        config = StyleConfig.from_dict(merged)
    except ConfigError as exc:
        raise name_the_flag(exc, given, set(file_values), config_file) from None
    if ("crop_size" in given or "crop_size" in file_values) and config.crop_size > config.size:
        where = "--crop-size" if "crop_size" in given else f"{config_file}: crop_size"
        raise ConfigError(f"{where} ({config.crop_size} px) is larger than the training size --size "
                          f"({config.size} px); crops are cut from the training image", "crop_size")
    return config


def slug(text: str, limit: int = 48) -> str:
    """A file-name part from a prompt: lower-case ASCII words joined by '-' (at most ``limit`` characters).

    A prompt with non-ASCII characters (accents, other scripts, emoji) also
    gets a short hash of the whole text, so different prompts get different names.
    """
    out = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:limit].rstrip("-")
    if text.isascii():
        return out or "style"
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return f"{out}-{digest}" if out else f"prompt-{digest}"


def names_directory(output: str) -> bool:
    """Whether ``-o OUTPUT`` names a directory: no suffix, an existing directory, or a trailing slash."""
    path = Path(output)
    return not path.suffix or path.is_dir() or output.endswith(("/", "\\"))


def resolve_output(output: str, content: str, prompt: str) -> Path:
    """A file if ``output`` has a suffix (checked later), else a directory for ``<photo>_<prompt>.png``."""
    if not names_directory(output):
        return Path(output)
    return Path(output) / f"{Path(content).stem}_{slug(prompt)}.png"


def _debug_requested() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


def _fail(message: str, code: int, debug: bool) -> NoReturn:
    if debug:
        click.echo(traceback.format_exc().rstrip(), err=True)
    click.echo(message, err=True)
    sys.exit(code)


def _show_warning(default: Callable, message: Any, category: type, *args: Any, **kwargs: Any) -> None:
    if issubclass(category, ClipstyleWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        default(message, category, *args, **kwargs)


def handle_errors(command: Callable) -> Callable:
    """Turn every failure into one line on stderr and an exit code; print our warnings as ``warning:`` lines.

    `ClipstyleError`: its message and exit code (1, or 2 for a bad setting).
    Out of memory: 1, with what to lower. Interrupted: 130 (SIGINT) or 143
    (SIGTERM). Anything else is a bug: one line and exit 1. ``--debug``
    prints the traceback first.
    """
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = _debug_requested()
        with warnings.catch_warnings():
            warnings.simplefilter("always", ClipstyleWarning)
            warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
            try:
                return command(*args, **kwargs)
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except ClipstyleError as exc:
                _fail(f"error: {exc}", exc.exit_code, debug)
            except KeyboardInterrupt as exc:
                signum = getattr(exc, "signum", signal.SIGINT)
                _fail(f"interrupted ({signal.Signals(signum).name}): nothing more was saved", exit_code(signum), debug)
            except Exception as exc:
                if is_out_of_memory(exc):
                    _fail("error: out of memory; use smaller images or settings (see --help)", 1, debug)
                first = first_line(exc, fallback="")[:200]
                _fail(f"error: unexpected {type(exc).__name__}: {first} (a bug: rerun with --debug for the "
                      "traceback and please report it)", 1, debug)
    return wrapper


__all__ = ["flag", "config_options", "setting_option", "given_on_command_line", "name_the_flag",
           "build_config", "slug", "names_directory", "resolve_output", "handle_errors"]
