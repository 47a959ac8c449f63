"""Answers parsed as a reader would: hand-written replies in the styles of the models the paper
uses, each with the labels a person reading it would write down.

Multi-object cases use the real nuScenes task (tasks/nuscenes.yaml: its 10 classes and synonyms);
single-label cases the real IPN Hand and ACE tasks. None of the expected values was produced by
the parser: each was written from the reply alone.
"""

from __future__ import annotations

import pytest

from edgevlm_eval.tasks import load_task

NUS = load_task("nuscenes").label_space
IPN = load_task("ipn_hand").label_space
ACE = load_task("ace").label_space

# (style, reply, expected labels as a set)
NUSCENES_CASES = [
    # -- Qwen2.5-VL: terse comma lists, sometimes grounding JSON ---------------------------------
    ("qwen", "car, pedestrian, traffic cone", {"car", "pedestrian", "traffic cone"}),
    ("qwen", "car, truck, no bus", {"car", "truck"}),
    ("qwen", "Car, bus, pedestrian.", {"car", "bus", "pedestrian"}),
    ("qwen", "none", set()),
    ("qwen", "cars, trucks, barriers, traffic cones", {"car", "truck", "barrier", "traffic cone"}),
    ("qwen", "pedestrian, bicycle, motorcycle, no car", {"pedestrian", "bicycle", "motorcycle"}),
    ("qwen", "car, truck, bus, no trailer, no construction vehicle", {"car", "truck", "bus"}),
    ("qwen", "car,truck,trailer", {"car", "truck", "trailer"}),
    ("qwen", "motorcycle; bicycle; pedestrian", {"motorcycle", "bicycle", "pedestrian"}),
    ("qwen", "car, car, car, truck", {"car", "truck"}),
    ("qwen", "car, truck, no bus, pedestrian", {"car", "truck", "pedestrian"}),
    ("qwen", '```json\n[\n\t{"bbox_2d": [412, 301, 590, 402], "label": "car"},\n'
             '\t{"bbox_2d": [102, 288, 131, 360], "label": "pedestrian"},\n'
             '\t{"bbox_2d": [640, 350, 661, 389], "label": "traffic cone"}\n]\n```',
     {"car", "pedestrian", "traffic cone"}),
    ("qwen", '[{"bbox_2d": [10, 20, 200, 180], "label": "van"}, '
             '{"bbox_2d": [300, 150, 420, 260], "label": "person"}]', {"car", "pedestrian"}),
    # cut at the token limit: the fence and the list never close
    ("qwen", '```json\n[\n\t{"bbox_2d": [12, 40, 300, 220], "label": "bus"},\n\t{"bbox_2d": [310, 60, 480, 2',
     {"bus"}),
    ("qwen", "construction vehicle, barrier, traffic cone, no pedestrian", {"construction vehicle", "barrier",
                                                                            "traffic cone"}),
    # -- GPT-4o: full sentences, hedges, markdown ------------------------------------------------
    ("gpt4o", "In this image, I can see several cars and a pedestrian crossing the street. "
              "There are no trucks or buses visible.", {"car", "pedestrian"}),
    ("gpt4o", "The image shows a construction zone with traffic cones and barriers. I cannot see any trucks, "
              "but there is a bus in the distance.", {"traffic cone", "barrier", "bus"}),
    ("gpt4o", "There is no truck in the image; I see a car and two cyclists.", {"car", "bicycle"}),
    ("gpt4o", "Here's what I can identify in the image:\n\n"
              "- **Cars**: Several cars are parked along the street.\n"
              "- **Pedestrians**: A few people are walking on the sidewalk.\n"
              "- **Traffic cones**: None visible.\n"
              "- **Trucks**: Not present.", {"car", "pedestrian"}),
    ("gpt4o", "**Present:**\n- Car\n- Bus\n- Pedestrian\n\n**Not present:**\n- Truck\n- Trailer\n"
              "- Construction vehicle\n- Motorcycle\n- Bicycle\n- Traffic cone\n- Barrier",
     {"car", "bus", "pedestrian"}),
    ("gpt4o", "The following categories appear in the image: car, truck, barrier. "
              "Categories not present: bus, trailer, pedestrian.", {"car", "truck", "barrier"}),
    ("gpt4o", "It looks like there are cars and a truck on the road. There don't appear to be any pedestrians, "
              "bicycles, or motorcycles.", {"car", "truck"}),
    ("gpt4o", "I can see a bus and some cars, but no pedestrians.", {"bus", "car"}),
    ("gpt4o", "The scene contains a car. Neither a truck nor a bus is visible.", {"car"}),
    ("gpt4o", "There are no pedestrians, cyclists, or motorcycles in this image. The road has a few cars and a "
              "trailer.", {"car", "trailer"}),
    ("gpt4o", "Yes, there is a truck. However, I don't see any cars.", {"truck"}),
    ("gpt4o", "Based on the image, the following objects are visible:\n1. Car\n2. Traffic cone\n3. Barrier\n\n"
              "No trucks, buses, or pedestrians are visible.", {"car", "traffic cone", "barrier"}),
    ("gpt4o", "There are cars and a bus, while trucks and trailers are absent.", {"car", "bus"}),
    ("gpt4o", "I see a car on the left and a motorcycle. There isn't any bicycle or barrier.", {"car", "motorcycle"}),
    ("gpt4o", "Car: yes\nTruck: no\nBus: no\nTrailer: no\nConstruction vehicle: no\nPedestrian: yes\n"
              "Motorcycle: no\nBicycle: no\nTraffic cone: yes\nBarrier: no", {"car", "pedestrian", "traffic cone"}),
    ("gpt4o", "| Category | Present |\n|---|---|\n| Car | Yes |\n| Truck | No |\n| Pedestrian | Yes |\n| Bus | No |",
     {"car", "pedestrian"}),
    ("gpt4o", "The image shows a rainy street. There's a white van parked on the right, a man holding an umbrella, "
              "and a bicycle leaning against a barrier.", {"car", "pedestrian", "bicycle", "barrier"}),
    ("gpt4o", "No construction vehicles are visible, although there are several traffic cones and a barrier, "
              "suggesting roadwork.", {"traffic cone", "barrier"}),
    ("gpt4o", "There are no vehicles other than a bus.", {"bus"}),
    ("gpt4o", "I don't see any pedestrians, but I do see a cyclist riding alongside two cars.", {"bicycle", "car"}),
    ("gpt4o", "Absent: truck, trailer, construction vehicle.\nPresent: car, pedestrian.", {"car", "pedestrian"}),
    ("gpt4o", "The image does not contain any trucks or buses; it shows several cars and a motorcycle.",
     {"car", "motorcycle"}),
    ("gpt4o", "I cannot identify any of the listed categories in this image.", set()),
    ("gpt4o", "The truck is not a bus; it's a tow truck.", {"truck"}),
    ("gpt4o", '{"car": true, "truck": false, "bus": false, "pedestrian": true}', {"car", "pedestrian"}),
    ("gpt4o", "There are no trucks or buses here, only cars and a few traffic cones.", {"car", "traffic cone"}),
    ("gpt4o", "Trucks, buses and trailers are not present in this image, but a motorcycle is.", {"motorcycle"}),
    ("gpt4o", "The categories present are: **car**, **pedestrian**.\n\nThe categories **not present** are: truck, "
              "bus, trailer, construction vehicle, motorcycle, bicycle, traffic cone, barrier.",
     {"car", "pedestrian"}),
    # -- VLM-R1: the think part names classes the answer leaves out -----------------------------
    ("vlm-r1", "<think>The image shows a street with a car in the foreground. There is something that could be a "
               "truck in the background, but on closer inspection it is a bus. No pedestrians.</think>\n"
               "<answer>car, bus</answer>", {"car", "bus"}),
    ("vlm-r1", "<think>I see a traffic cone and a barrier. There might be a pedestrian, but it's just a pole."
               "</think><answer>traffic cone, barrier</answer>", {"traffic cone", "barrier"}),
    ("vlm-r1", "<think>Let me check each category. car: yes. truck: yes, a large one on the left. bus: no.</think>\n"
               "<answer>car, truck</answer>", {"car", "truck"}),
    ("vlm-r1", "<think>There are trucks and trailers parked, and a motorcycle.</think><answer>none</answer>", set()),
    ("vlm-r1", "<think>The pedestrian is walking a bicycle. There are no cars.</think>"
               "<answer>pedestrian, bicycle, no car</answer>", {"pedestrian", "bicycle"}),
    ("vlm-r1", "<think>Looking at the image carefully, I notice a construction vehicle (an excavator) and some "
               "barriers. I don't see any trucks.</think> <answer>construction vehicle, barrier</answer>",
     {"construction vehicle", "barrier"}),
    ("vlm-r1", "<think>A bus and a truck are visible. The truck is towing a trailer.</think>\n"
               "<answer>bus, truck, trailer</answer>", {"bus", "truck", "trailer"}),
    # -- MiniCPM-o: short sentences -----------------------------------------------------------------
    ("minicpm", "There is a car and a pedestrian.", {"car", "pedestrian"}),
    ("minicpm", "A bus is driving on the road.", {"bus"}),
    ("minicpm", "I see cars and a truck.", {"car", "truck"}),
    ("minicpm", "There are no vehicles in the image.", set()),
    ("minicpm", "There are two cars and a traffic cone, but no barrier.", {"car", "traffic cone"}),
    ("minicpm", "The image shows a motorcycle parked next to a bicycle.", {"motorcycle", "bicycle"}),
    ("minicpm", "Only pedestrians.", {"pedestrian"}),
    ("minicpm", "There is a truck with a trailer.", {"truck", "trailer"}),
    ("minicpm", "There is a truck without a trailer.", {"truck"}),
    ("minicpm", "There is a car and no truck.", {"car"}),
    ("minicpm", "I see a car, no trucks, buses or trailers.", {"car"}),
]

