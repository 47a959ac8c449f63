"""LVLM only (paper Table 2, "Cloud"): every frame uploaded; the LVLM answer if it arrives within
tau, else the frame is invalid."""

from __future__ import annotations

from ..strategy import Needs, Strategy


class LVLMOnly(Strategy):
    name = "lvlm_only"
    order = 20
    label = "LVLM only"
    source = "paper Table 2: the cloud model alone"
    colour = "#1f77b4"
    needs = Needs(svlm=False)
    history = None

    def decide(self, st, t, s_T):
        return True, "always"

    def output(self, uploaded, in_time, lvlm_ok, svlm_valid, svlm_reason):
        if not in_time:
            return "invalid", "lvlm_late"
        return ("lvlm", None) if lvlm_ok else ("invalid", "lvlm_error")
