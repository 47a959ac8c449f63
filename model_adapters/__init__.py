"""Model adapters: local checkpoints through transformers, cloud models over HTTP.

    from edgevlm_eval.model_adapters import load_adapter, list_models
    adapter = load_adapter("tiny-qwen2.5-vl")      # see docs/models.md for the spec syntax

Heavy modules (torch, transformers, openai) are imported only when an adapter is loaded.
"""

from .base import Adapter, Capabilities, Price
from .registry import (
           ModelEntry,
           list_models,
           load_adapter,
           resolve,
           set_models_path,
           usage_cost,
)

__all__ = ["Adapter", "Capabilities", "ModelEntry", "Price", "list_models", "load_adapter", "resolve",
           "set_models_path", "usage_cost"]
