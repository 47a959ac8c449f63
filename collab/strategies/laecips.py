"""LAECIPS (Hu et al. 2024), reading 1 of 2: the hard-sample-mining rule of the authors' released
code (kubeedge/ianvs, examples/robot/lifelong_learning_bench/semantic-segmentation/testalgorithms/
rfnet: `hard_sample_mining.py` keeps a sample on the edge when its confidence score exceeds a
threshold, and `RFNet/eval.py` `Validator.confidence` scores a segmentation by the share of its
pixels whose top-1 softmax probability exceeds 0.9). Here the "pixels" are the SVLM's answer
tokens:

- the SVLM answers first; its confidence h = share of the ANSWER's tokens whose top-1 probability
  exceeds 0.9 (core/answer_span.py: a <think> block and box coordinates do not count);
- h > theta -> the SVLM answer is final, else the frame is uploaded at s_T + e_T;
- the LVLM answer counts if it arrives by s_T + tau, else the SVLM answer stands (or, strict, the
  frame is invalid).

Reading 2, the edgeVLM paper's description of LAECIPS as a pretrained task-difficulty classifier,
is `laecips-clf` (laecips_clf.py). docs/method.md says which reading each number comes from."""

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


class LAECIPSBase(Strategy):
    """What both LAECIPS readings share: the decision after the SVLM, the upload at s_T + e_T, the
    output (LVLM if in time, else SVLM; strict: invalid) and native history."""

    needs = Needs(logprobs=True)
    decides_after_svlm = True

    def decide(self, st, t, s_T):
        return False, "after_svlm"

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


class LAECIPS(LAECIPSBase):
    name = "laecips"
    order = 50
    label = "LAECIPS (authors' code)"
    source = ("LAECIPS authors' released code (kubeedge/ianvs robot lifelong_learning_bench rfnet: "
              "hard_sample_mining.py, RFNet/eval.py Validator.confidence), over the SVLM's answer tokens")
    colour = "#2ca02c"
    # the paper's Table 2 LAECIPS rows are filed under `laecips`, but the paper does not say which
    # rule produced them (it describes the classifier): not this reading's label
    paper_label = "LAECIPS (paper, reading unstated)"
    Knobs = LAECIPSKnobs
    lcr_knob = LcrKnob("theta", direction=+1, by_score=True)

    def score(self, svlm):
        return 0.0 if svlm.conf is None else svlm.conf

    def decide_after(self, st, t, svlm):
        if self.score(svlm) > self.knobs.theta:
            return False, "confident"
        return True, "unconfident"
