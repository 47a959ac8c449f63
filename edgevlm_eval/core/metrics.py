"""Task metrics (method.md §5).

Values are fractions in [0, 1] (tables print them as percent). An invalid output (late, missing,
failed, unreadable image) is an empty set for multi-label tasks and a wrong label for
single-label tasks, and never an exact match (not even on a frame whose truth is empty).
Frames with `scored=False` are not passed in here.

F1 scores come from per-label counts of true positives, false positives and false negatives
(numpy): the same numbers as scikit-learn's `f1_score(..., zero_division=0)` on the binarised
label matrix (checked in tests/test_metrics.py), at a fraction of the cost, which the bootstrap's
thousands of recomputations notice.

Macro-F1 averages per-label F1 over a label set chosen by `macro_f1_label_set` (docs/results.md):
  gt     the labels present in the ground truth of the scored frames;
  union  the labels present in the ground truth or in any prediction: a hallucinated class that
         never occurs costs an F1 of 0; a label neither true nor predicted anywhere (its F1 is
         undefined) is left out. This is the default.
  all    every label of the task's space; a label neither true nor predicted counts as 0.
On a split where every label occurs in the ground truth (nuScenes val, BDD100K val) the three agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

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
MACRO_F1_LABEL_SETS = ("gt", "union", "all")
DEFAULT_MACRO_F1_LABEL_SET = "union"


@dataclass(frozen=True)
class Scored:
    """One scored frame: ground truth and prediction (None = invalid output)."""

    truth: tuple[str, ...]
    pred: tuple[str, ...] | None


def check_macro_f1_label_set(value) -> str:
    """The label-set name, or a ValueError naming the allowed values."""
    if value not in MACRO_F1_LABEL_SETS:
        raise ValueError(f"macro_f1_label_set must be one of {', '.join(MACRO_F1_LABEL_SETS)}; got {value!r}")
    return value


def _binarize(sets: Sequence[Sequence[str]], names: Sequence[str]) -> np.ndarray:
    col = {n: i for i, n in enumerate(names)}
    y = np.zeros((len(sets), len(names)), dtype=bool)
    for r, s in enumerate(sets):
        for lab in s:
            i = col.get(lab)
            if i is not None:  # labels outside the space (none_label) stay all-zero
                y[r, i] = True
    return y


def _per_label_f1(yt: np.ndarray, yp: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """F1 of each label (nan where it is neither true nor predicted anywhere) and the summed
    TP, FP, FN."""
    tp = (yt & yp).sum(axis=0)
    fp = (yp & ~yt).sum(axis=0)
    fn = (yt & ~yp).sum(axis=0)
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(den > 0, 2 * tp / np.maximum(den, 1), np.nan)
    return f1, den, int(tp.sum()), int(fp.sum()), int(fn.sum())


def compute(items: Sequence[Scored], space: LabelSpace, metrics: Sequence[str], *,
            macro_f1_label_set: str | None = None) -> dict:
    """Metrics over `items`. Returns {metric: value, ..., 'n': frames, 'n_invalid': ...} and,
    for multi-label tasks, 'per_class_f1' ({label: F1, or None where the label is neither true
    nor predicted}) and, when macro_f1 is asked for, 'macro_f1_label_set' (the convention) and
    'macro_f1_labels' (the labels it averaged over); for single-label tasks 'per_class_recall'
    ({label: share of its frames answered with it, or None where it has no frame}).
    `macro_f1_label_set`: gt | union | all (None: DEFAULT_MACRO_F1_LABEL_SET)."""
    unknown = [m for m in metrics if m not in KNOWN_METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {list(KNOWN_METRICS)}")
    label_set = check_macro_f1_label_set(macro_f1_label_set or DEFAULT_MACRO_F1_LABEL_SET)
    if space.multi_label and "accuracy" in metrics:
        raise ValueError("accuracy is a single-label metric; this task is multi-label")
    if not space.multi_label:
        wrong = [m for m in metrics if m != "accuracy"]
        if wrong:
            raise ValueError(f"{wrong[0]} is a multi-label metric; this task is single-label")
    out: dict = {"n": len(items), "n_invalid": sum(it.pred is None for it in items)}
    for m in metrics:
        out[m] = None
    if space.multi_label:
        _multi_label(items, space, metrics, label_set, out)
    else:
        _single_label(items, space, metrics, out)
    return out


def _multi_label(items: Sequence[Scored], space: LabelSpace, metrics: Sequence[str], label_set: str,
                 out: dict) -> None:
    names = space.names
    if "macro_f1" in metrics:
        out["macro_f1_label_set"] = label_set
        out["macro_f1_labels"] = []
    if not items:
        out["per_class_f1"] = {n: None for n in names}
        return
    yt = _binarize([it.truth for it in items], names)
    yp = _binarize([it.pred or () for it in items], names)
    f1, den, tp, fp, fn = _per_label_f1(yt, yp)
    out["per_class_f1"] = {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, f1)}
    f1_0 = np.nan_to_num(f1, nan=0.0)  # undefined -> 0, as zero_division=0 scores it
    for m in metrics:
        if m == "micro_f1":
            out[m] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        elif m == "macro_f1":
            if label_set == "gt":
                cols = np.flatnonzero(yt.any(axis=0))
            elif label_set == "union":
                cols = np.flatnonzero(den > 0)  # true or predicted somewhere
            else:
                cols = np.arange(len(names))
            out[m] = float(f1_0[cols].mean()) if len(cols) else None
            out["macro_f1_labels"] = [names[i] for i in cols]
        elif m == "macro_f1_all":
            out[m] = float(f1_0.mean()) if len(names) else None
        elif m == "exact_match":
            # An invalid output is never an exact match, even where the truth is empty.
            out[m] = sum(it.pred is not None and set(it.truth) == set(it.pred) for it in items) / len(items)


def _single_label(items: Sequence[Scored], space: LabelSpace, metrics: Sequence[str], out: dict) -> None:
    # One label per frame; an invalid prediction is a wrong answer. A valid answer that names no
    # label ("nothing") predicts the space's none_label when it has one (ACE with score_none).
    empty = space.none_label if space.none_label is not None else "\x00empty"
    t = [tt[0] if tt else "" for tt in (it.truth for it in items)]
    p = ["\x00invalid" if it.pred is None else (it.pred[0] if it.pred else empty) for it in items]
    right = [a == b for a, b in zip(t, p)]
    classes = list(space.names) + ([space.none_label] if space.none_label and space.none_label in t else [])
    recall: dict[str, float | None] = {}
    for c in classes:
        hits = [r for a, r in zip(t, right) if a == c]
        recall[c] = sum(hits) / len(hits) if hits else None
    out["per_class_recall"] = recall
    if "accuracy" in metrics and items:
        out["accuracy"] = sum(right) / len(items)
