"""User model entries: models.yaml files, and third-party adapter classes they name.

Where: every folder (or file) on the models path (registry.models_path(): `--models-dir`, then
$EDGEVLM_MODELS_PATH, os.pathsep-separated). In a folder, `models.yaml` and every other `*.yaml` /
`*.yml` file directly in it is a models file; each holds a top-level `models:` list:

    models:
      - name: my-qwen-7b-vllm                  # how specs name it (no '?' or ':')
        adapter: openai                        # qwen2_5_vl | openai | hf | package.module:Class | file.py:Class
        checkpoint: Qwen/Qwen2.5-VL-7B-Instruct
        description: Qwen2.5-VL-7B behind our vLLM box
        options: {base_url: "http://gpu-box:8000/v1", api_key_env: GPU_BOX_KEY, grounding_coords: qwen_abs}
        price: {input: 0.2, output: 0.6, source: "our invoice, 2025-06"}   # USD per 1M tokens
        edge_latency_s: 0.31                   # declared per-answer latency on an edge device (SVLMs)
        edge_latency_basis: "Jetson Orin, our measurement 2025-05"
        override: false                        # true: replace the built-in entry of the same name

A third-party adapter is `package.module:Class` (importable from sys.path) or `path/to/file.py:Class`
(relative to the models file's folder); the class subclasses model_adapters.base.Adapter, is built
as `Class(checkpoint, name=NAME, **options)` and declares its capabilities (`capabilities`, or the
classmethod `capabilities_for(options)`). Errors name the file, the entry and the key.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.core.yamlfile import read_yaml_mapping

from .base import Price
from .entry import ModelEntry
from .kinds import BUILTIN_CAPABILITIES

KEYS = ("name", "adapter", "checkpoint", "description", "options", "price", "edge_latency_s", "edge_latency_basis",
        "override")
PRICE_KEYS = ("input", "output", "source")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

_cache: dict[tuple, list] = {}  # parsed files by (path, mtime, size)


def model_files(path: Sequence[tuple[str, str]]) -> list[Path]:
    """The models files of (folder or file, where it was named) items, in order, each once."""
    out: list[Path] = []
    for item, named_by in path:
        p = Path(item).expanduser()
        if p.is_file():
            files = [p]
        elif p.is_dir():
            first = [p / "models.yaml"] if (p / "models.yaml").is_file() else []
            files = first + sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file()
                                   and f.name != "models.yaml")
        else:
            raise ConfigError(f"models folder not found: {p} (named by {named_by}; expected a folder holding "
                              "models.yaml or *.yaml model files, or one such file)")
        for f in files:
            f = f.resolve()
            if f not in out:
                out.append(f)
    return out


def load_user_entries(path: Sequence[tuple[str, str]], *, builtin: Iterable[str] = ()) -> list:
    """Every user entry on the models path, validated; a name defined twice, or a built-in name
    without `override: true`, is an error naming both places."""
    builtin = set(builtin)
    seen: dict[str, str] = {}
    out = []
    for f in model_files(path):
        st = f.stat()
        key = (str(f), st.st_mtime_ns, st.st_size)
        if key not in _cache:
            _cache[key] = parse_models_file(f)
        for entry, override in _cache[key]:
            where = f"{f}: entry '{entry.name}'"
            if entry.name in seen:
                raise ConfigError(f"model '{entry.name}' is defined twice: here and in {seen[entry.name]}",
                                  path=str(f), key="name")
            if entry.name in builtin and not override:
                raise ConfigError(f"entry '{entry.name}' has the name of a built-in model; rename it, or add "
                                  "`override: true` to replace the built-in entry", path=str(f), key="name")
            if override and entry.name not in builtin:
                raise ConfigError(f"entry '{entry.name}' says `override: true` but there is no built-in model "
                                  "of that name (see `edgevlm-eval models`)", path=str(f), key="override")
            seen[entry.name] = where
            out.append(entry)
    return out


def parse_models_file(path: Path) -> list[tuple[Any, bool]]:
    """[(ModelEntry, override)] of one models file."""
    doc = read_yaml_mapping(path, what="models file")
    if not doc:
        return []
    if "models" not in doc:
        found = ", ".join(map(str, doc))
        raise ConfigError(f"expected a models file: a top-level `models:` list (found: {found}); keep other "
                          "YAML files out of models folders", path=str(path))
    extra = sorted(set(doc) - {"models"})
    if extra:
        raise ConfigError(f"unknown top-level keys {extra} (expected only `models:`)", path=str(path))
    items = doc["models"] or []
    if not isinstance(items, list):
        raise ConfigError("`models` must be a list of entries", path=str(path), key="models")
    out = []
    for i, item in enumerate(items):
        label = f"models[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{label} must be a mapping with name, adapter, checkpoint, ...", path=str(path),
                              key=label)
        name = item.get("name")
        if isinstance(name, str):
            label = f"models[{i}] '{name}'"

        def bad(key: str, expected: str, value: Any = None) -> ConfigError:
            got = f", got {value!r}" if value is not None else ""
            return ConfigError(f"{label}: `{key}` must be {expected}{got}", path=str(path), key=key)

        unknown = sorted(set(item) - set(KEYS))
        if unknown:
            raise ConfigError(f"{label}: unknown keys {unknown} (expected some of {', '.join(KEYS)})",
                              path=str(path), key=unknown[0])
        if not isinstance(name, str) or not _NAME.match(name):
            raise bad("name", "a name of letters, digits and . _ + - (no '?' or ':')", name)
        adapter = item.get("adapter")
        if not isinstance(adapter, str) or not adapter:
            raise bad("adapter", f"one of {', '.join(BUILTIN_CAPABILITIES)}, package.module:Class or "
                                 "path/to/file.py:Class", adapter)
        adapter = _adapter_ref(adapter, path, bad)
        third_party = adapter not in BUILTIN_CAPABILITIES
        checkpoint = item.get("checkpoint", "" if third_party else None)
        if not isinstance(checkpoint, str) or (not third_party and not checkpoint):
            raise bad("checkpoint", "a local path, a hub id or (openai) the served model name", checkpoint)
        if not third_party and checkpoint.startswith(("./", "../")):
            checkpoint = str((path.parent / checkpoint).resolve())  # relative to the models file
        description = item.get("description", "")
        if not isinstance(description, str):
            raise bad("description", "text", description)
        options = item.get("options") or {}
        if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
            raise bad("options", "a mapping of option names to values", options)
        if "api_key" in options or any(k.lower() in ("key", "token", "password", "secret") for k in options):
            raise ConfigError(f"{label}: secrets never go in a models file: name the environment variable "
                              "holding the key with `api_key_env`", path=str(path), key="options")
        price = _price(item.get("price"), bad)
        latency = item.get("edge_latency_s")
        if latency is not None and (isinstance(latency, bool) or not isinstance(latency, (int, float))
                                    or not math.isfinite(latency) or latency <= 0):
            raise bad("edge_latency_s", "a positive number of seconds (or null: no declared figure)", latency)
        basis = item.get("edge_latency_basis", "")
        if not isinstance(basis, str):
            raise bad("edge_latency_basis", "text", basis)
        if latency is not None and not basis.strip():
            raise bad("edge_latency_basis", "set when edge_latency_s is: where the figure comes from (device, "
                                            "source)")
        override = item.get("override", False)
        if not isinstance(override, bool):
            raise bad("override", "true or false", override)
        out.append((ModelEntry(name, adapter, checkpoint, description, dict(options), price=price,
                               edge_latency_s=float(latency) if latency is not None else None,
                               edge_latency_basis=basis, source=str(path)), override))
    return out


def _price(value: Any, bad) -> Price | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - set(PRICE_KEYS) or not {"input", "output"} <= set(value):
        raise bad("price", "a mapping {input: USD per 1M input tokens, output: USD per 1M output tokens, "
                           "source: where and when the figure was read}", value)
    nums = []
    for k in ("input", "output"):
        v = value[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise bad(f"price.{k}", "a number of USD per 1M tokens, 0 or more", v)
        nums.append(float(v))
    return Price(nums[0], nums[1], str(value.get("source", "")))


def _adapter_ref(ref: str, path: Path, bad) -> str:
    """A built-in kind as is; `module:Class` checked; `file.py:Class` made absolute (from the
    models file's folder)."""
    if ref in BUILTIN_CAPABILITIES:
        return ref
    target, sep, cls = ref.rpartition(":")
    expected = f"one of {', '.join(BUILTIN_CAPABILITIES)}, package.module:Class or path/to/file.py:Class"
    if not sep or not target or not _IDENT.match(cls):
        raise bad("adapter", expected, ref)
    if target.endswith(".py"):
        file = Path(target).expanduser()
        file = file if file.is_absolute() else (path.parent / file)
        return f"{file.resolve()}:{cls}"
    if not _MODULE.match(target):
        raise bad("adapter", expected, ref)
    return ref


