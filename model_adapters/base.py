"""The adapter interface lives in the core (edgevlm_eval.core.adapter), where the engine and the
adapters both see it; this module keeps the name a third-party adapter imports."""

from edgevlm_eval.core.adapter import Adapter, Capabilities, Price

__all__ = ["Adapter", "Capabilities", "Price"]
