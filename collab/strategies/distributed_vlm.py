"""Distributed VLM (Li et al. 2025, the paper's [16]): the edge runs the vision encoder and uploads
visual features instead of the image; the cloud LVLM answers from them. Output as LVLM only.

    L'_T = L_T - up(image bytes) + up(feature bytes) + edge encoder - cloud encoder
    feature bytes = visual tokens x feature width x bytes per value

Defaults follow the edgeVLM paper's setting (§4.3.1: "Qwen2.5-VL-3B produces visual features
larger than the original image, making Distributed VLM less effective than directly invoking the
LVLM"): the edge's Qwen2.5-VL-3B vision tower and merger produce one 2048-wide vector (the 3B's
hidden size) per merged 28 x 28 cell, in bf16 (2 bytes). The tokens are the frame's own: each image
resized as Qwen2.5-VL resizes it under the pixel budget (`dvlm_min_pixels`/`dvlm_max_pixels`,
the public checkpoints' limits by default; core/grounding.py `qwen_resized_size`), (h/28) x (w/28)
tokens per image, summed over the images of the query. A 1600 x 900 frame -> 1596 x 896 -> 57 x 32
= 1824 tokens (the paper's §3.3.1 count) x 2048 x 2 B = 7.47 MB, larger than the image; at the
paper's 211 Mbps uplink that is 0.283 s of upload. `up()` is timed over the run's uplink
(`--uplink`, else the latency source's own, e.g. `paper-5g`'s 211 Mbps).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from edgevlm_eval.core.errors import ConfigError, DatasetError
from edgevlm_eval.core.grounding import QWEN_CELL, QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, qwen_resized_size

from ..strategy import Knobs, Needs
from .lvlm_only import LVLMOnly


@dataclass(frozen=True)
class DistributedVLMKnobs(Knobs):
    dvlm_tokens: int = 0  # visual tokens uploaded per frame (0: from each frame's images under the pixel budget)
    dvlm_hidden: int = 2048  # feature width: Qwen2.5-VL-3B's vision merger output (its LLM hidden size)
    dvlm_bytes_per_value: int = 2  # bf16
    dvlm_min_pixels: int = QWEN_MIN_PIXELS  # the pixel budget the images are resized under (3136 and
    dvlm_max_pixels: int = QWEN_MAX_PIXELS  # 12845056: the public Qwen2.5-VL checkpoints')
    dvlm_edge_encoder_s: float = 0.0  # the vision encoder's time on the edge
    dvlm_cloud_encoder_s: float = 0.0  # ... and on the cloud (saved)

    def validate(self):
        if self.dvlm_tokens < 0:
            raise ConfigError(f"must be an integer >= 0 (0 = from the frame size), got {self.dvlm_tokens}",
                              key="dvlm_tokens")
        for k in ("dvlm_hidden", "dvlm_bytes_per_value", "dvlm_min_pixels", "dvlm_max_pixels"):
            if getattr(self, k) < 1:
                raise ConfigError(f"must be a positive integer, got {getattr(self, k)}", key=k)
        if self.dvlm_min_pixels > self.dvlm_max_pixels:
            raise ConfigError(f"must be <= dvlm_max_pixels ({self.dvlm_max_pixels}), got {self.dvlm_min_pixels}",
                              key="dvlm_min_pixels")
        for k in ("dvlm_edge_encoder_s", "dvlm_cloud_encoder_s"):
            v = getattr(self, k)
            if not 0 <= v < float("inf"):
                raise ConfigError(f"must be a finite number of seconds >= 0, got {v}", key=k)


@functools.lru_cache(maxsize=65536)
def _image_size(path: str) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, SyntaxError):
        return None


def visual_tokens(width: int, height: int, min_pixels: int = QWEN_MIN_PIXELS, max_pixels: int = QWEN_MAX_PIXELS) -> int:
    """Merged visual tokens of one image as Qwen2.5-VL resizes it: (h/28) x (w/28)."""
    w, h = qwen_resized_size(width, height, min_pixels, max_pixels)
    return (w // QWEN_CELL) * (h // QWEN_CELL)


def feature_bytes(tokens: int, hidden: int = 2048, bytes_per_value: int = 2) -> int:
    return tokens * hidden * bytes_per_value


class DistributedVLM(LVLMOnly):
    name = "distributed_vlm"
    order = 30
    label = "Distributed VLM"
    source = ("Li et al. 2025 as the edgeVLM paper evaluates it (§4.3.1): LVLM answers, the edge's "
              "Qwen2.5-VL-3B vision features (2048 x bf16 per visual token) uploaded instead of the image")
    colour = "#17becf"
    Knobs = DistributedVLMKnobs
    needs = Needs(svlm=False, uplink=True)

    def frame_tokens(self, st, t: int) -> int | None:
        """Visual tokens of frame t (None: an image cannot be read)."""
        k = self.knobs
        if k.dvlm_tokens:
            return k.dvlm_tokens
        total = 0
        for p in st.frames[t].images:
            size = _image_size(str(p))
            if size is None:
                return None
            total += visual_tokens(size[0], size[1], k.dvlm_min_pixels, k.dvlm_max_pixels)
        return total

    def setup(self, st):
        k = self.knobs
        uplink = self.cfg.uplink
        if uplink is None:
            raise ConfigError("distributed_vlm needs an uplink to time the feature upload: --uplink MBPS or a "
                              "Mahimahi trace (or a latency source that has one: paper-5g, network:...)",
                              key="--uplink")
        out = []
        for t in range(st.n):
            tokens = self.frame_tokens(st, t)
            if tokens is None:
                if self.cfg.check_images:
                    out.append(st.L[t])  # an unusable image: the frame is invalid, never uploaded
                    continue
                raise DatasetError(f"distributed_vlm sizes its features from the frame's images, and an image of "
                                   f"(stream {st.sid!r}, frame {st.frames[t].index}) cannot be read: give "
                                   "--dvlm-tokens N (tokens per frame) to upload a fixed size instead")
            rec, s_T = st.recs[t], st.s[t]
            if rec is not None and rec.upload_s is not None:
                up_img = rec.upload_s
            else:
                up_img = uplink.upload_s(st.image_bytes(t), s_T)
            feat = feature_bytes(tokens, k.dvlm_hidden, k.dvlm_bytes_per_value)
            lt = st.L[t] - up_img + uplink.upload_s(feat, s_T) + k.dvlm_edge_encoder_s - k.dvlm_cloud_encoder_s
            out.append(max(0.0, lt))
        st.L = out
