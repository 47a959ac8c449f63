import pytest

from edgevlm_eval.core.labels import LabelSpace
from edgevlm_eval.core.metrics import Scored, compute

SPACE = LabelSpace(names=["car", "truck", "pedestrian", "bicycle"])


def items():
    return [
        Scored(("car", "pedestrian"), ("car",)),
        Scored(("truck",), ("truck", "bicycle")),
        Scored(("car",), None),  # invalid output: an empty set
        Scored(("car", "truck"), ("truck", "car")),
    ]


def test_multilabel_by_hand():
    m = compute(items(), SPACE, ["micro_f1", "macro_f1", "exact_match", "macro_f1_all"])
    # TP=4 (car x2, truck x2), FP=1 (bicycle), FN=2 (pedestrian, car of the invalid frame)
    assert m["micro_f1"] == pytest.approx(8 / 11)
    # per label F1: car 2*2/(2*2+0+1)=0.8, truck 1.0, pedestrian 0.0; bicycle absent from truth
    assert m["macro_f1"] == pytest.approx((0.8 + 1.0 + 0.0) / 3)
    assert m["macro_f1_labels"] == ["car", "truck", "pedestrian"]
    assert m["macro_f1_all"] == pytest.approx((0.8 + 1.0 + 0.0 + 0.0) / 4)
    assert m["exact_match"] == pytest.approx(0.25)
    assert m["n"] == 4 and m["n_invalid"] == 1


def test_invalid_counts_as_empty_not_skipped():
    m = compute([Scored(("car",), None)], SPACE, ["micro_f1", "exact_match"])
    assert m["micro_f1"] == 0.0 and m["exact_match"] == 0.0
    # an empty truth with an empty (invalid) prediction is an exact match
    m = compute([Scored((), None)], SPACE, ["exact_match"])
    assert m["exact_match"] == 1.0


def test_single_label_accuracy():
    s = LabelSpace(names=["a", "b", "c"], multi_label=False)
    m = compute([Scored(("a",), ("a",)), Scored(("b",), None), Scored(("c",), ("b",)), Scored(("a",), ())],
                s, ["accuracy"])
    assert m["accuracy"] == pytest.approx(0.25)
    assert m["n_invalid"] == 1


def test_metric_kind_mismatch_and_unknown():
    with pytest.raises(ValueError, match="single-label"):
        compute(items(), SPACE, ["accuracy"])
    with pytest.raises(ValueError, match="unknown metrics"):
        compute(items(), SPACE, ["bleu"])


def test_empty_input():
    m = compute([], SPACE, ["micro_f1"])
    assert m["micro_f1"] is None and m["n"] == 0


def test_single_label_none_label_scored():
    # ACE with score_none: a valid empty answer predicts "none"; an invalid one is still wrong.
    s = LabelSpace(names=["breaking", "mixing"], multi_label=False, none_label="none")
    m = compute([Scored(("none",), ()), Scored(("none",), None), Scored(("mixing",), ()),
                 Scored(("breaking",), ("breaking",))], s, ["accuracy"])
    assert m["accuracy"] == pytest.approx(0.5)
    # without a none_label, an empty answer is never right
    s2 = LabelSpace(names=["a", "b"], multi_label=False)
    assert compute([Scored(("a",), ())], s2, ["accuracy"])["accuracy"] == 0.0
