"""Errors a user can cause. The CLI turns each into one line and an exit code."""
from __future__ import annotations


class ClipstyleError(Exception):
    """Base class: a problem the user can fix; its message is one clear line."""

    exit_code = 1


class ConfigError(ClipstyleError, ValueError):
    """A knob has a value outside its range or of the wrong type."""

    exit_code = 2


class ModelUnavailableError(ClipstyleError):
    """Weights are neither cached nor downloadable (e.g. no network)."""


class ImageReadError(ClipstyleError):
    """An input image is missing, unreadable or too large."""


class OutputExistsError(ClipstyleError):
    """An output file exists and ``overwrite`` was not asked for."""
