"""One description per setting: `Setting`, attached to a `StyleConfig` field, and what is derived from it.

A field is declared with `setting`, which stores its `Setting` in the field's metadata::

    size: int = setting(512, "Training long side in px.", group="sizes", unit="px", minimum=64, maximum=4096)

From these descriptions come the command line's flags and help (`clipstyle_opt.cli.common`), the
type, range and choice checks of `StyleConfig.validate` (`check_described`), the keys a sweep spec
knows, and `clipstyle_opt.config.ENCODER_KEYS`. `clipstyle_opt.config.settings` lists them.
This module imports nothing from the package.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional

_KEY = "clipstyle_opt.setting"


@dataclass(frozen=True)
class Setting:
    """What one `StyleConfig` field means, once.

    name, type, default: filled in from the dataclass field. ``type`` is the type of one value
    (int, float, bool or str); ``optional``: None is allowed (``none_means`` says what it does);
    ``multiple``: a tuple of such values (``single_ok``: one value alone is accepted too).
    help: one line, shown by ``clipstyle stylize --help``. details: more, where it helps.
    unit: e.g. ``"px"``; shown in the range's error message. minimum/maximum: inclusive unless
    ``exclusive_minimum``/``exclusive_maximum``. note: a remark the range's error message adds in
    parentheses. choices: the allowed values. group: a heading (``"sizes"``, ``"loss weights"``).
    affects_encoders: changing it needs other encoders, so it is fixed per `Stylizer`.
    speed_only: it changes speed or memory, not the image (beyond float rounding).
    """

    help: str
    group: str = ""
    unit: Optional[str] = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    note: Optional[str] = None
    choices: Optional[tuple[Any, ...]] = None
    none_means: Optional[str] = None
    affects_encoders: bool = False
    speed_only: bool = False
    details: str = ""
    name: str = ""
    type: type = object
    default: Any = None
    optional: bool = False
    multiple: bool = False
    single_ok: bool = False

    def range_text(self) -> str:
        """The allowed range as the error messages write it: ``in 64..4096 px``, ``in [0, 1)``, ``>= 8 px``;
        "" without bounds."""
        low, high = self.minimum, self.maximum
        if low is None and high is None:
            return ""
        if low is not None and high is not None:
            if self.type is int and not (self.exclusive_minimum or self.exclusive_maximum):
                text = f"in {low}..{high}"
            else:
                text = f"in {'(' if self.exclusive_minimum else '['}{low}, {high}{')' if self.exclusive_maximum else ']'}"
        elif low is not None:
            text = f"{'>' if self.exclusive_minimum else '>='} {low}"
        else:
            text = f"{'<' if self.exclusive_maximum else '<='} {high}"
        return text + (f" {self.unit}" if self.unit else "") + (f" ({self.note})" if self.note else "")

    def in_range(self, value: float) -> bool:
        """Whether a number of the right type lies in [minimum, maximum] (or the open sides)."""
        if self.minimum is not None and (value <= self.minimum if self.exclusive_minimum else value < self.minimum):
            return False
        if self.maximum is not None and (value >= self.maximum if self.exclusive_maximum else value > self.maximum):
            return False
        return True


def setting(default: Any, help: str, **description: Any) -> Any:
    """A dataclass field with ``default`` described by ``Setting(help, **description)``."""
    return dataclasses.field(default=default, metadata={_KEY: Setting(help, **description)})


def _shape(annotation: Any) -> tuple[type, bool, bool, bool]:
    """(type of one value, optional, multiple, single_ok) of ``int``, ``int | None``, ``tuple[str, ...]``,
    ``str | tuple[str, ...]``."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    args = typing.get_args(annotation) if union else (annotation,)
    optional = type(None) in args
    args = tuple(a for a in args if a is not type(None))
    tuples = [a for a in args if typing.get_origin(a) is tuple]
    if tuples:
        return typing.get_args(tuples[0])[0], optional, True, len(args) > 1
    (single,) = args
    return single, optional, False, False


