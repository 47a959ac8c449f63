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



@dataclass(frozen=True)
class MetricInfo:
    """A metric as tables and plots show it (the one registry: results, leaderboard, plots)."""

    name: str
    label: str  # as the paper's tables write it
    kind: str  # "multi" (label sets) | "single" (one label per frame)
    higher_is_better: bool = True


METRICS: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("micro_f1", "Micro-F1", "multi"),
    MetricInfo("macro_f1", "Macro-F1", "multi"),
    MetricInfo("exact_match", "0-1 EM", "multi"),
    MetricInfo("accuracy", "Acc", "single"),
    MetricInfo("macro_f1_all", "Macro-F1 (all labels)", "multi"),
)}  # in display order
MULTI_LABEL_METRICS = tuple(m for m, i in METRICS.items() if i.kind == "multi" and m != "macro_f1_all")
SINGLE_LABEL_METRICS = tuple(m for m, i in METRICS.items() if i.kind == "single")
KNOWN_METRICS = tuple(METRICS)


def metric_label(name: str) -> str:
    return METRICS[name].label if name in METRICS else name


def metric_order(names) -> list[str]:
    """Known metrics in display order, then the others sorted."""
    names = set(names)
    return [m for m in METRICS if m in names] + sorted(names - set(METRICS))


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
