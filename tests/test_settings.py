"""Each setting is described once (`clipstyle_opt.config.settings`); flags, checks and keys follow it."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import click
import pytest

from clipstyle_opt import config as config_module
from clipstyle_opt.cli import cli
from clipstyle_opt.config import ENCODER_KEYS, StyleConfig, settings
from clipstyle_opt.errors import ConfigError
from clipstyle_opt.sweeps.identity import SPEED_ONLY
from clipstyle_opt.sweeps.spec import CONFIG_FIELDS, load_spec

SETTINGS = settings()
BY_NAME = {item.name: item for item in SETTINGS}
PACKAGE = Path(__file__).resolve().parents[1] / "clipstyle_opt"


def setting_params(command: click.Command) -> dict[str, list[click.Parameter]]:
    params: dict[str, list[click.Parameter]] = {}
    for param in command.params:
        if param.name in BY_NAME:
            params.setdefault(param.name, []).append(param)
    return params


def test_every_field_is_described_with_its_default_and_one_line_of_help():
    assert [item.name for item in SETTINGS] == [f.name for f in dataclasses.fields(StyleConfig)]
    defaults = StyleConfig()
    for item in SETTINGS:
        assert item.default == getattr(defaults, item.name), item.name
        assert item.help and "\n" not in item.help and item.group, item.name
        assert item.type in (int, float, bool, str), item.name
        if item.optional:  # None is allowed: the description says what it means
            assert item.none_means, item.name
        if item.minimum is not None and item.maximum is not None:
            assert item.minimum < item.maximum, item.name


@pytest.mark.parametrize("command", ["stylize", "sweep"])
def test_each_setting_has_exactly_one_flag_with_the_described_help_type_and_choices(command):
    params = setting_params(cli.commands[command])
    assert sorted(params) == sorted(BY_NAME)
    for name, found in params.items():
        item = BY_NAME[name]
        assert len(found) == 1, name
        (option,) = found
        assert option.help == item.help, name
        assert option.opts[0] == "--" + name.replace("_", "-"), name
        if item.choices is not None and not item.multiple:
            assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == item.choices, name
        else:
            assert not isinstance(option.type, click.Choice), name
        if item.type is bool:
            assert option.is_flag and option.secondary_opts == ["--no-" + name.replace("_", "-")], name
        elif not item.multiple and item.choices is None:
            assert option.type.name == {int: "integer", float: "float", str: "text"}[item.type], name


def test_the_help_page_shows_what_none_means():
    command = cli.commands["stylize"]
    text = command.get_help(click.Context(command, terminal_width=1000, max_content_width=1000))
    for item in SETTINGS:
        if item.optional:
            assert f"[default: ({item.none_means})]" in text, item.name


def outside(item, side: str) -> float:
    """The nearest value outside the described range on one side."""
    bound = item.minimum if side == "low" else item.maximum
    exclusive = item.exclusive_minimum if side == "low" else item.exclusive_maximum
    if exclusive:
        return bound
    step = 1 if item.type is int else 1e-6
    return bound - step if side == "low" else bound + step


def inside(item, side: str) -> float:
    bound = item.minimum if side == "low" else item.maximum
    exclusive = item.exclusive_minimum if side == "low" else item.exclusive_maximum
    if not exclusive:
        return bound
    step = 1 if item.type is int else 1e-6
    return bound + step if side == "low" else bound - step


BOUNDS = [(item.name, side) for item in SETTINGS for side, bound in (("low", item.minimum), ("high", item.maximum))
          if bound is not None]


@pytest.mark.parametrize("name, side", BOUNDS)
def test_validate_enforces_each_described_bound(name, side):
    item = BY_NAME[name]
    StyleConfig(**{name: inside(item, side)})
    with pytest.raises(ConfigError) as caught:
        StyleConfig(**{name: outside(item, side)})
    assert caught.value.key == name and str(caught.value).startswith(f"{name} must be ")


def test_range_messages_are_written_from_the_description():
    assert str(pytest.raises(ConfigError, StyleConfig, size=10).value) == "size must be in 64..4096 px, got 10"
    assert str(pytest.raises(ConfigError, StyleConfig, early_stop_delta=1.0).value) == \
        "early_stop_delta must be in [0, 1), got 1.0"
    assert str(pytest.raises(ConfigError, StyleConfig, early_stop=-1).value) == \
        "early_stop must be >= 0 steps (0: off), got -1"
    assert str(pytest.raises(ConfigError, StyleConfig, lr=0).value) == "lr must be > 0, got 0"
    assert str(pytest.raises(ConfigError, StyleConfig, lr=-1).value) == "lr must be >= 0, got -1"
    assert str(pytest.raises(ConfigError, StyleConfig, coarse_lr=0).value) == "coarse_lr must be None or a number > 0, got 0"
    assert str(pytest.raises(ConfigError, StyleConfig, fusion="mean").value) == \
        "fusion must be one of loss, embedding, got 'mean'"


def test_a_changed_description_changes_what_validate_accepts(monkeypatch):
    StyleConfig(size=2048, distortion=0.9)
    narrower = tuple(dataclasses.replace(item, maximum=1024) if item.name == "size" else
                     dataclasses.replace(item, maximum=0.8) if item.name == "distortion" else item
                     for item in SETTINGS)
    monkeypatch.setattr(config_module, "_SETTINGS", narrower)
    with pytest.raises(ConfigError, match=r"^size must be in 64\.\.1024 px, got 2048$"):
        StyleConfig(size=2048)
    with pytest.raises(ConfigError, match=r"^distortion must be in \[0, 0\.8\], got 0\.9$"):
        StyleConfig(distortion=0.9)
    with_choice = tuple(dataclasses.replace(item, choices=("cpu",)) if item.name == "device" else item
                        for item in SETTINGS)
    monkeypatch.setattr(config_module, "_SETTINGS", with_choice)
    with pytest.raises(ConfigError, match="device must be one of cpu, got 'auto'"):
        StyleConfig()


@pytest.mark.parametrize("item", [item for item in SETTINGS if item.choices is not None and not item.multiple],
                         ids=lambda item: item.name)
def test_validate_accepts_exactly_the_described_choices(item):
    for choice in item.choices:
        StyleConfig(**{item.name: choice})
    with pytest.raises(ConfigError, match=f"^{item.name} must be one of "):
        StyleConfig(**{item.name: "not-a-choice"})


def test_keys_derived_from_the_descriptions():
    assert ENCODER_KEYS == tuple(item.name for item in SETTINGS if item.affects_encoders)
    assert set(ENCODER_KEYS) == {"clip_model", "clip_weights", "vgg", "device", "precision", "content_layers",
                                 "style_layers", "compile"}
    assert set(SPEED_ONLY) == {"device", "compile", "clip_batch", "cuda_graph", "threads"}
    assert CONFIG_FIELDS == tuple(BY_NAME)


def test_a_sweep_spec_knows_every_setting_and_checks_it(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"")
    numeric = [item for item in SETTINGS if item.type in (int, float) and not item.optional and not item.multiple]
    for item in numeric:
        good = item.default
        spec = load_spec({"contents": ["photo.png"], "prompts": ["fire"], "base": {item.name: good}},
                         base_dir=tmp_path)
        assert getattr(spec.runs[0].config, item.name) == good
    with pytest.raises(ConfigError, match=r"grid\.size\[1\]: size must be in 64\.\.4096 px, got 5000"):
        load_spec({"contents": ["photo.png"], "prompts": ["fire"], "grid": {"size": [256, 5000]}}, base_dir=tmp_path)


def imports_of(path: Path) -> set[str]:
    """Modules a file imports, relative ones resolved against the package (``..engine`` -> clipstyle_opt.engine)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(filter(None, [base, node.module or ""]))
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in out if name.startswith("clipstyle_opt")}


