"""Reading a YAML configuration file: task YAMLs, `--engine-config`, models.yaml. One home, so that
every such file refuses the same mistakes with the same message naming the file, the line and the
column: an unreadable or non-UTF-8 file, malformed YAML, a key given twice in one mapping (PyYAML
keeps the last silently), anything but a mapping at the top level.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.core.io import read_text


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.setdefault(key, key_node)
        except TypeError:
            continue  # an unhashable key: construct_mapping below reports it
        if first is not key_node:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (first at line {first.start_mark.line + 1}); "
                "a later value would silently win", key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_yaml_mapping(path: str | os.PathLike, *, what: str = "YAML file", key: str | None = None) -> dict:
    """The top-level mapping of a YAML file ({} for an empty file); any problem is a ConfigError
    naming the file (and `key`, the option that named it)."""
    path = Path(path)
    text = read_text(path, what=what, error=ConfigError)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"malformed YAML{where}: {getattr(e, 'problem', None) or e}", path=str(path),
                          key=key) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level, got {type(data).__name__}", path=str(path),
                          key=key)
    return data
