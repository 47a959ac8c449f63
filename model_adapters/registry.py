"""Registry of configured model entries (VLMEvalKit's configured partials) and the model spec syntax.

A model spec (`--svlm`, `--lvlm`, `serve --model`) is one of

    NAME[?key=value&key=value...]            a registry entry, options overridden
    ADAPTER:CHECKPOINT[?key=value&...]       an adapter on a local path or hub id (openai: the model name)

for example `qwen2.5-vl-3b?dtype=float16&max_pixels=1003520`,
`qwen2_5_vl:/models/Qwen2.5-VL-7B-Instruct?device_map=auto`,
`openai:gpt-4o-mini?base_url=https://api.openai.com/v1&api_key_env=OPENAI_API_KEY`.
Without a pixel budget in the spec, a local Qwen checkpoint uses its own (preprocessor config).
Values are read as int, float, true/false, none, else kept as text. Adapters: qwen2_5_vl, openai, hf.
Secrets never go in a spec: an entry names the environment variable holding its key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl

from edgevlm_eval.core.errors import ConfigError, UnknownNameError

from .base import Adapter, Capabilities

DEMO_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
QWEN_PIXELS = {"min_pixels": 3136, "max_pixels": 12845056}  # the public checkpoints' preprocessor limits
TINY_PIXELS = {"min_pixels": 3136, "max_pixels": 28 * 28 * 64}  # <= 64 tokens per image: fast on CPU


@dataclass(frozen=True)
class ModelEntry:
    name: str
    adapter: str  # "qwen2_5_vl" | "openai" | "hf"
    checkpoint: str  # local path, hub id, "tiny", or (openai) the served model name
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def capabilities(self) -> Capabilities:
        """What the adapter can do, without loading weights."""
        return _ADAPTERS[self.adapter].capabilities(self.options)

    def to_json(self) -> dict:
        return {"name": self.name, "adapter": self.adapter, "checkpoint": self.checkpoint,
                "description": self.description, "options": dict(self.options),
                "capabilities": self.capabilities.to_json()}


@dataclass(frozen=True)
class _AdapterKind:
    load: Callable[[ModelEntry], Adapter]
    capabilities: Callable[[dict], Capabilities]


def _load_qwen(e: ModelEntry) -> Adapter:
    from .qwen2_5_vl import QwenVLAdapter

    return QwenVLAdapter(e.checkpoint, name=e.name, **e.options)


def _load_openai(e: ModelEntry) -> Adapter:
    from .openai_compat import OpenAIAdapter

    return OpenAIAdapter(e.checkpoint, name=e.name, **e.options)


def _load_hf(e: ModelEntry) -> Adapter:
    from .hf_generic import HFImageTextAdapter

    return HFImageTextAdapter(e.checkpoint, name=e.name, **e.options)


def _qwen_caps(opts: dict) -> Capabilities:
    return Capabilities(token_focus=True, grounding=True, logprobs=True, max_images=None, batched=True)


def _openai_caps(opts: dict) -> Capabilities:
    return Capabilities(token_focus=False, grounding=True, logprobs=bool(opts.get("logprobs", False)),
                        max_images=None, batched=True)


def _hf_caps(opts: dict) -> Capabilities:
    return Capabilities(token_focus=False, grounding=True, logprobs=True, max_images=None, batched=True)


_ADAPTERS: dict[str, _AdapterKind] = {
    "qwen2_5_vl": _AdapterKind(_load_qwen, _qwen_caps),
    "openai": _AdapterKind(_load_openai, _openai_caps),
    "hf": _AdapterKind(_load_hf, _hf_caps),
}

_BIG = {"dtype": "bfloat16", "device_map": "auto"}

_ENTRIES: list[ModelEntry] = [
    ModelEntry("qwen2.5-vl-3b", "qwen2_5_vl", "Qwen/Qwen2.5-VL-3B-Instruct",
               "Qwen2.5-VL-3B-Instruct (the paper's SVLM), checkpoint pixel limits, Visual Focus",
               {**QWEN_PIXELS, **_BIG}),
    ModelEntry("qwen2.5-vl-7b", "qwen2_5_vl", "Qwen/Qwen2.5-VL-7B-Instruct",
               "Qwen2.5-VL-7B-Instruct, checkpoint pixel limits, Visual Focus", {**QWEN_PIXELS, **_BIG}),
    ModelEntry("qwen2.5-vl-72b", "qwen2_5_vl", "Qwen/Qwen2.5-VL-72B-Instruct",
               "Qwen2.5-VL-72B-Instruct (the paper's LVLM) on local GPUs, device_map=auto",
               {**QWEN_PIXELS, **_BIG, "max_new_tokens": 256}),
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
    ModelEntry("gpt-4o", "openai", "gpt-4o",
               "OpenAI GPT-4o (key in OPENAI_API_KEY); 0-1000 grounding coordinates",
               {"base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY", "require_key": True,
                "grounding_coords": "norm1000", "max_new_tokens": 256, "logprobs": True}),
    ModelEntry("openai-compatible", "openai", "default",
               "any OpenAI-compatible server: set ?base_url=...&model=... (key env var via api_key_env)",
               {"base_url": "http://127.0.0.1:8000/v1", "api_key_env": "OPENAI_API_KEY"}),
    # The demo world's two small trained checkpoints (scripts/train_demo_models.py), shipped with the
    # package. fp16 on disk, run in float32 on CPU; the SVLM's budget is about a quarter of the LVLM's
    # pixels (32 vs 144 visual tokens for a 448x252 frame); grounding replies need ~190 tokens.
    ModelEntry("demo-svlm", "qwen2_5_vl", str(DEMO_CHECKPOINTS / "demo-svlm"),
               "demo world's weak edge model (small Qwen2.5-VL trained on the demo task; a quarter of the pixels)",
               {"dtype": "float32", "min_pixels": 3136, "max_pixels": 31360, "max_new_tokens": 32, "batch_size": 8}),
    ModelEntry("demo-lvlm", "qwen2_5_vl", str(DEMO_CHECKPOINTS / "demo-lvlm"),
               "demo world's strong cloud model (small Qwen2.5-VL trained on the demo task; answers and grounds)",
               {"dtype": "float32", "min_pixels": 3136, "max_pixels": 112896, "max_new_tokens": 192, "batch_size": 8}),
    ModelEntry("tiny-qwen2.5-vl", "qwen2_5_vl", "tiny",
               "tiny random Qwen2.5-VL built in-process (tests, demos): real code paths, gibberish answers",
               {**TINY_PIXELS, "max_new_tokens": 16}),
    ModelEntry("tiny-vlm-r1", "qwen2_5_vl", "tiny",
               "the tiny Qwen2.5-VL with VLM-R1's <think>/<answer> prompt", {**TINY_PIXELS, "max_new_tokens": 16,
                                                                            "prompt_style": "r1"}),
    ModelEntry("tiny-hf", "hf", "tiny",
               "the tiny Qwen2.5-VL through the generic image-text-to-text adapter (processor + chat template)",
               {"max_new_tokens": 16, "processor_kwargs": {"images_kwargs": {"size": {
                   "shortest_edge": TINY_PIXELS["min_pixels"], "longest_edge": TINY_PIXELS["max_pixels"]}}}}),
]


def list_models() -> list[ModelEntry]:
    return list(_ENTRIES)


def entry_summary(entry: ModelEntry) -> dict:
    """One row of `edgevlm-eval models` (JSON-able, capabilities included, no weights loaded)."""
    return entry.to_json()


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


def resolve(spec: str) -> ModelEntry:
    """A spec (see the module docstring) -> the entry with its options merged."""
    spec = spec.strip()
    base, _, query = spec.partition("?")
    opts = parse_options(query, spec) if query else {}
    by_name = {e.name: e for e in _ENTRIES}
    if base in by_name:
        e = by_name[base]
        entry = replace(e, options={**e.options, **opts})
    else:
        adapter, sep, ckpt = base.partition(":")
        if not sep or adapter not in _ADAPTERS:
            raise UnknownNameError("model", base, [*by_name, *(f"{a}:<path-or-id>" for a in _ADAPTERS)])
        if not ckpt:
            raise ConfigError(f"model spec '{spec}' names adapter '{adapter}' but no checkpoint "
                              f"(expected {adapter}:<path-or-hub-id>)", key="model")
        # No default options: a local checkpoint brings its own pixel budget (preprocessor config).
        entry = ModelEntry(base, adapter, ckpt, f"{adapter} adapter on {ckpt}", opts)
    # openai-compatible: `model=` names the served model.
    if entry.adapter == "openai" and "model" in entry.options:
        o = dict(entry.options)
        entry = replace(entry, checkpoint=str(o.pop("model")), options=o)
    return entry


def load_adapter(spec: str | ModelEntry, **overrides: Any) -> Adapter:
    """Resolve and instantiate. Unknown option keys raise a ConfigError naming them."""
    entry = spec if isinstance(spec, ModelEntry) else resolve(spec)
    if overrides:
        entry = replace(entry, options={**entry.options, **overrides})
    try:
        return _ADAPTERS[entry.adapter].load(entry)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise ConfigError(f"model '{entry.name}': {e}", key="options") from None
        raise
