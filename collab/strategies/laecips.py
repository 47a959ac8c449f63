"""LAECIPS (Hu et al. 2024), the hard-sample-mining rule of the authors' released code: the SVLM
answers first; its confidence h = share of answer tokens whose top-1 probability exceeds 0.9;
h > theta -> the SVLM answer is final, else the frame is uploaded at s_T + e_T; the LVLM answer
counts if it arrives by s_T + tau, else the SVLM answer stands (or, strict, the frame is invalid)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgevlm_eval.core.errors import ConfigError

from ..strategy import Knobs, LcrKnob, Needs, Strategy


@dataclass(frozen=True)
class LAECIPSKnobs(Knobs):
    theta: float = 0.95  # confidence threshold: upload when h <= theta
    laecips_fallback: bool = True  # the SVLM answer stands when the LVLM is late (False: invalid)

    def validate(self):
        if math.isinf(self.theta):
            raise ConfigError(f"must be a finite number, got {self.theta}", key="theta")


class LAECIPS(Strategy):
    name = "laecips"
    order = 50
    label = "LAECIPS"
    source = "hard-sample mining of the LAECIPS authors' released code (kubeedge/ianvs)"
    colour = "#2ca02c"
    Knobs = LAECIPSKnobs
    needs = Needs(logprobs=True)
    lcr_knob = LcrKnob("theta", direction=+1, by_score=True)
    decides_after_svlm = True

    def decide(self, st, t, s_T):
        return False, "after_svlm"

    def score(self, svlm):
        return 0.0 if svlm.conf is None else svlm.conf

    def decide_after(self, st, t, svlm):
        if self.score(svlm) > self.knobs.theta:
            return False, "confident"
        return True, "unconfident"

    def sent_at(self, s_T, e):
        return s_T + e

    def output(self, uploaded, in_time, lvlm_ok, svlm_valid, svlm_reason):
        if uploaded:
            if in_time and lvlm_ok:
                return "lvlm", None
            if not self.knobs.laecips_fallback:
                return "invalid", "lvlm_late" if not in_time else "lvlm_error"
        if svlm_valid:
            return "svlm", None
        return "invalid", svlm_reason
