"""The keyframe rule's knobs (collab/keyframe.py), shared by edgeVLM and Parallel."""

from __future__ import annotations

from dataclasses import dataclass

from edgevlm_eval.core.errors import ConfigError

from ..strategy import INF, Knobs, LcrKnob

# --target-lcr: K_call 0..30 (0 = rule off: the most uploads), widening over K_delay when no
# K_call reaches the band with the K_delay given.
KEYFRAME_LCR = LcrKnob("K_call", direction=-1, values=tuple(range(0, 31)),
                       widen=("K_delay", (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, INF)))


@dataclass(frozen=True)
class KeyframeKnobs(Knobs):
    K_call: int = 3  # skip T when the newest arrived reply is from T-i, i <= K_call (0 = off)
    K_delay: float = 4.0  # skip T when K_delay uploads are in flight (inf = off); paper default 4

    def validate(self):
        if self.K_call < 0:
            raise ConfigError(f"must be an integer >= 0 (0 = off), got {self.K_call}", key="K_call")
        if not self.K_delay >= 0:
            raise ConfigError(f"must be >= 0 (inf = off), got {self.K_delay}", key="K_delay")
