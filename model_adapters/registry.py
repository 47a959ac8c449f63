"""Registry of configured model entries (VLMEvalKit's configured partials) and the model spec syntax.

A model spec (`--svlm`, `--lvlm`, `serve --model`) is one of

    NAME[?key=value&key=value...]            a registry entry, options overridden
    ADAPTER:CHECKPOINT[?key=value&...]       an adapter on a local path or hub id (openai: the model name)

for example `qwen2.5-vl-3b?dtype=float16&max_pixels=1003520`,
`qwen2_5_vl:/models/Qwen2.5-VL-7B-Instruct?device_map=auto`,
`openai:gpt-4o-mini?base_url=https://api.openai.com/v1&api_key_env=OPENAI_API_KEY`.
Without a pixel budget in the spec, a local Qwen checkpoint uses its own (preprocessor config).
Values are read as int, float, true/false, none, else kept as text. Adapters: qwen2_5_vl, openai, hf,
and third-party classes named by user entries.

Entries are the built-in ones below plus the user's (models.yaml files found through
`set_models_path` (--models-dir) and $EDGEVLM_MODELS_PATH; user.py).

Keys and hosts: secrets never go in a spec; an entry names the environment variable holding its
key (`api_key_env`), and that key goes only to the entry's own host. A spec (or override) that
moves `base_url` to another host without naming `api_key_env` itself sends no key there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import parse_qsl

from edgevlm_eval.core.errors import ConfigError, EdgeVLMError, UnknownNameError

from .base import Adapter, Capabilities, Price
from .entry import BUILTIN, ModelEntry, adapter_class
from .kinds import (
    DEMO_LVLM_PIXELS,
    DEMO_SVLM_PIXELS,
    QWEN_PIXELS,
    TINY_PIXELS,
    hf_capabilities,
    openai_capabilities,
    qwen_capabilities,
)
from .openai_compat import OpenAIAdapter, url_host
from .user import load_user_entries

DEMO_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
OPENAI_URL = "https://api.openai.com/v1"  # the `openai:` adapter's own host (its key: $OPENAI_API_KEY)
MODELS_PATH_ENV = "EDGEVLM_MODELS_PATH"


@dataclass(frozen=True)
class _AdapterKind:
    load: Callable[[ModelEntry], Adapter]
    capabilities: Callable[[dict], Capabilities]


def _load_qwen(e: ModelEntry) -> Adapter:
    from .qwen2_5_vl import QwenVLAdapter

    return QwenVLAdapter(e.checkpoint, name=e.name, **e.options)


def _load_openai(e: ModelEntry) -> Adapter:
    return OpenAIAdapter(e.checkpoint, name=e.name, price=e.price, **e.options)


def _load_hf(e: ModelEntry) -> Adapter:
    from .hf_generic import HFImageTextAdapter

    return HFImageTextAdapter(e.checkpoint, name=e.name, **e.options)


_ADAPTERS: dict[str, _AdapterKind] = {
    "qwen2_5_vl": _AdapterKind(_load_qwen, qwen_capabilities),
    "openai": _AdapterKind(_load_openai, openai_capabilities),
    "hf": _AdapterKind(_load_hf, hf_capabilities),
}

_BIG = {"dtype": "bfloat16", "device_map": "auto"}

# The paper's Table 3 (edgeVLM on an RTX 4090 with Qwen2.5-VL-3B as the SVLM).
_PAPER_EDGE = (0.5624, "paper Table 3: edgeVLM total 562.40 ms per frame on an RTX 4090 (SVLM only 581.71 ms)")
_TINY_EDGE = (0.05, "tests: nominal")

_ENTRIES: list[ModelEntry] = [
    ModelEntry("qwen2.5-vl-3b", "qwen2_5_vl", "Qwen/Qwen2.5-VL-3B-Instruct",
               "Qwen2.5-VL-3B-Instruct (the paper's SVLM), checkpoint pixel limits, Visual Focus",
               {**QWEN_PIXELS, **_BIG}, edge_latency_s=_PAPER_EDGE[0], edge_latency_basis=_PAPER_EDGE[1]),
    ModelEntry("qwen2.5-vl-7b", "qwen2_5_vl", "Qwen/Qwen2.5-VL-7B-Instruct",
               "Qwen2.5-VL-7B-Instruct, checkpoint pixel limits, Visual Focus", {**QWEN_PIXELS, **_BIG}),
    ModelEntry("qwen2.5-vl-72b", "qwen2_5_vl", "Qwen/Qwen2.5-VL-72B-Instruct",
               "Qwen2.5-VL-72B-Instruct (the paper's LVLM) on local GPUs, device_map=auto",
               {**QWEN_PIXELS, **_BIG, "max_new_tokens": 256}),
    # No price: DashScope bills in its own tiers and regions; state one in a user models.yaml.
    ModelEntry("qwen2.5-vl-72b-api", "openai", "qwen2.5-vl-72b-instruct",
               "Qwen2.5-VL-72B through DashScope's OpenAI-compatible mode (key in DASHSCOPE_API_KEY)",
               {"base_url": "https://dashscope.aliyuncs.com/compatible-mode/v1", "api_key_env": "DASHSCOPE_API_KEY",
                "require_key": True, "grounding_coords": "qwen_abs", **QWEN_PIXELS, "max_new_tokens": 256}),
    ModelEntry("vlm-r1", "qwen2_5_vl", "omlab/VLM-R1-Qwen2.5VL-3B-OVD-0321",
               "VLM-R1 (omlab's R1-style RL fine-tune of Qwen2.5-VL-3B, open-vocabulary detection); "
               "answers in <think>/<answer>, the last <answer> is parsed",
               {**QWEN_PIXELS, **_BIG, "prompt_style": "r1", "max_new_tokens": 256}),
    ModelEntry("vlm-r1-rec", "qwen2_5_vl", "omlab/Qwen2.5VL-3B-VLM-R1-REC-500steps",
               "VLM-R1 REC fine-tune of Qwen2.5-VL-3B (referring expressions); <think>/<answer> prompt",
               {**QWEN_PIXELS, **_BIG, "prompt_style": "r1", "max_new_tokens": 256}),
    ModelEntry("minicpm-o", "openai", "openbmb/MiniCPM-o-2_6",
               "MiniCPM-o 2.6 behind an OpenAI-compatible server (e.g. `vllm serve openbmb/MiniCPM-o-2_6 "
               "--trust-remote-code`); base URL from MINICPM_BASE_URL; no Visual Focus (resampler tokens)",
               {"base_url": "http://127.0.0.1:8000/v1", "base_url_env": "MINICPM_BASE_URL",
                "api_key_env": "MINICPM_API_KEY", "logprobs": True, "grounding_coords": "norm1000"}),
    # Price: OpenAI's published gpt-4o rate (gpt-4o-2024-08-06 and later), as known in 2025; not
    # fetched here: check https://openai.com/api/pricing before relying on a cost figure.
    ModelEntry("gpt-4o", "openai", "gpt-4o",
               "OpenAI GPT-4o (key in OPENAI_API_KEY); 0-1000 grounding coordinates; price: OpenAI's 2025 rate "
               "(assumed, check it)",
               {"base_url": OPENAI_URL, "api_key_env": "OPENAI_API_KEY", "require_key": True,
                "grounding_coords": "norm1000", "max_new_tokens": 256, "logprobs": True},
               price=Price(2.50, 10.00, "OpenAI API pricing for gpt-4o, as of 2025 (assumed, not fetched)")),
    # No key by default: an arbitrary endpoint gets one only when the spec names it (?api_key_env=NAME).
    ModelEntry("openai-compatible", "openai", "default",
               "any OpenAI-compatible server: set ?base_url=...&model=... (and ?api_key_env=NAME if it needs a key)",
               {"base_url": "http://127.0.0.1:8000/v1"}),
    # The demo world's two small trained checkpoints (scripts/train_demo_models.py), shipped with the
    # package. fp16 on disk, run in float32 on CPU; grounding replies need ~190 tokens. Edge latency:
    # to be measured on a reference machine (None until then).
    ModelEntry("demo-svlm", "qwen2_5_vl", str(DEMO_CHECKPOINTS / "demo-svlm"),
               "demo world's weak edge model (small Qwen2.5-VL trained on the demo task; a quarter of the pixels)",
               {"dtype": "float32", **DEMO_SVLM_PIXELS, "max_new_tokens": 32, "batch_size": 8}),
    ModelEntry("demo-lvlm", "qwen2_5_vl", str(DEMO_CHECKPOINTS / "demo-lvlm"),
               "demo world's strong cloud model (small Qwen2.5-VL trained on the demo task; answers and grounds)",
               {"dtype": "float32", **DEMO_LVLM_PIXELS, "max_new_tokens": 192, "batch_size": 8}),
    ModelEntry("tiny-qwen2.5-vl", "qwen2_5_vl", "tiny",
               "tiny random Qwen2.5-VL built in-process (tests, demos): real code paths, gibberish answers",
               {**TINY_PIXELS, "max_new_tokens": 16}, edge_latency_s=_TINY_EDGE[0], edge_latency_basis=_TINY_EDGE[1]),
    ModelEntry("tiny-vlm-r1", "qwen2_5_vl", "tiny",
               "the tiny Qwen2.5-VL with VLM-R1's <think>/<answer> prompt",
               {**TINY_PIXELS, "max_new_tokens": 16, "prompt_style": "r1"},
               edge_latency_s=_TINY_EDGE[0], edge_latency_basis=_TINY_EDGE[1]),
    ModelEntry("tiny-hf", "hf", "tiny",
               "the tiny Qwen2.5-VL through the generic image-text-to-text adapter (processor + chat template)",
               {"max_new_tokens": 16, "processor_kwargs": {"images_kwargs": {"size": {
                   "shortest_edge": TINY_PIXELS["min_pixels"], "longest_edge": TINY_PIXELS["max_pixels"]}}}},
               edge_latency_s=_TINY_EDGE[0], edge_latency_basis=_TINY_EDGE[1]),
]
BUILTIN_NAMES = frozenset(e.name for e in _ENTRIES)

# Folders (or files) of user models.yaml, set by --models-dir; $EDGEVLM_MODELS_PATH is read on each call.
_models_path: list[str] = []


def set_models_path(paths: Sequence[str | os.PathLike] | None) -> None:
    """Where user models files are looked for, besides $EDGEVLM_MODELS_PATH (the CLI's --models-dir)."""
    _models_path[:] = [str(p) for p in (paths or [])]


def models_path() -> list[tuple[str, str]]:
    """(folder or file, where it was named) of every user models location, --models-dir first."""
    env = [p for p in os.environ.get(MODELS_PATH_ENV, "").split(os.pathsep) if p.strip()]
    return [(p, "--models-dir") for p in _models_path] + [(p, f"${MODELS_PATH_ENV}") for p in env]


def _all_entries() -> list[ModelEntry]:
    """Built-in entries, user entries with `override: true` in their place, then the other user entries."""
    user = load_user_entries(models_path(), builtin=BUILTIN_NAMES)
    by_name = {e.name: e for e in user}
    out = [by_name.pop(e.name, e) for e in _ENTRIES]
    return out + list(by_name.values())


def list_models() -> list[ModelEntry]:
    """Every entry: built-in and the user's (see set_models_path)."""
    return _all_entries()


def entry_summary(entry: ModelEntry) -> dict:
    """One row of `edgevlm-eval models` (JSON-able, capabilities included, no weights loaded). A
    third-party adapter that cannot be imported gives a row with its `error`."""
    try:
        return entry.to_json()
    except EdgeVLMError as e:
        return {"name": entry.name, "adapter": entry.adapter, "checkpoint": entry.checkpoint,
                "description": entry.description, "source": entry.source, "error": str(e)}


def missing_key(entry: ModelEntry) -> str | None:
    """The name of the environment variable an entry needs and that is not set (None: nothing
    missing), so that a run stops before any conversion or request."""
    env = entry.options.get("api_key_env")
    if entry.options.get("require_key") and env and not os.environ.get(env):
        return str(env)
    return None


def usage_cost(price: Price | ModelEntry | None, prompt_tokens: int | None, completion_tokens: int | None
               ) -> float | None:
    """USD for summed token usage at an entry's price; None when the entry states no price."""
    if isinstance(price, ModelEntry):
        price = price.price
    if price is None:
        return None
    return price.cost(int(prompt_tokens or 0), int(completion_tokens or 0))


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_options(query: str, spec: str) -> dict[str, Any]:
    opts = {}
    for key, val in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if not key:
            raise ConfigError(f"bad option '{val}' in model spec '{spec}' (expected key=value)", key="model")
        opts[key] = _value(val)
    return opts


def _host(url: Any) -> str:
    return url_host(str(url)) if url else ""


def with_options(entry: ModelEntry, opts: dict[str, Any]) -> ModelEntry:
    """The entry with `opts` (a spec's or an override's) merged, keys and hosts kept apart: an
    entry's key (`api_key_env`) goes to its own host only, so moving `base_url` to another host
    without naming `api_key_env` in the same options drops the key (and its requirement)."""
    if not opts:
        return entry
    merged = {**entry.options, **opts}
    own_key = entry.options.get("api_key_env")
    if "base_url" in opts:
        merged.pop("base_url_env", None)  # an explicit base_url beats the entry's env-var default
        if own_key and "api_key_env" not in opts and _host(opts["base_url"]) != _host(entry.options.get("base_url")):
            merged["api_key_env"] = None
            if "require_key" in merged:
                merged["require_key"] = False
            if entry.adapter == "openai":
                merged["key_withheld"] = own_key  # the adapter says so when the new host wants a key
    entry = replace(entry, options=merged)
    # openai-compatible: `model=` names the served model.
    if entry.adapter == "openai" and "model" in entry.options:
        o = dict(entry.options)
        entry = replace(entry, checkpoint=str(o.pop("model")), options=o)
    return entry


def resolve(spec: str) -> ModelEntry:
    """A spec (see the module docstring) -> the entry with its options merged."""
    spec = spec.strip()
    base, _, query = spec.partition("?")
    opts = parse_options(query, spec) if query else {}
    by_name = {e.name: e for e in _all_entries()}
    if base in by_name:
        return with_options(by_name[base], opts)
    adapter, sep, ckpt = base.partition(":")
    if not sep or adapter not in _ADAPTERS:
        raise UnknownNameError("model", base, [*by_name, *(f"{a}:<path-or-id>" for a in _ADAPTERS)])
    if not ckpt:
        raise ConfigError(f"model spec '{spec}' names adapter '{adapter}' but no checkpoint "
                          f"(expected {adapter}:<path-or-hub-id>)", key="model")
    # No default options: a local checkpoint brings its own pixel budget (preprocessor config). The
    # openai adapter's own host is OpenAI's, with its key; another base_url gets no key unless named.
    own = {"base_url": OPENAI_URL, "api_key_env": "OPENAI_API_KEY"} if adapter == "openai" else {}
    return with_options(ModelEntry(base, adapter, ckpt, f"{adapter} adapter on {ckpt}", own), opts)


def load_adapter(spec: str | ModelEntry, **overrides: Any) -> Adapter:
    """Resolve and instantiate. Unknown option keys raise a ConfigError naming them. The adapter
    gets the entry it came from as `adapter.model_entry` (price, edge latency)."""
    entry = spec if isinstance(spec, ModelEntry) else resolve(spec)
    entry = with_options(entry, overrides)
    where = "" if entry.source == BUILTIN else f" ({entry.source})"
    try:
        if entry.adapter in _ADAPTERS:
            adapter = _ADAPTERS[entry.adapter].load(entry)
        else:
            cls = adapter_class(entry.adapter, source=entry.source, entry=entry.name)
            adapter = cls(entry.checkpoint, name=entry.name, **entry.options)
    except TypeError as e:
        if "unexpected keyword argument" in str(e) or "positional argument" in str(e):
            raise ConfigError(f"model '{entry.name}'{where}: {e}", key="options") from None
        raise
    try:
        adapter.model_entry = entry
    except AttributeError:  # a third-party class with __slots__
        pass
    return adapter