def describe(cls: type) -> tuple[Setting, ...]:
    """The `Setting` of every field of the dataclass ``cls``, in field order, with name, type and default."""
    hints = typing.get_type_hints(cls)
    out = []
    for item in dataclasses.fields(cls):
        if _KEY not in item.metadata:
            raise TypeError(f"{cls.__name__}.{item.name} has no Setting; declare it with setting(...)")
        kind, optional, multiple, single_ok = _shape(hints[item.name])
        out.append(dataclasses.replace(item.metadata[_KEY], name=item.name, type=kind, default=item.default,
                                       optional=optional, multiple=multiple, single_ok=single_ok))
    return tuple(out)


def docstring_section(described: tuple[Setting, ...]) -> str:
    """A reST section listing each setting (type, default, range, unit, what None means, help, details) by group,
    for the docstring of the class they describe."""
    lines = ["", "    Settings, by group (`clipstyle_opt.config.settings` gives them as `Setting` objects):"]
    group = None
    for item in described:
        if item.group != group:
            group = item.group
            lines += ["", f"    *{group}*", ""]
        kind = item.type.__name__
        if item.multiple:
            kind = f"{kind} or tuple of {kind}" if item.single_ok else f"tuple of {kind}"
        kind += " or None" if item.optional else ""
        facts = [kind, f"default {item.default!r}"]
        if item.range_text():
            facts.append(item.range_text())
        elif item.unit:
            facts.append(item.unit)
        if item.choices is not None and not item.multiple:
            facts.append("one of " + ", ".join(item.choices))
        if item.none_means:
            facts.append(f"None: {item.none_means}")
        text = f"{item.help} {item.details}".strip()
        lines.append(f"    - ``{item.name}`` ({'; '.join(facts)}): {text}")
    return "\n".join(lines) + "\n"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _type_error(item: Setting, value: Any) -> Optional[str]:
    """The message for a value of the wrong type (optional numbers: also out of range), or None."""
    name = item.name
    if item.multiple or item.choices is not None:
        return None  # tuples: checked by hand in validate; choices: in the range pass
    if item.type is bool:
        return None if isinstance(value, bool) else f"{name} must be true or false, got {value!r}"
    if item.type is str:
        return None if isinstance(value, str) else f"{name} must be a string, got {value!r}"
    if item.optional:
        ok = value is None or ((_is_int(value) if item.type is int else _is_number(value)) and item.in_range(value))
        what = "an integer" if item.type is int else "a number"
        return None if ok else f"{name} must be None or {what} {item.range_text()}, got {value!r}"
    if item.type is int:
        return None if _is_int(value) else f"{name} must be an integer, got {value!r}"
    return None if _is_number(value) else f"{name} must be a finite number, got {value!r}"


def _range_error(item: Setting, value: Any) -> Optional[str]:
    """The message for a value of the right type outside its range or choices, or None."""
    name = item.name
    if item.choices is not None and not item.multiple:
        return None if value in item.choices else f"{name} must be one of {', '.join(item.choices)}, got {value!r}"
    if item.optional or item.multiple or item.type not in (int, float) or item.in_range(value):
        return None
    low = item.minimum
    if item.type is float and low is not None and value < low and item.range_text() != f">= {low}":
        # A number below its lower bound is told that bound alone, as before the ranges were described.
        return f"{name} must be >= {low}, got {value}"
    return f"{name} must be {item.range_text()}, got {value}"


def check_described(obj: Any, described: tuple[Setting, ...], check: Callable[[bool, str], None]) -> None:
    """Check every described field of ``obj``: first each value's type, then each range and choice.

    ``check(ok, message)`` raises on the first failure; messages begin with the field's name.
    """
    for item in described:
        message = _type_error(item, getattr(obj, item.name))
        check(message is None, message or "")
    for item in described:
        message = _range_error(item, getattr(obj, item.name))
        check(message is None, message or "")


__all__ = ["Setting", "setting", "describe", "check_described", "docstring_section"]