def test_config_and_settings_import_only_the_layers_below():
    allowed = {"clipstyle_opt.errors", "clipstyle_opt.settings", "clipstyle_opt.encoders.registry"}
    for module in ("config.py", "settings.py"):
        found = {name for name in imports_of(PACKAGE / module) if not any(name.startswith(a) for a in allowed)}
        assert found == set(), module


def test_command_modules_import_common_never_the_group():
    for path in (PACKAGE / "cli").glob("*.py"):
        if path.name in ("main.py", "__init__.py", "__main__.py"):
            continue
        found = imports_of(path)
        assert not any(name == "clipstyle_opt.cli" or name.startswith(("clipstyle_opt.cli.main", "clipstyle_opt.cli.cli"))
                       for name in found), path.name
    assert set(cli.commands) == {"stylize", "apply", "models", "eval", "report", "sweep", "correlate", "study", "serve"}


def test_the_settings_docstring_example_runs_and_the_class_docstring_lists_every_setting():
    import doctest

    for test in doctest.DocTestFinder().find(settings, "settings", globs={"settings": settings}):
        assert test.examples and doctest.DocTestRunner().run(test).failed == 0
    for item in SETTINGS:
        assert f"``{item.name}``" in StyleConfig.__doc__ and item.help in StyleConfig.__doc__
