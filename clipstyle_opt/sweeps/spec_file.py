"""Reading a sweep spec file (YAML or JSON) and pointing at a field in it: ``spec.yaml:7:20: grid.threshold[1]``."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from ..imageio import read_user_text

#: A path into the spec, as a tuple of keys and list indices: ``("grid", "lambda_patch", 2)``.
Path_ = tuple


class Where:
    """Turns a path into the spec (``("grid", "threshold", 1)``) into ``file:line:col: grid.threshold[1]``."""

    def __init__(self, source: str, positions: Mapping[Path_, tuple[int, int]] | None = None,
                 names: Mapping[Path_, str] | None = None) -> None:
        self.source, self.positions, self.names = source, positions or {}, names or {}

    def __call__(self, path: Path_) -> str:
        for cut in range(len(path), 0, -1):
            if path[:cut] in self.names:  # a command-line flag: name it, with the index of the value
                rest = "".join(f"[{p}]" for p in path[cut:] if isinstance(p, int))
                return f"{self.source}: {self.names[path[:cut]]}{rest}"
        dotted = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path))
        probe = tuple(path)
        while probe and probe not in self.positions:
            probe = probe[:-1]
        if probe in self.positions:
            line, col = self.positions[probe]
            return f"{self.source}:{line}:{col}: {dotted}" if dotted else f"{self.source}:{line}:{col}"
        return f"{self.source}: {dotted}" if dotted else self.source

    def error(self, path: Path_, message: str, key: str | None = None) -> ConfigError:
        """A `ConfigError` whose message starts with the file position of ``path`` (``spec.yaml:4:18: ...``)."""
        return ConfigError(f"{self(path)}: {message}", key)


def _load_with_positions(text: str, source: str) -> tuple[Any, dict[Path_, tuple[int, int]]]:
    """YAML (a superset of the JSON we accept) into Python values, plus the 1-based line/column of every node."""
    import yaml

    loader = yaml.SafeLoader(text)
    positions: dict[Path_, tuple[int, int]] = {}
    try:
        node = loader.get_single_node()
        if node is None:
            return None, positions

        def walk(item: Any, path: Path_) -> None:
            positions[path] = (item.start_mark.line + 1, item.start_mark.column + 1)
            if isinstance(item, yaml.MappingNode):
                for key_node, value_node in item.value:
                    key = loader.construct_object(key_node, deep=True)
                    positions[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                    walk_value(value_node, path + (key,))
            elif isinstance(item, yaml.SequenceNode):
                for index, child in enumerate(item.value):
                    walk(child, path + (index,))

        def walk_value(item: Any, path: Path_) -> None:
            key_position = positions[path]
            walk(item, path)
            if not isinstance(item, (yaml.MappingNode, yaml.SequenceNode)):
                positions[path] = (item.start_mark.line + 1, item.start_mark.column + 1)
            else:
                positions[path] = key_position  # a collection's errors point at its key

        walk(node, ())
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    finally:
        loader.dispose()
    return data, positions


def read_spec_file(path: str | os.PathLike) -> tuple[dict[str, Any], Where]:
    """The mapping a ``.yaml``/``.yml``/``.json`` spec file holds, and where each field sits in it."""
    path = Path(path)
    text = read_user_text(path, "sweep spec", ConfigError)
    if path.suffix.lower() == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    elif path.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(f"a sweep spec must be a .yaml, .yml or .json file: {path}")
    data, positions = _load_with_positions(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a sweep spec must be a mapping with keys such as contents, prompts, grid")
    return data, Where(str(path), positions)


__all__ = ["Where", "read_spec_file", "Path_"]
