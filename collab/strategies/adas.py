"""ADAS (Hu et al. 2024, IoT Journal), latency-adaptive offloading, as a labelled PROXY (its exact
rule could not be obtained; the edgeVLM paper says only that it offloads "by considering factors
such as latency and quality of service").

Estimator, per stream, decided at s_T:
- every reply that arrives (by s_T, late or not) is one latency observation a_j - sent_j; the
  estimate is their EWMA with weight `adas_beta` on the newest;
- predicted latency = estimate x (1 + requests in flight) (each request ahead costs about one
  more latency); 0 before any observation;
- upload when predicted <= kappa * tau (`predicted_in_time`), else skip (`predicted_late`);
- re-probe: when the prediction says late, nothing is in flight, and `adas_probe_after` frames
  have passed since the newest observation became known (or since the stream began, if there is
  none), the frame is uploaded anyway (`probe`) to refresh a stale estimate. Without it one burst
  of high latency locks a stream out for good: the estimate only changes when a reply arrives, and
  a stream that stops uploading gets no replies. With the default 5 frames (5 s at the paper's
  1 FPS) a locked-out stream still uploads about one frame in 5 + (its latency in frames), which
  is the proxy's lowest call ratio under a persistent burst.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevlm_eval.core.errors import ConfigError

from ..strategy import EPS, Knobs, LcrKnob, Strategy


@dataclass(frozen=True)
class ADASKnobs(Knobs):
    kappa: float = 1.0  # upload when the predicted latency <= kappa * tau
    adas_beta: float = 0.3  # EWMA weight of the newest observed latency
    adas_probe_after: int = 5  # frames without a new latency observation before a probe upload (0 = never probe)

    def validate(self):
        if not 0 <= self.kappa < float("inf"):
            raise ConfigError(f"must be a finite number >= 0, got {self.kappa}", key="kappa")
        if not 0 < self.adas_beta <= 1:
            raise ConfigError(f"must be in (0, 1], got {self.adas_beta}", key="adas_beta")
        if self.adas_probe_after < 0:
            raise ConfigError(f"must be an integer >= 0 (0 = never probe), got {self.adas_probe_after}",
                              key="adas_probe_after")


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
        # t_obs: the frame at which the newest observation became known (0 before any)
        return {"ewma": None, "new": False, "t_obs": 0}

    def on_arrival(self, st, j, a):
        lat = a - st.sent[j]
        beta, m = self.knobs.adas_beta, st.mine
        m["ewma"] = lat if m["ewma"] is None else beta * lat + (1 - beta) * m["ewma"]
        m["new"] = True

    def decide(self, st, t, s_T):
        m = st.mine
        if m["new"]:  # the arrivals of this step (advance_clock ran before decide)
            m["t_obs"], m["new"] = t, False
        ewma = m["ewma"]
        pred = 0.0 if ewma is None else ewma * (1 + st.in_flight)
        if pred <= self.knobs.kappa * self.cfg.tau + EPS:
            return True, "predicted_in_time"
        k = self.knobs.adas_probe_after
        if k > 0 and st.in_flight == 0 and t - m["t_obs"] >= k:
            return True, "probe"
        return False, "predicted_late"
