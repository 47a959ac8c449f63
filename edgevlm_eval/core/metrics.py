"""Task metrics (method.md §5), computed with scikit-learn.

Values are fractions in [0, 1] (tables print them as percent). An invalid output (late, missing,
failed, unreadable image) is an empty set for multi-label tasks and a wrong label for
single-label tasks. Frames with `scored=False` are not passed in here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from edgevlm_eval.core.labels import LabelSpace

MULTI_LABEL_METRICS = ("micro_f1", "macro_f1", "exact_match")
SINGLE_LABEL_METRICS = ("accuracy",)
KNOWN_METRICS = MULTI_LABEL_METRICS + SINGLE_LABEL_METRICS + ("macro_f1_all",)


@dataclass(frozen=True)
class Scored:
    """One scored frame: ground truth and prediction (None = invalid output)."""

    truth: tuple[str, ...]
    pred: tuple[str, ...] | None


def _binarize(sets: Sequence[Sequence[str]], names: Sequence[str]) -> np.ndarray:
    col = {n: i for i, n in enumerate(names)}
    y = np.zeros((len(sets), len(names)), dtype=np.int8)
    for r, s in enumerate(sets):
        for lab in s:
            if lab in col:  # labels outside the space (none_label) stay all-zero
                y[r, col[lab]] = 1
    return y


def compute(items: Sequence[Scored], space: LabelSpace, metrics: Sequence[str]) -> dict:
    """Metrics over `items`. Returns {metric: value, ..., 'n': frames, 'n_invalid': ...,
    'macro_f1_labels': the labels Macro-F1 averaged over}."""
    unknown = [m for m in metrics if m not in KNOWN_METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {list(KNOWN_METRICS)}")
    out: dict = {"n": len(items), "n_invalid": sum(it.pred is None for it in items)}
    if not items:
        for m in metrics:
            out[m] = None
        return out
    truth = [it.truth for it in items]
    pred = [it.pred or () for it in items]
    if space.multi_label:
        yt, yp = _binarize(truth, space.names), _binarize(pred, space.names)
        present = [i for i in range(len(space.names)) if yt[:, i].any()]
        for m in metrics:
            if m == "micro_f1":
                out[m] = float(f1_score(yt, yp, average="micro", zero_division=0))
            elif m == "macro_f1":
                # Over labels present in the split's ground truth (method.md §5).
                out[m] = float(f1_score(yt, yp, average="macro", labels=present, zero_division=0)) if present else None
                out["macro_f1_labels"] = [space.names[i] for i in present]
            elif m == "macro_f1_all":
                out[m] = float(f1_score(yt, yp, average="macro", labels=list(range(len(space.names))), zero_division=0))
            elif m == "exact_match":
                out[m] = float(np.mean([set(t) == set(p) for t, p in zip(truth, pred)]))
            elif m == "accuracy":
                raise ValueError("accuracy is a single-label metric; this task is multi-label")
    else:
        # One label per frame; an invalid prediction is a wrong answer. A valid answer that names no
        # label ("nothing") predicts the space's none_label when it has one (ACE with score_none).
        empty = space.none_label if space.none_label is not None else "\x00empty"
        t = [tt[0] if tt else "" for tt in truth]
        p = ["\x00invalid" if it.pred is None else (it.pred[0] if it.pred else empty) for it in items]
        for m in metrics:
            if m == "accuracy":
                out[m] = float(accuracy_score(t, p))
            else:
                raise ValueError(f"{m} is a multi-label metric; this task is single-label")
    return out
