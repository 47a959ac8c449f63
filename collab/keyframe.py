"""The keyframe decision of edgeVLM (paper §3.4, docs/method.md), the one home of the rule.

Decided at s_T from two numbers the edge knows then:
    j_star     the newest frame whose (usable) LVLM reply has arrived by s_T (max A_T), or -1
    in_flight  P_T, the uploads whose reply has not arrived by s_T
in this order:
1. K_call (precedence): A_T non-empty and T - j_star <= K_call -> skip ("k_call"). 0 = off.
2. K_delay: P_T >= K_delay -> skip ("k_delay"). inf = off.
3. otherwise upload ("keyframe").
The engine's strategies and the model-free planner (`edgevlm-eval plan`) both call it.
"""

from __future__ import annotations


def keyframe_decision(t: int, j_star: int, in_flight: int, K_call: int, K_delay: float) -> tuple[bool, str]:
    """(upload?, why) for frame t."""
    if j_star >= 0 and K_call > 0 and t - j_star <= K_call:
        return False, "k_call"
    if in_flight >= K_delay:
        return False, "k_delay"
    return True, "keyframe"
