"""ADAS (Hu et al. 2024, IoT Journal), latency-adaptive offloading, as a labelled PROXY (its exact
rule could not be obtained): predicted latency = EWMA of the latencies of replies received by s_T,
times (1 + requests in flight) (each request ahead costs about one more latency); upload when it
is <= kappa * tau. Before any reply the prediction is 0."""

from __future__ import annotations

from dataclasses import dataclass

from edgevlm_eval.core.errors import ConfigError

from ..strategy import EPS, Knobs, LcrKnob, Strategy


@dataclass(frozen=True)
class ADASKnobs(Knobs):
    kappa: float = 1.0  # upload when the predicted latency <= kappa * tau
    adas_beta: float = 0.3  # EWMA weight of the newest observed latency

    def validate(self):
        if not 0 <= self.kappa < float("inf"):
            raise ConfigError(f"must be a finite number >= 0, got {self.kappa}", key="kappa")
        if not 0 < self.adas_beta <= 1:
            raise ConfigError(f"must be in (0, 1], got {self.adas_beta}", key="adas_beta")


class ADAS(Strategy):
    name = "adas"
    order = 60
    label = "ADAS"
    proxy = True
    source = "proxy of Hu et al. 2024 (IoT J.) from the paper's description; rule in docs/method.md"
    colour = "#ff7f0e"
    Knobs = ADASKnobs
    lcr_knob = LcrKnob("kappa", direction=+1, lo=0.0, hi=10.0, step=0.25)

    def new_stream_state(self):
        return {"ewma": None}

    def on_arrival(self, st, j, a):
        lat = a - st.sent[j]
        beta, m = self.knobs.adas_beta, st.mine
        m["ewma"] = lat if m["ewma"] is None else beta * lat + (1 - beta) * m["ewma"]

    def decide(self, st, t, s_T):
        ewma = st.mine["ewma"]
        pred = 0.0 if ewma is None else ewma * (1 + st.in_flight)
        if pred <= self.knobs.kappa * self.cfg.tau + EPS:
            return True, "predicted_in_time"
        return False, "predicted_late"
