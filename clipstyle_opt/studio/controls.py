"""Page controls built from the settings' single descriptions (`clipstyle_opt.config.settings`).

Each control takes its label, help, range, choices and default from the `Setting`, so the page never restates
a default; a preset's values come from `clipstyle_opt.config.preset_config`. `collect` turns the controls'
values back into `StyleConfig` overrides, the way the command line's flags do.
"""
from __future__ import annotations

from typing import Any, Sequence

import gradio as gr

from ..config import ENCODER_KEYS, Setting, StyleConfig, preset_config, settings

MAIN_KEYS = ("steps", "size", "seed", "fusion")
"""Settings shown in the main form rather than under "Advanced"."""
FIXED_KEYS = tuple(ENCODER_KEYS)
"""Settings fixed per server (they need other encoders): chosen at ``clipstyle serve``, not in the page."""


def advanced_settings() -> list[Setting]:
    """The settings the "Advanced" accordion shows: every one but the main form's and the per-server ones."""
    return [item for item in settings() if item.name not in MAIN_KEYS and item.name not in FIXED_KEYS]


def described(name: str) -> Setting:
    """The `Setting` called ``name``."""
    return next(item for item in settings() if item.name == name)


def _shown(item: Setting, value: Any) -> Any:
    if item.multiple and isinstance(value, (tuple, list)):
        return ",".join(str(part) for part in value)
    return value


def control(item: Setting, value: Any = None) -> gr.components.Component:
    """The Gradio control of one setting, holding ``value`` (None: the setting's default)."""
    value = item.default if value is None else value
    info = item.help + (f" Empty: {item.none_means}." if item.optional and item.none_means else "")
    label = item.name + (f" ({item.unit})" if item.unit else "")
    common = dict(label=label, info=info, elem_id=f"setting-{item.name}")
    if item.type is bool:
        return gr.Checkbox(value=value, **common)
    if item.choices is not None and not item.multiple:
        return gr.Dropdown(choices=list(item.choices), value=value, **common)
    if item.multiple or item.type is str:
        return gr.Textbox(value=_shown(item, value), **common)
    bounded = item.minimum is not None and item.maximum is not None and item.type is int
    if bounded and item.maximum - item.minimum <= 4096:
        return gr.Slider(minimum=item.minimum, maximum=item.maximum, step=1, value=value, **common)
    return gr.Number(value=value, **common, precision=0 if item.type is int else None,
                     minimum=item.minimum if not item.exclusive_minimum else None,
                     maximum=item.maximum if not item.exclusive_maximum else None)


def preset_values(preset: str, names: Sequence[str]) -> list[Any]:
    """The values of the settings ``names`` under ``preset``, as the controls show them."""
    config = preset_config(preset)
    by_name = {item.name: item for item in settings()}
    return [_shown(by_name[name], getattr(config, name)) for name in names]


def collect(names: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    """`StyleConfig` overrides from the controls of ``names`` and their ``values``: blank optional numbers
    become None, comma lists tuples, whole numbers ints. Validation is `StyleConfig`'s own."""
    by_name = {item.name: item for item in settings()}
    out: dict[str, Any] = {}
    for name, value in zip(names, values):
        item = by_name[name]
        if value is None or (isinstance(value, str) and value.strip() == "" and item.type is not str):
            if item.optional:
                out[name] = None
            continue
        if item.multiple and isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        elif item.type is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        out[name] = value
    return out


def config_values(config: StyleConfig, names: Sequence[str]) -> list[Any]:
    """The controls' values for the settings ``names`` of ``config`` (a gallery item's, say)."""
    by_name = {item.name: item for item in settings()}
    return [_shown(by_name[name], getattr(config, name)) for name in names]


__all__ = ["FIXED_KEYS", "MAIN_KEYS", "advanced_settings", "collect", "config_values", "control", "described",
           "preset_values"]
