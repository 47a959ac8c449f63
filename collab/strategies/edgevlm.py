"""edgeVLM, Context Transfer (paper §3): uploads by the keyframe rule; the LVLM answer if in time,
else the SVLM's; every reply that has arrived, late or not, becomes history (CRM: compressed
snippets with the freshest LVLM entry j_L farthest) and visual focus on the SVLM (GGVR prunes
j_L's image to its ROIs, GRVR re-weights the current frame's tokens)."""

from __future__ import annotations

from dataclasses import dataclass

from edgevlm_eval.core.errors import ConfigError

from ..keyframe import keyframe_decision
from ..strategy import INF, FocusRequest, Needs, Strategy
from .keyframe_knobs import KEYFRAME_LCR, KeyframeKnobs


@dataclass(frozen=True)
class EdgeVLMKnobs(KeyframeKnobs):
    crm: bool = True  # Context Replacement
    ggvr: bool = True  # grounding-guided token pruning of j_L's image
    grvr: bool = True  # grounding-retrieved re-weighting of the current frame's tokens
    alpha: float = 0.7  # GRVR, paper (alpha, mu) = (0.7, 1.0)
    mu: float = 1.0  # GRVR, b = 1 - mu / 2

    def validate(self):
        super().validate()
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {self.alpha}", key="alpha")
        if not -INF < self.mu < INF:
            raise ConfigError(f"must be a finite number, got {self.mu}", key="mu")


class EdgeVLM(Strategy):
    name = "edgevlm"
    order = 70
    label = "edgeVLM"
    source = "the paper's method (§3): keyframe decision, CRM, GGVR, GRVR"
    colour = "#d62728"
    Knobs = EdgeVLMKnobs
    needs = Needs(token_focus=True)
    lcr_knob = KEYFRAME_LCR

    def __init__(self, knobs, cfg):
        super().__init__(knobs, cfg)
        self.history = "crm" if knobs.crm else "native"

    @classmethod
    def variant(cls, knobs) -> str:
        if knobs.crm and knobs.ggvr and knobs.grvr:
            return ""
        return "+".join(k.upper() for k in ("crm", "ggvr", "grvr") if getattr(knobs, k)) or "none"

    @classmethod
    def setting(cls, knobs) -> dict:
        # the module switches are in the variant tag ([CRM], [CRM+GGVR]): not repeated here
        return {k: v for k, v in super().setting(knobs).items() if k not in ("crm", "ggvr", "grvr")}

    def decide(self, st, t, s_T):
        return keyframe_decision(t, st.j_star, st.in_flight, self.knobs.K_call, self.knobs.K_delay)

    def reuse_at(self, output, lvlm_ok, arrival):
        # Context Transfer: every reply that arrived is usable, late or not
        return arrival if lvlm_ok else INF

    def focus(self):
        k = self.knobs
        if not (k.ggvr or k.grvr):
            return None
        return FocusRequest(ggvr=k.ggvr, grvr=k.grvr, alpha=k.alpha, mu=k.mu)
