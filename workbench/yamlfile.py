"""YAML files a user hands us (params, sweep files, SLO files), read with bounds before they are expanded.

A 700-byte alias bomb would otherwise take gigabytes: the file's size, its nesting depth and what its aliases
expand to are checked first, and every problem is one line naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import short

MAX_YAML_BYTES = 1 << 20
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 200_000  # after alias expansion: a params or sweep file is a few hundred


def _expanded_size(node: Any, sizes: dict[int, int]) -> int:
    """Nodes in the document once every alias is expanded; each shared node is counted once per use."""
    import yaml

    if id(node) not in sizes:
        children: list[Any] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def _check_yaml_shape(text: str) -> str | None:
    """A problem with the document's nesting or alias expansion, found without expanding it; None if fine."""
    import yaml

    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events: iterative, no recursion
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                return f"nested deeper than {MAX_YAML_DEPTH} levels"
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    root = yaml.compose(text, Loader=yaml.SafeLoader)  # aliases stay shared nodes here
    if root is not None and _expanded_size(root, {}) > MAX_YAML_NODES:
        return f"aliases expand to more than {MAX_YAML_NODES} values; write the values out or use fewer aliases"
    return None


def read_yaml_mapping(path: Path | str, error: Callable[[str], Exception] = ValueError) -> dict[str, Any]:
    """A YAML file that must hold a mapping; problems raise `error` with one line `path: problem`.

    Inputs are bounded before they are expanded: the file's size, its nesting depth and what its
    aliases expand to (a 700-byte alias bomb would otherwise take gigabytes)."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a directory, not a YAML file")
    if not path.is_file():
        raise error(f"{path}: no such file")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise error(f"{path}: larger than {MAX_YAML_BYTES // 1024} KiB; not a params file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    try:
        problem = _check_yaml_shape(text)
        if problem:
            raise error(f"{path}: {problem}")
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({short(str(exc).splitlines()[0], 120)})") from None
    if not isinstance(values, dict):
        raise error(f"{path}: expected a mapping of keys to values")
    return values
