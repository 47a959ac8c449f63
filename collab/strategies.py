"""The strategies of method.md §3-4, each in one place: when to upload, what the output is, and
which answers later frames may reuse as history. The simulator (simulator.py) owns the clock and
the per-stream bookkeeping; a strategy only reads it.

Comparisons use EPS so that boundaries written in the method as `<=` hold on float clocks
(a_j = s_T, L_T = tau, s_T - s_j = delta are all "in").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from edgevlm_eval.core.errors import ConfigError, UnknownNameError

from .keyframe import keyframe_decision

EPS = 1e-9
INF = math.inf

# strategy -> the RunSpec fields it reads (its knobs); order = how run ids and tables show them
KNOBS: dict[str, tuple[str, ...]] = {
    "svlm_only": (),
    "lvlm_only": (),
    "distributed_vlm": ("dvlm_tokens", "dvlm_hidden", "dvlm_bytes_per_value", "dvlm_edge_encoder_s",
                        "dvlm_cloud_encoder_s"),
    "parallel": ("K_call", "K_delay"),
    "laecips": ("theta", "laecips_fallback"),
    "adas": ("kappa", "adas_beta"),
    "edgevlm": ("K_call", "K_delay", "crm", "ggvr", "grvr", "alpha", "mu"),
}
STRATEGIES = tuple(KNOBS)
# the knob --target-lcr searches, per strategy
LCR_KNOB = {"parallel": "K_call", "edgevlm": "K_call", "laecips": "theta", "adas": "kappa"}


@dataclass(frozen=True)
class RunSpec:
    """One strategy with its knobs: a column of a results table."""

    strategy: str
    name: str | None = None  # run id; default: the strategy name
    K_call: int = 3  # paper Table 1 knob (3 gives its LCR 27.3 %); 0 = rule off
    K_delay: float = 4  # paper default; inf = rule off
    crm: bool = True
    ggvr: bool = True
    grvr: bool = True
    alpha: float = 0.7  # paper (alpha, mu) = (0.7, 1.0)
    mu: float = 1.0
    theta: float = 0.95  # LAECIPS confidence threshold
    laecips_fallback: bool = True  # SVLM answer stands when the LVLM is late (else invalid)
    kappa: float = 1.0  # ADAS proxy: upload when the predicted latency <= kappa * tau
    adas_beta: float = 0.3  # ADAS proxy: EWMA weight of the newest observed latency
    dvlm_tokens: int = 1824  # Distributed VLM: visual tokens uploaded ...
    dvlm_hidden: int = 8192  # ... x LLM hidden size (72B) ...
    dvlm_bytes_per_value: int = 2  # ... x bytes per value (bf16)
    dvlm_edge_encoder_s: float = 0.0  # the LVLM vision encoder's time on the edge
    dvlm_cloud_encoder_s: float = 0.0  # ... and on the cloud (saved)
    latency: str | None = None  # a latency spec for this run only (the delay protocol); None = the run's

    def __post_init__(self):
        if self.strategy not in KNOBS:
            raise UnknownNameError("strategy", self.strategy, STRATEGIES)
        if isinstance(self.K_call, bool) or int(self.K_call) != self.K_call or self.K_call < 0:
            raise ConfigError(f"K_call must be an integer >= 0, got {self.K_call!r}", key="K_call")
        if not (self.K_delay >= 0):
            raise ConfigError(f"K_delay must be >= 0 (inf = off), got {self.K_delay!r}", key="K_delay")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}", key="alpha")
        if not (self.kappa >= 0) or not 0 < self.adas_beta <= 1:
            raise ConfigError(f"kappa must be >= 0 and adas_beta in (0, 1], got {self.kappa}, {self.adas_beta}",
                              key="kappa")

    @property
    def run_id(self) -> str:
        return self.name or self.strategy

    def knobs(self) -> dict:
        d = {k: getattr(self, k) for k in KNOBS[self.strategy]}
        if "K_delay" in d and d["K_delay"] == INF:
            d["K_delay"] = "inf"
        if self.latency:
            d["latency"] = self.latency
        return d

    def with_(self, **kw) -> "RunSpec":
        return replace(self, **kw)

    def to_json(self) -> dict:
        return {"strategy": self.strategy, "run": self.run_id, **self.knobs()}


def spec_fields() -> set[str]:
    return {f.name for f in fields(RunSpec)}


# ---------------------------------------------------------------------------------------------


class Strategy:
    """Hooks the simulator calls for every frame of a stream (`st` is its StreamState)."""

    name = ""
    uses_svlm = True
    history = "native"  # "crm" (compressed snippets, LVLM entry farthest) | "native" | None
    reuse_delayed = False  # history may hold LVLM replies that missed their own deadline
    decides_after_svlm = False

    def __init__(self, spec: RunSpec, cfg):
        self.spec, self.cfg = spec, cfg

    def setup(self, st) -> None:
        """Per-stream preparation (e.g. Distributed VLM's latency)."""

    def decide(self, st, t: int, s_T: float) -> tuple[bool, str]:
        """Upload frame t? Decided at s_T, before the SVLM runs."""
        return False, "never"

    def decide_after(self, st, t: int, conf: float | None, e: float) -> tuple[bool, str]:
        raise NotImplementedError

    def sent_at(self, s_T: float, e: float) -> float:
        return s_T

    def on_arrival(self, st, j: int, a: float) -> None:
        pass

    def output(self, uploaded: bool, in_time: bool, lvlm_ok: bool, svlm_valid: bool,
               svlm_reason: str | None) -> tuple[str, str | None]:
        """(output source, invalid reason): LVLM answer if in time, else the SVLM's."""
        if uploaded and in_time:
            if lvlm_ok:
                return "lvlm", None
        if svlm_valid:
            return "svlm", None
        return "invalid", svlm_reason

    def reuse_at(self, output: str, lvlm_ok: bool, arrival: float) -> float:
        """When frame t's LVLM answer becomes usable as history (INF: never). Default: only an
        LVLM answer that was the frame's output, from its arrival (final outputs known at s_T)."""
        return arrival if output == "lvlm" else INF


class SVLMOnly(Strategy):
    name = "svlm_only"


class LVLMOnly(Strategy):
    name = "lvlm_only"
    uses_svlm = False
    history = None

    def decide(self, st, t, s_T):
        return True, "always"

    def output(self, uploaded, in_time, lvlm_ok, svlm_valid, svlm_reason):
        if not in_time:
            return "invalid", "lvlm_late"
        return ("lvlm", None) if lvlm_ok else ("invalid", "lvlm_error")


class DistributedVLM(LVLMOnly):
    """The edge runs the LVLM's vision encoder and uploads visual features instead of the image:
    L'_T = L_T - upload(image bytes) + upload(feature bytes) + edge encoder - cloud encoder."""

    name = "distributed_vlm"

    def setup(self, st):
        sp = self.spec
        uplink = self.cfg.uplink
        if uplink is None:
            raise ConfigError("distributed_vlm needs an uplink to time the feature upload: --uplink MBPS or a "
                              "Mahimahi trace (or --latency network:...)", key="--uplink")
        feat = sp.dvlm_tokens * sp.dvlm_hidden * sp.dvlm_bytes_per_value
        out = []
        for t, f in enumerate(st.frames):
            rec, s_T = st.recs[t], st.s[t]
            if rec is not None and rec.upload_s is not None:
                up_img = rec.upload_s
            else:
                up_img = uplink.upload_s(st.image_bytes(t), s_T)
            lt = st.L[t] - up_img + uplink.upload_s(feat, s_T) + sp.dvlm_edge_encoder_s - sp.dvlm_cloud_encoder_s
            out.append(max(0.0, lt))
        st.L = out


class KeyframeMixin:
    """Keyframe decision (keyframe.py) from the stream's j* and requests in flight at s_T."""

    def decide(self, st, t, s_T):
        return keyframe_decision(t, st.j_star, len(st.heap), self.spec.K_call, self.spec.K_delay)


class Parallel(KeyframeMixin, Strategy):
    """Upper bound of existing cloud-edge architectures (paper Table 5, first row): same uploads
    as the keyframe rule, LVLM answer if in time else SVLM, native history of the final outputs
    known at s_T; delayed replies are never reused."""

    name = "parallel"


class EdgeVLM(KeyframeMixin, Strategy):
    name = "edgevlm"
    reuse_delayed = True

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        self.history = "crm" if spec.crm else "native"

    def reuse_at(self, output, lvlm_ok, arrival):
        # Context Transfer: every reply that arrived is usable, late or not
        return arrival if lvlm_ok else INF


class LAECIPS(Strategy):
    """SVLM first; confidence h = share of answer tokens with top-1 probability > 0.9; h > theta
    -> SVLM answer final, else upload at s_T + e_T; the LVLM answer counts if it arrives by
    s_T + tau, else the SVLM answer stands (or, strict, the frame is invalid)."""

    name = "laecips"
    decides_after_svlm = True

    def decide(self, st, t, s_T):
        return False, "after_svlm"

    def decide_after(self, st, t, conf, e):
        h = conf if conf is not None else 0.0
        if h > self.spec.theta:
            return False, "confident"
        return True, "unconfident"

    def sent_at(self, s_T, e):
        return s_T + e

    def output(self, uploaded, in_time, lvlm_ok, svlm_valid, svlm_reason):
        if uploaded:
            if in_time and lvlm_ok:
                return "lvlm", None
            if not self.spec.laecips_fallback:
                return "invalid", "lvlm_late" if not in_time else "lvlm_error"
        if svlm_valid:
            return "svlm", None
        return "invalid", svlm_reason


class ADAS(Strategy):
    """Labelled proxy (method.md §4): predicted latency = EWMA of the latencies of replies
    received by s_T, times (1 + requests in flight) (each request ahead costs about one more
    latency); upload when it is <= kappa * tau. Before any reply the prediction is 0."""

    name = "adas"

    def on_arrival(self, st, j, a):
        lat = a - st.sent[j]
        beta = self.spec.adas_beta
        st.ewma = lat if st.ewma is None else beta * lat + (1 - beta) * st.ewma

    def decide(self, st, t, s_T):
        pred = 0.0 if st.ewma is None else st.ewma * (1 + len(st.heap))
        if pred <= self.spec.kappa * self.cfg.tau + EPS:
            return True, "predicted_in_time"
        return False, "predicted_late"


STRATEGY_CLASSES: dict[str, type[Strategy]] = {
    c.name: c for c in (SVLMOnly, LVLMOnly, DistributedVLM, Parallel, LAECIPS, ADAS, EdgeVLM)}
assert set(STRATEGY_CLASSES) == set(STRATEGIES)


def make_strategy(spec: RunSpec, cfg) -> Strategy:
    return STRATEGY_CLASSES[spec.strategy](spec, cfg)


def spec_to_dict(spec: RunSpec) -> dict:
    return asdict(spec)
