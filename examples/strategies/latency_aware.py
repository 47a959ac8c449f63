"""Latency-aware K_call: a worked example of a user strategy (docs/adding-a-strategy.md).

edgeVLM skips frame T while the newest *arrived* reply is at most K_call frames old, so while a
reply is in flight it keeps uploading (up to K_delay). This strategy changes the decision only:
1. it counts from the newest *upload*, arrived or still on its way: uploads are spaced out;
2. it stretches K_call by how late the cloud is: K_call(T) = K_base + ceil((D - tau) / dt), at most
   late_max frames added, D an EWMA of the latencies of the replies received by s_T, dt the frame
   period. While replies come within tau (their answer is the output) it uploads every K_base + 1
   frames; each frame of lateness adds one, as a late reply only refreshes the history.
The rest is edgeVLM's Context Transfer: every arrived reply, late or not, is CRM history, with
visual focus on the SVLM."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgevlm_eval.collab.keyframe import keyframe_decision
from edgevlm_eval.collab.strategy import EPS, INF, FocusRequest, Knobs, LcrKnob, Needs, Strategy
from edgevlm_eval.core.errors import ConfigError


@dataclass(frozen=True)
class LatencyKCallKnobs(Knobs):
    K_base: int = 1  # K_call while replies arrive within tau (0: upload every frame then)
    late_max: int = 8  # at most this many frames added for lateness (a spike must not stop uploads)
    beta: float = 0.3  # EWMA weight of the newest reply's latency
    K_delay: float = 4.0  # as edgeVLM: skip T while K_delay uploads are in flight (inf = off)

    def validate(self):  # every value the call-ratio search tries (K_base 0..20) must pass
        for knob in ("K_base", "late_max"):
            if getattr(self, knob) < 0:
                raise ConfigError(f"must be an integer >= 0, got {getattr(self, knob)}", key=knob)
        if not 0 < self.beta <= 1:
            raise ConfigError(f"must be in (0, 1], got {self.beta}", key="beta")
        if not self.K_delay >= 1:
            raise ConfigError(f"must be >= 1 (inf = off), got {self.K_delay}", key="K_delay")


class LatencyAwareKCall(Strategy):
    name = "latency_aware"
    label = "Latency-aware K_call"
    proxy = False  # our own method, not someone else's re-implemented from a description
    source = "examples/strategies/latency_aware.py"
    Knobs = LatencyKCallKnobs
    needs = Needs(token_focus=True)  # the trace and the SVLM (defaults), and visual focus
    lcr_knob = LcrKnob("K_base", direction=-1, values=tuple(range(0, 21)),  # larger: fewer uploads
                       widen=("K_delay", (1.0, 2.0, 3.0, INF)))  # finer steps when no K_base hits the band
    history = "crm"

    def new_stream_state(self):
        return {"D": None, "last_upload": -1, "prev": None, "dt": None}

    def on_arrival(self, st, j, a):
        m, lat, beta = st.mine, a - st.sent[j], self.knobs.beta
        m["D"] = lat if m["D"] is None else beta * lat + (1 - beta) * m["D"]

    def k_call(self, m) -> int:
        """K_base, plus one frame per frame by which replies now miss tau."""
        if m["D"] is None or not m["dt"]:
            return self.knobs.K_base
        late = math.ceil(max(0.0, m["D"] - self.cfg.tau) / m["dt"] - EPS)
        return self.knobs.K_base + min(late, self.knobs.late_max)

    def decide(self, st, t, s_T):
        m = st.mine
        if m["prev"] is not None:  # the frame period, from the capture times decided so far
            m["dt"] = (s_T - m["prev"][1]) / (t - m["prev"][0])
        m["prev"] = (t, s_T)
        upload, why = keyframe_decision(t, m["last_upload"], st.in_flight, self.k_call(m), self.knobs.K_delay)
        if upload:
            m["last_upload"] = t
        return upload, why

    def reuse_at(self, output, lvlm_ok, arrival):
        return arrival if lvlm_ok else INF  # Context Transfer: late replies become history too

    def focus(self):
        return FocusRequest()  # GGVR + GRVR at the paper's (alpha, mu) = (0.7, 1.0)