# (task, style, reply, expected label or None for an answer that names no label)
SINGLE_LABEL_CASES = [
    ("ipn_hand", "qwen", "zoom in", "zoom in"),
    ("ipn_hand", "minicpm", "The person is pointing with one finger.", "pointing with one finger"),
    ("ipn_hand", "qwen", "Double click with two fingers.", "double click with two fingers"),
    ("ipn_hand", "gpt4o", "The gesture is a throw up, not a throw down.", "throw up"),
    ("ipn_hand", "gpt4o", "It is not a zoom in; it's a zoom out gesture.", "zoom out"),
    ("ipn_hand", "minicpm", "There is no gesture being performed.", "non-gesture"),
    ("ipn_hand", "qwen", "No gesture", "non-gesture"),
    ("ipn_hand", "gpt4o", "The hand opens twice, so the gesture is open twice.", "open twice"),
    ("ipn_hand", "vlm-r1", "<think>The index finger moves down twice quickly, like a double click. It is not "
                           "pointing with two fingers.</think><answer>double click with one finger</answer>",
     "double click with one finger"),
    ("ipn_hand", "qwen", "Click with one finger (G01).", "click with one finger"),
    ("ipn_hand", "gpt4o", "The person appears to be pointing with two fingers rather than clicking with one finger.",
     "pointing with two fingers"),
    ("ipn_hand", "minicpm", "Not throw left, it is throw right.", "throw right"),
    ("ipn_hand", "gpt4o", "The person is not pointing with one finger; the gesture is click with one finger.",
     "click with one finger"),
    ("ipn_hand", "vlm-r1", "<think>The hand moves upward, not to the left.</think><answer>throw up</answer>",
     "throw up"),
    ("ace", "qwen", "breaking", "breaking"),
    ("ace", "minicpm", "The chef is cracking an egg into a bowl.", "breaking"),
    ("ace", "minicpm", "The chef is stirring the eggs in a bowl.", "mixing"),
    ("ace", "gpt4o", "The chef isn't cutting anything; they are peeling a boiled egg.", "peeling"),
    ("ace", "gpt4o", "The chef is frying an egg in the pan, not boiling it.", "baking"),
    ("ace", "gpt4o", "Seasoning: the chef is sprinkling salt on the omelette.", "seasoning"),
    ("ace", "gpt4o", "The chef is neither cutting nor mixing; he is flipping the omelette.", "turning"),
    ("ace", "vlm-r1", "<think>The chef holds a knife, but he is not cutting. He is adding salt.</think>"
                      "<answer>seasoning</answer>", "seasoning"),
    ("ace", "gpt4o", "The chef is not doing any of these actions.", None),
    ("ace", "qwen", "Action: boiling", "boiling"),
]

