"""LAECIPS (Hu et al. 2024), reading 2 of 2: as the edgeVLM paper describes it (§2: "Frameworks
such as LAECIPS pretrain a dedicated task classifier to estimate task complexity and offload
difficult samples to cloud-based large models"; §4.3.1: "LAECIPS triggers LVLM calls based on task
difficulty"). A labelled PROXY: the paper names no features and no model, so both are ours.

- Calibration (`calibrate`, before any scored run): the SVLM alone answers every frame of the
  task's calibration split (streams disjoint from the evaluated ones, never scored); a frame is
  HARD when that answer is wrong:
    multi-label   its frame F1 against the ground truth is below `clf_hard_f1` (default 0.5: the
                  SVLM misses at least half; 1.0 = any set mismatch, which on the paper's nuScenes
                  SVLM (0-1 EM 13.8 %) would call 86 % of frames hard);
    single-label  its label is not the ground truth (an invalid answer is wrong);
  frames the metrics skip (scored false), whose image is unusable or whose SVLM reply failed are
  left out. A logistic regression (scikit-learn, lbfgs, L2 with C = 1, standardised features;
  deterministic) is fitted to HARD on the FEATURES below; its coefficients are the state
  (calibration.json), so deciding needs no scikit-learn and resume/--rescore never refit.
- Decision (after the SVLM answers frame T): score = P(hard | features); upload at s_T + e_T when
  score >= clf_threshold (the call-ratio knob, tuned for the LCR bands on the probe run's scores
  like LAECIPS' theta). A failed SVLM reply scores 1 (always hard).
- Output and history as LAECIPS (the LVLM answer if it arrives by s_T + tau, else the SVLM's).

FEATURES use only what the edge has before deciding: the answer-token probabilities (share above
0.9 = LAECIPS' h, mean, minimum, spread, mean surprisal -log p), the answer's length (tokens,
labels), agreement with the SVLM's answer to the previous frame of the stream (Jaccard of the label
sets; and whether there was one), and statistics of the frame image (brightness, contrast, edge
density, colour saturation: the last image of the query, shrunk to at most 160 px wide).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from edgevlm_eval.core.errors import ConfigError

from ..simulator import svlm_results
from ..strategy import Knobs, LcrKnob, Needs
from .laecips import LAECIPSBase

FEATURES = ("conf", "p_mean", "p_min", "p_std", "surprisal", "log_tokens", "n_labels", "agree_prev", "has_prev",
            "brightness", "contrast", "edge_density", "saturation")
STATE_FORMAT = "edgevlm-eval.laecips-clf/1"
EDGE_STEP = 32.0  # grey-level step (of 255) between neighbouring pixels that counts as an edge


@dataclass(frozen=True)
class LAECIPSClfKnobs(Knobs):
    clf_threshold: float = 0.5  # upload when P(hard) >= this
    clf_hard_f1: float = 0.5  # multi-label: a frame is hard when the SVLM's frame F1 is below this
    laecips_fallback: bool = True  # the SVLM answer stands when the LVLM is late (False: invalid)

    def validate(self):
        if not 0.0 <= self.clf_threshold < math.inf:  # above 1: never upload
            raise ConfigError(f"must be a number >= 0 (a probability; > 1 never uploads), got {self.clf_threshold}",
                              key="clf_threshold")
        if not 0.0 < self.clf_hard_f1 <= 1.0:
            raise ConfigError(f"must be in (0, 1], got {self.clf_hard_f1}", key="clf_hard_f1")


@functools.lru_cache(maxsize=8192)
def image_stats(path: str) -> tuple[float, float, float, float]:
    """(brightness, contrast, edge density, saturation) of an image, each in [0, 1]; zeros when it
    cannot be read (such a frame is invalid and never decided on)."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.width > 160:
                im = im.resize((160, max(1, round(im.height * 160 / im.width))), Image.BILINEAR)
            rgb = np.asarray(im, dtype=np.float32)
    except (OSError, ValueError, SyntaxError):
        return (0.0, 0.0, 0.0, 0.0)
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    dx = np.abs(np.diff(grey, axis=1)) > EDGE_STEP
    dy = np.abs(np.diff(grey, axis=0)) > EDGE_STEP
    edges = (dx.sum() + dy.sum()) / max(1, dx.size + dy.size)
    sat = (rgb.max(axis=2) - rgb.min(axis=2)).mean() / 255.0
    return (float(grey.mean() / 255.0), float(grey.std() / 255.0), float(edges), float(sat))


def features(svlm) -> list[float]:
    """The FEATURES of one SVLM answer (a SvlmResult)."""
    probs = list(svlm.answer_probs) if svlm.answer_probs is not None else []
    n = len(probs)
    conf = svlm.conf if svlm.conf is not None else (sum(p > 0.9 for p in probs) / n if n else 0.0)
    mean = sum(probs) / n if n else 0.0
    pmin = min(probs) if n else 0.0
    std = math.sqrt(sum((p - mean) ** 2 for p in probs) / n) if n else 0.0
    surprisal = sum(-math.log(max(p, 1e-6)) for p in probs) / n if n else 0.0
    labels = set(svlm.labels)
    if svlm.prev_labels is None:
        agree, has_prev = 0.0, 0.0
    else:
        prev = set(svlm.prev_labels)
        union = labels | prev
        agree, has_prev = (len(labels & prev) / len(union) if union else 1.0), 1.0
    img = image_stats(svlm.images[-1]) if svlm.images else (0.0, 0.0, 0.0, 0.0)
    return [float(conf), mean, pmin, std, surprisal, math.log1p(n), float(len(labels)), agree, has_prev, *img]


