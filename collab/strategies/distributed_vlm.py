"""Distributed VLM (Li et al. 2025, the paper's [16]): the edge runs the LVLM's vision encoder and
uploads visual features instead of the image:
    L'_T = L_T - upload(image bytes) + upload(feature bytes) + edge encoder - cloud encoder,
feature bytes = visual tokens x LLM hidden size x bytes per value; output as LVLM only."""

from __future__ import annotations

from dataclasses import dataclass

from edgevlm_eval.core.errors import ConfigError

from ..strategy import Knobs, Needs
from .lvlm_only import LVLMOnly


@dataclass(frozen=True)
class DistributedVLMKnobs(Knobs):
    dvlm_tokens: int = 1824  # visual tokens uploaded ...
    dvlm_hidden: int = 8192  # ... x LLM hidden size (72B) ...
    dvlm_bytes_per_value: int = 2  # ... x bytes per value (bf16)
    dvlm_edge_encoder_s: float = 0.0  # the LVLM vision encoder's time on the edge
    dvlm_cloud_encoder_s: float = 0.0  # ... and on the cloud (saved)

    def validate(self):
        for k in ("dvlm_tokens", "dvlm_hidden", "dvlm_bytes_per_value"):
            if getattr(self, k) < 1:
                raise ConfigError(f"must be a positive integer, got {getattr(self, k)}", key=k)
        for k in ("dvlm_edge_encoder_s", "dvlm_cloud_encoder_s"):
            v = getattr(self, k)
            if not 0 <= v < float("inf"):
                raise ConfigError(f"must be a finite number of seconds >= 0, got {v}", key=k)


class DistributedVLM(LVLMOnly):
    name = "distributed_vlm"
    order = 30
    label = "Distributed VLM"
    source = "Li et al. 2025 as the edgeVLM paper evaluates it: LVLM answers, features uploaded instead of the image"
    colour = "#17becf"
    Knobs = DistributedVLMKnobs
    needs = Needs(svlm=False, uplink=True)

    def setup(self, st):
        k = self.knobs
        uplink = self.cfg.uplink
        if uplink is None:
            raise ConfigError("distributed_vlm needs an uplink to time the feature upload: --uplink MBPS or a "
                              "Mahimahi trace (or --latency network:...)", key="--uplink")
        feat = k.dvlm_tokens * k.dvlm_hidden * k.dvlm_bytes_per_value
        out = []
        for t in range(st.n):
            rec, s_T = st.recs[t], st.s[t]
            if rec is not None and rec.upload_s is not None:
                up_img = rec.upload_s
            else:
                up_img = uplink.upload_s(st.image_bytes(t), s_T)
            lt = st.L[t] - up_img + uplink.upload_s(feat, s_T) + k.dvlm_edge_encoder_s - k.dvlm_cloud_encoder_s
            out.append(max(0.0, lt))
        st.L = out
