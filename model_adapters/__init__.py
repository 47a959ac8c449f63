"""Model adapters: local checkpoints through transformers, cloud models over HTTP."""

from .base import Adapter, Capabilities

__all__ = ["Adapter", "Capabilities"]
