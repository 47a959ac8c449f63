"""A model registry entry (a configured partial, as VLMEvalKit names it): adapter, checkpoint,
options, and what the engine needs to know without loading weights (capabilities, declared edge
latency, price). Built-in entries are in registry.py, user entries come from models.yaml (user.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.core.plugins import load_attr

from .base import Adapter, Capabilities, Price
from .kinds import BUILTIN_CAPABILITIES

BUILTIN = "built-in"


def adapter_class(ref: str, *, source: str = "", entry: str = "") -> type[Adapter]:
    """The third-party Adapter class a reference names (`package.module:Class`, `file.py:Class`)."""
    label = f"entry '{entry}': adapter" if entry else "adapter"
    cls = load_attr(ref, what=label, key="adapter", path=source or None)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise ConfigError(f"{label} {ref} is not an Adapter subclass (expected a class deriving from "
                          "edgevlm_eval.model_adapters.base.Adapter)", path=source or None, key="adapter")
    return cls


@dataclass(frozen=True)
class ModelEntry:
    name: str
    adapter: str  # "qwen2_5_vl" | "openai" | "hf" | "package.module:Class" | "/path/file.py:Class"
    checkpoint: str  # local path, hub id, "tiny", or (openai) the served model name
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    price: Price | None = None  # paid APIs: USD per 1M input / output tokens
    # The SVLM's per-answer latency on an edge device, a declared figure (seconds): the run's default
    # edge latency, so that scores never depend on the replaying machine's load. None: no published
    # figure (the run then asks for --edge-latency).
    edge_latency_s: float | None = None
    edge_latency_basis: str = ""  # where the figure comes from
    source: str = BUILTIN  # "built-in" or the user models file that defines the entry

    @property
    def capabilities(self) -> Capabilities:
        """What the adapter can do, without loading weights (a third-party class is imported)."""
        if self.adapter in BUILTIN_CAPABILITIES:
            return BUILTIN_CAPABILITIES[self.adapter](self.options)
        return adapter_class(self.adapter, source=self.source, entry=self.name).capabilities_for(dict(self.options))

    def to_json(self) -> dict:
        return {"name": self.name, "adapter": self.adapter, "checkpoint": self.checkpoint,
                "description": self.description, "options": dict(self.options),
                "price": self.price.to_json() if self.price else None,
                "edge_latency_s": self.edge_latency_s, "edge_latency_basis": self.edge_latency_basis,
                "source": self.source, "capabilities": self.capabilities.to_json()}
