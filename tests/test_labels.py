import pytest

from edgevlm_eval.core.labels import LabelSpace, extract_answer_text


@pytest.fixture
def space():
    return LabelSpace(
        names=["car", "truck", "bus", "pedestrian", "traffic cone", "construction vehicle", "barrier"],
        synonyms={"pedestrian": ["people", "person"], "traffic cone": ["cone"], "car": ["sedan"]},
    )


def test_synonyms_plurals_order_of_mention(space):
    p = space.parse("Cars, a truck and two people")
    assert p.labels == ("car", "truck", "pedestrian")
    assert p.unmapped == ()


def test_longest_match_first(space):
    # "traffic cones" must not also yield a bare "cone" match, nor "vehicle" anything else.
    p = space.parse("traffic cones, construction vehicles")
    assert p.labels == ("traffic cone", "construction vehicle")
    p = space.parse("a cone")
    assert p.labels == ("traffic cone",)


def test_case_spacing_punctuation(space):
    assert space.parse("TRAFFIC-CONE; Bus.").labels == ("traffic cone", "bus")
    assert space.parse("traffic_cone").labels == ("traffic cone",)
    assert space.parse("buses").labels == ("bus",)  # plural in -es


def test_unmapped_counted(space):
    p = space.parse("car, spaceship, dragon")
    assert p.labels == ("car",)
    assert p.unmapped == ("spaceship", "dragon")
    assert not p.empty


def test_empty_answers(space):
    for text in ("None", "nothing.", "", "none of the above"):
        p = space.parse(text)
        assert p.labels == () and p.empty, text
    assert not space.parse("xyz").empty


def test_duplicates_removed(space):
    assert space.parse("car, cars, sedan").labels == ("car",)


def test_word_boundaries(space):
    # 'bus' inside 'business' and 'car' inside 'scar' are not mentions.
    p = space.parse("business, scar")
    assert p.labels == ()
    assert p.unmapped == ("business", "scar")


def test_answer_tags_and_fences():
    assert extract_answer_text("<think>maybe a car</think><answer>truck</answer>") == "truck"
    assert extract_answer_text("<answer>a</answer> then <answer>b</answer>") == "b"
    assert extract_answer_text("```json\n[\"car\"]\n```") == '["car"]'
    assert extract_answer_text("<think>unfinished") == ""
    # a reasoning model that did not write the opening tag: what precedes </think> is reasoning
    assert extract_answer_text("maybe a truck, or a bus?</think>\n\ncar") == "car"
    assert extract_answer_text("<think>a truck?</think><answer></answer>") == ""


def test_single_label_keeps_first_and_longest():
    g = LabelSpace(names=["pointing with one finger", "pointing with two fingers", "click with one finger",
                          "double click with one finger"], multi_label=False)
    assert g.parse("The person is pointing with two fingers.").labels == ("pointing with two fingers",)
    assert g.parse("double click with one finger").labels == ("double click with one finger",)
    assert g.parse("click with one finger, or pointing with one finger").labels == ("click with one finger",)


def test_bad_label_spaces():
    with pytest.raises(ValueError, match="duplicate"):
        LabelSpace(names=["car", "car"])
    with pytest.raises(ValueError, match="not a label"):
        LabelSpace(names=["car"], synonyms={"truck": ["lorry"]})
    with pytest.raises(ValueError, match="maps to both"):
        LabelSpace(names=["car", "truck"], synonyms={"truck": ["car"]})


def test_check_ground_truth(space):
    assert space.check(["car"], "x") == ("car",)
    with pytest.raises(ValueError, match="stream s frame 3"):
        space.check(["car", "plane"], "stream s frame 3")


def test_sentences_saying_nothing_are_empty(space):
    for text in ("The chef is doing nothing.", "No objects are visible", "I see none of them"):
        p = space.parse(text)
        assert p.labels == () and p.empty, text
    # ... but a label mention still wins
    assert space.parse("nothing but a car").labels == ("car",)
