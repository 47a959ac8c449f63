"""SVLM only (paper Table 2, "Edge"): no uploads; history = the SVLM's own answers (native turns)."""

from __future__ import annotations

from ..strategy import Needs, Strategy


class SVLMOnly(Strategy):
    name = "svlm_only"
    order = 10
    label = "SVLM only"
    source = "paper Table 2: the edge model alone"
    colour = "#7f7f7f"
    reference = True  # the no-cloud reference that gains are measured against
    needs = Needs(trace=False)
