"""The grounding prompt and reply parser (edgevlm_eval/grounding.py)."""

from __future__ import annotations

import pytest

from edgevlm_eval.core.grounding import grounding_prompt, map_to_space, parse_grounding, qwen_resized_size, to_original
from edgevlm_eval.core.labels import LabelSpace
from edgevlm_eval.core.types import Box

SPACE = LabelSpace(names=["car", "pedestrian", "traffic cone"], synonyms={"pedestrian": ["person", "people"]})


def test_well_formed_json_norm1000():
    text = ('<answer>car, pedestrian</answer>\n'
            '[{"bbox_2d": [100, 200, 300, 400], "label": "car"}, {"bbox_2d": [500, 500, 600, 1000], "label": "pedestrian"}]')
    g = parse_grounding(text, (1600, 900), coords="norm1000")
    assert g.answer == "car, pedestrian"
    assert g.boxes == (Box("car", 160, 180, 480, 360), Box("pedestrian", 800, 450, 960, 900))
    assert g.raw_boxes == 2


def test_fenced_json_qwen_absolute_of_resized_image():
    # 1600x900 is shown to Qwen2.5-VL as 1596x896 (checkpoint limits): map back by 1600/1596, 900/896.
    text = 'Found a car.\n```json\n[\n  {"bbox_2d": [399, 224, 798, 448], "label": "car"}\n]\n```'
    g = parse_grounding(text, (1600, 900), coords="qwen_abs", resized_size=qwen_resized_size(1600, 900))
    (b,) = g.boxes
    assert (b.x1, b.y1, b.x2, b.y2) == pytest.approx((400, 225, 800, 450))
    assert g.answer == "Found a car."


def test_truncated_json_keeps_complete_boxes():
    text = ('```json\n[{"bbox_2d": [0, 0, 10, 10], "label": "car"}, {"bbox_2d": [20, 20, 60, 60], "label": "car"}, '
            '{"bbox_2d": [1, 2, 3')
    g = parse_grounding(text, (100, 100), coords="abs")
    # two complete 'car' boxes: the largest per label is kept; the cut-off third box is ignored
    assert g.boxes == (Box("car", 20, 20, 60, 60),)
    assert g.raw_boxes == 2
    # the answer falls back to the boxes' labels when the text names nothing else
    assert g.answer == "car"
    # cut off after the numbers but before the label: a box without label is kept with label ""
    g2 = parse_grounding('[{"bbox_2d": [10, 10, 50, 50], "lab', (100, 100), coords="abs")
    assert g2.boxes == (Box("", 10, 10, 50, 50),)


def test_empty_and_no_box_replies():
    for text in ("", "[]", "```json\n[]\n```", "<answer>nothing</answer>", None):
        g = parse_grounding(text, (100, 100), coords="norm1000")
        assert g.boxes == () and g.raw_boxes == 0
    assert parse_grounding("<answer>nothing</answer>", (10, 10)).answer == "nothing"


def test_vlm_r1_answer_tags_last_answer_wins():
    text = ('<think>I see <answer>wrong</answer> maybe</think> '
            '<answer>```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "traffic cone"}]\n```</answer>')
    g = parse_grounding(text, (200, 100), coords="qwen_abs", resized_size=(200, 100))
    assert g.answer == "traffic cone"
    assert g.boxes == (Box("traffic cone", 10, 20, 30, 40),)


def test_paper_roi_tags_and_norm1():
    g = parse_grounding("<answer>car</answer><ROI>(car, 0.1, 0.2, 0.5, 0.6)</ROI>", (200, 100), coords="norm1")
    assert g.boxes == (Box("car", 20, 20, 100, 60),)


def test_coordinates_ordered_and_clipped():
    assert to_original([50, 60, 10, 20], "abs", (100, 100)) == (10, 20, 50, 60)
    assert to_original([-10, -5, 150, 80], "abs", (100, 100)) == (0, 0, 100, 80)
    assert to_original([10, 10, 10, 50], "abs", (100, 100)) is None
    with pytest.raises(ValueError, match="resized"):
        to_original([1, 2, 3, 4], "qwen_abs", (100, 100))
    with pytest.raises(ValueError, match="coords"):
        to_original([1, 2, 3, 4], "pixels", (100, 100))


def test_label_space_mapping():
    text = ('[{"bbox_2d": [0, 0, 10, 10], "label": "people"}, {"bbox_2d": [0, 0, 50, 50], "label": "person"}, '
            '{"bbox_2d": [0, 0, 5, 5], "label": "dog"}]')
    g = parse_grounding(text, (100, 100), coords="abs", label_space=SPACE)
    assert g.boxes == (Box("pedestrian", 0, 0, 50, 50),)
    assert g.unmapped == ("dog",)
    assert g.labels == ("pedestrian",)  # from the boxes: the text has no answer besides them
    g2 = parse_grounding("<answer>cars and a cone</answer>", (100, 100), label_space=SPACE)
    assert g2.labels == ("car",)  # 'cone' alone is not a label of the space; 'traffic cone' is
    assert map_to_space([Box("Cars", 0, 0, 1, 1), Box("bird", 0, 0, 9, 9)], SPACE) == (Box("car", 0, 0, 1, 1),)


def test_prompt_names_the_convention():
    assert "0-1000" in grounding_prompt("Which objects?", "norm1000")
    p = grounding_prompt("Which objects?", "qwen_abs")
    assert p.startswith("Which objects?") and "bbox_2d" in p and "<answer>" in p
    with pytest.raises(ValueError):
        grounding_prompt("q", "cells")
