"""Parallel (paper Table 5, first row; "the upper bound of existing cloud-edge architectures"):
uploads by the keyframe rule, the LVLM answer if in time else the SVLM's, native history of the
final outputs known at s_T; delayed replies are never reused."""

from __future__ import annotations

from ..keyframe import keyframe_decision
from ..strategy import Strategy
from .keyframe_knobs import KEYFRAME_LCR, KeyframeKnobs


class Parallel(Strategy):
    name = "parallel"
    order = 40
    label = "Parallel"
    source = "paper Table 5, first row"
    colour = "#9467bd"
    Knobs = KeyframeKnobs
    lcr_knob = KEYFRAME_LCR

    def decide(self, st, t, s_T):
        return keyframe_decision(t, st.j_star, st.in_flight, self.knobs.K_call, self.knobs.K_delay)