def frame_f1(pred, truth) -> float:
    p, t = set(pred or ()), set(truth or ())
    if not p and not t:
        return 1.0
    return 2 * len(p & t) / (len(p) + len(t))


def is_hard(line, task, hard_f1: float) -> bool:
    """Whether the SVLM alone was wrong on a frame of the SVLM-only calibration replay (module
    docstring); `line.pred` is that run's output (None: invalid)."""
    space = task.label_space
    if space.multi_label:
        return frame_f1(line.pred, line.truth) < hard_f1 - 1e-12
    if line.pred is None:
        return True
    empty = space.none_label if space.none_label is not None else None
    got = line.pred[0] if line.pred else empty
    want = line.truth[0] if line.truth else None
    return got != want


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def fit(X: list[list[float]], y: list[int], groups: list[str] | None = None) -> dict:
    """Standardise, fit the logistic regression, and measure it (training accuracy and AUC, and a
    2-fold AUC with the calibration streams split in halves by id when both halves have both
    classes). With a single class the model is its prior (no coefficient)."""
    import numpy as np

    Xa = np.asarray(X, dtype=np.float64)
    ya = np.asarray(y, dtype=np.int64)
    mean = Xa.mean(axis=0) if len(Xa) else np.zeros(len(FEATURES))
    scale = Xa.std(axis=0) if len(Xa) else np.ones(len(FEATURES))
    scale = np.where(scale > 1e-12, scale, 1.0)
    state = {"format": STATE_FORMAT, "model": "logistic regression (scikit-learn lbfgs, C=1, standardised)",
             "features": list(FEATURES), "mean": mean.tolist(), "scale": scale.tolist(), "n": int(len(ya)),
             "hard": int(ya.sum())}
    if len(ya) == 0 or ya.min() == ya.max():
        prior = float(ya.mean()) if len(ya) else 0.5
        prior = min(max(prior, 1e-6), 1 - 1e-6)
        state.update(coef=[0.0] * len(FEATURES), intercept=math.log(prior / (1 - prior)),
                     note="one class only in the calibration split: the model is its prior")
        return state
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    def train(idx):
        m = LogisticRegression(C=1.0, max_iter=5000)
        m.fit((Xa[idx] - mean) / scale, ya[idx])
        return m

    allidx = np.arange(len(ya))
    m = train(allidx)
    z = (Xa - mean) / scale
    p = m.predict_proba(z)[:, 1]
    state.update(coef=[float(c) for c in m.coef_[0]], intercept=float(m.intercept_[0]),
                 train_accuracy=float(((p >= 0.5) == (ya == 1)).mean()), train_auc=float(roc_auc_score(ya, p)))
    if groups is not None:
        ids = sorted(set(groups))
        half = set(ids[::2])
        fold = np.array([g in half for g in groups])
        aucs = []
        for test in (fold, ~fold):
            tr = ~test
            if ya[tr].min() == ya[tr].max() or ya[test].min() == ya[test].max():
                aucs = []
                break
            mt = train(np.flatnonzero(tr))
            aucs.append(float(roc_auc_score(ya[test], mt.predict_proba(z[test])[:, 1])))
        if aucs:
            state["cv_auc_by_stream"] = sum(aucs) / len(aucs)
    return state


def predict(state: dict, x: list[float]) -> float:
    """P(hard) of one feature vector under a fitted state."""
    z = state["intercept"] + sum(c * (v - m) / s for c, v, m, s in zip(state["coef"], x, state["mean"], state["scale"]))
    return _sigmoid(z)


class LAECIPSClf(LAECIPSBase):
    name = "laecips-clf"
    order = 55
    label = "LAECIPS classifier"
    proxy = True
    source = ("LAECIPS as the edgeVLM paper describes it (§2, §4.3.1): a pretrained task-difficulty classifier; "
              "features and model are this toolkit's (docs/method.md), fitted on the task's calibration split")
    colour = "#98df8a"
    Knobs = LAECIPSClfKnobs
    needs = Needs(logprobs=True, calibration=True)
    lcr_knob = LcrKnob("clf_threshold", direction=-1, by_score=True)

    @classmethod
    def calibrate(cls, lines, streams, task, knobs) -> dict:
        X, y, groups = [], [], []
        for ln, r in zip(lines, svlm_results(lines, streams)):
            if r is None or not r.ok or not ln.scored:
                continue
            X.append(features(r))
            y.append(int(is_hard(ln, task, knobs.clf_hard_f1)))
            groups.append(ln.stream)
        state = fit(X, y, groups)
        state["hard_rule"] = (f"frame F1 < {knobs.clf_hard_f1:g}" if task.label_space.multi_label
                              else "wrong label (invalid = wrong)")
        return state

    def _state(self) -> dict:
        st = self.calibration
        if not st or st.get("format") != STATE_FORMAT:
            raise ConfigError("laecips-clf has no fitted classifier: it is trained on the task's calibration split "
                              "before the run (docs/method.md); give the task a `calibration:` key", key="--strategy")
        return st

    def score(self, svlm):
        if not svlm.ok:
            return 1.0
        return predict(self._state(), features(svlm))

    def decide_after(self, st, t, svlm):
        if self.score(svlm) >= self.knobs.clf_threshold:
            return True, "hard"
        return False, "easy"