SPACES = {"ipn_hand": IPN, "ace": ACE}


def test_the_set_is_large_enough():
    assert len(NUSCENES_CASES) + len(SINGLE_LABEL_CASES) >= 60
    styles = {c[0] for c in NUSCENES_CASES} | {c[1] for c in SINGLE_LABEL_CASES}
    assert styles == {"qwen", "gpt4o", "vlm-r1", "minicpm"}


@pytest.mark.parametrize("style,reply,expected", NUSCENES_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(NUSCENES_CASES)])
def test_nuscenes_reply(style, reply, expected):
    p = NUS.parse(reply)
    assert set(p.labels) == expected, reply
    assert len(p.labels) == len(expected)  # no label twice


@pytest.mark.parametrize("task,style,reply,expected", SINGLE_LABEL_CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(SINGLE_LABEL_CASES)])
def test_single_label_reply(task, style, reply, expected):
    p = SPACES[task].parse(reply)
    assert p.labels == ((expected,) if expected else ()), reply
    if expected is None:
        assert p.empty


def test_brief_examples_and_what_is_denied():
    p = NUS.parse("car, truck, no bus")
    assert p.labels == ("car", "truck") and p.negated == ("bus",) and p.unmapped == ()
    p = NUS.parse("There is no truck in the image; I see a car")
    assert p.labels == ("car",) and p.negated == ("truck",)
    p = NUS.parse("I cannot see any trucks, but there is a bus")
    assert p.labels == ("bus",) and p.negated == ("truck",)


def test_negated_items_are_not_unmapped_but_unknown_words_still_are():
    p = NUS.parse("car, no dogs, spaceship, without any animals")
    assert p.labels == ("car",)
    assert p.unmapped == ("spaceship",)
    p = NUS.parse("There are no trucks or giraffes.")
    assert p.labels == () and p.unmapped == () and p.empty


def test_affirmed_and_denied_counts_as_present():
    # presence is existential: any positive mention wins, wherever it is
    assert NUS.parse("A car on the left, no car on the right.").labels == ("car",)
    assert NUS.parse("There's no bus, but there is a school bus.").labels == ("bus",)
    assert NUS.parse("No cars. Actually, I see a car.").labels == ("car",)


def test_negation_words_inside_label_phrases():
    # IPN's non-gesture class is spelt with "no" / "not": the label wins over the negation
    assert IPN.parse("not a gesture").labels == ("non-gesture",)
    assert IPN.parse("There is no hand gesture, the hand rests.").labels == ("non-gesture",)
    # ... but a negated gesture name is denied, and the first asserted one is the answer
    assert IPN.parse("Not a zoom in, no gesture at all.").labels == ("non-gesture",)
    # a generic task whose label is literally "none"
    from edgevlm_eval.core.labels import LabelSpace

    s = LabelSpace(names=["none", "some"], multi_label=False)
    assert s.parse("none").labels == ("none",)
    assert s.parse("not some, none").labels == ("none",)


def test_a_negative_header_covers_its_list_only():
    reply = "**Not present:**\n- Truck.\n- Bus.\n\nI see a car."
    p = NUS.parse(reply)
    assert p.labels == ("car",) and p.negated == ("truck", "bus")
    # a positive header after it ends it too
    p = NUS.parse("Not visible:\n- truck\nVisible:\n- bus")
    assert p.labels == ("bus",) and p.negated == ("truck",)


def test_hedges_and_interjections_are_not_negations():
    assert NUS.parse("There might be a truck, but I'm not sure.").labels == ("truck",)
    assert NUS.parse("No, there are cars.").labels == ("car",)
    assert NUS.parse("Not only cars but also a bus.").labels == ("car", "bus")
    assert NUS.parse("A car not far from a bus.").labels == ("car", "bus")
