"""The bdd100k_mot converter: official layout, both label formats, category policy, real fixture."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from edgevlm_eval.core.taskconfig import load_merged, task_from_dict
from edgevlm_eval.core.errors import ConfigError, DatasetError
from edgevlm_eval.tasks.streams import load_streams
from edgevlm_eval.tasks import TASKS_DIR, load_task

VA, VB = "aaaa0001-00000001", "bbbb0002-00000002"


def _label(cat, box, crowd=False, old=False):
    attrs = ({"Occluded": False, "Truncated": False, "Crowd": crowd} if old
             else {"occluded": False, "truncated": False, "crowd": crowd})
    x1, y1, x2, y2 = box
    return {"id": "1", "category": cat, "attributes": attrs, "box2d": {"x1": x1, "y1": y1, "x2": x2, "y2": y2}}


# video -> {frameIndex: [(category, box, crowd)]}. Video A is contiguous (0..10 = 0..2 s at 5 Hz);
# video B has a hole from 0.4 s to 1.8 s, so the 1 s target has no frame within 0.5 s and is skipped.
CONTENT = {
    VA: {i: [] for i in range(11)} | {
        0: [("car", (0, 0, 100, 50), False), ("other person", (10, 10, 20, 40), False),
            ("pedestrian", (200, 200, 260, 300), True)],
        5: [("trailer", (0, 0, 300, 100), False), ("other vehicle", (5, 5, 10, 10), False),
            ("rider", (50, 50, 60, 90), False)],
        3: [("bus", (0, 0, 10, 10), False)],  # not sampled
    },
    VB: {0: [("pedestrian", (0, 0, 10, 10), True), ("bus", (0, 0, 400, 300), False)],
         1: [("train", (0, 0, 10, 10), False)],  # not sampled
         9: [("train", (0, 0, 10, 10), False)],
         10: [("bicycle", (1, 2, 3, 4), False), ("traffic light", (0, 0, 5, 5), False)]},
}


def _records(video, old=False):
    out = []
    for fi in sorted(CONTENT[video]):
        labels = [_label(c, b, cr, old) for c, b, cr in CONTENT[video][fi]]
        name = f"{video}-{fi + 1:07d}.jpg"
        if old:
            out.append({"name": name, "video_name": video, "index": fi, "labels": labels})
        else:
            out.append({"name": name, "videoName": video, "frameIndex": fi, "labels": labels})
    return out


def _write_dataset(root: Path, old=False, combined=False, split="val"):
    labels = root / "labels" / "box_track_20"
    if combined:
        labels.mkdir(parents=True)
        (labels / f"{split}.json").write_text(json.dumps(_records(VA, old) + _records(VB, old)))
    else:
        (labels / split).mkdir(parents=True)
        for v in (VA, VB):
            (labels / split / f"{v}.json").write_text(json.dumps(_records(v, old)))
    for v in (VA, VB):
        d = root / "images" / "track" / split / v
        d.mkdir(parents=True)
        for fi in CONTENT[v]:
            Image.new("RGB", (16, 9), (fi * 20, 0, 0)).save(d / f"{v}-{fi + 1:07d}.jpg")
    return root


def _task(**options):
    data = load_merged(TASKS_DIR / "bdd100k_mot.yaml")
    labels = options.pop("labels", None)
    data["converter_options"].update(options)
    if labels is not None:
        data["label_space"]["labels"] = labels
    return task_from_dict(data, source="bdd-test.yaml")


def _summary(streams):
    return {s.id: [(f.index, f.timestamp_s, f.labels, f.meta["frame_index"]) for f in s.frames] for s in streams}


EXPECTED_PAPER10 = {
    VA: [(0, 0.0, ("pedestrian", "car"), 0), (1, 1.0, ("rider", "other vehicle", "trailer"), 5), (2, 2.0, (), 10)],
    VB: [(0, 0.0, ("pedestrian", "bus"), 0), (1, 2.0, ("bicycle",), 10)],
}


@pytest.mark.parametrize("old", [False, True], ids=["scalabel", "format2020"])
@pytest.mark.parametrize("combined", [False, True], ids=["per-video", "combined"])
def test_tiny_dataset_both_formats(tmp_path, old, combined):
    root = _write_dataset(tmp_path, old=old, combined=combined)
    task = load_task("bdd100k_mot")
    assert task.label_space.names == ["pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle",
                                      "bicycle", "other vehicle", "trailer"]
    streams, _ = load_streams(task, str(root), use_cache=False)
    assert _summary(streams) == EXPECTED_PAPER10
    a = streams[0]
    assert a.id == VA and a.meta["source_frames"] == 11
    f1 = a.frames[1]
    assert f1.images == (str(root / "images/track/val" / VA / f"{VA}-0000006.jpg"),)
    assert all(Path(p).exists() for s in streams for f in s.frames for p in f.images)
    # Boxes in original pixels, relabelled by the policy ("other person" is a pedestrian in paper10).
    assert [b.to_list() for b in a.frames[0].boxes] == [
        ["car", 0, 0, 100, 50], ["pedestrian", 10, 10, 20, 40], ["pedestrian", 200, 200, 260, 300]]
    assert streams[1].frames[1].boxes[0].to_list() == ["bicycle", 1, 2, 3, 4]  # traffic light skipped
    assert f1.query.startswith("Identify which object categories")


def test_crowd_drop_and_min_box_area(tmp_path):
    root = _write_dataset(tmp_path)
    streams, _ = load_streams(_task(crowd="drop"), str(root), use_cache=False)
    got = _summary(streams)
    assert got[VB][0][2] == ("bus",)  # its only pedestrian box is a crowd box
    assert got[VA][0][2] == ("pedestrian", "car")  # the "other person" box is no crowd
    streams, _ = load_streams(_task(min_box_area=200), str(root), use_cache=False)
    got = _summary(streams)
    # areas: car 5000, other person 300, crowd pedestrian 6000; trailer 30000, other vehicle 25, rider 400
    assert got[VA][0][2] == ("pedestrian", "car")
    assert got[VA][1][2] == ("rider", "trailer")
    assert got[VB][1][2] == ()  # bicycle box is 2x2


def test_official8_and_raw11_policies(tmp_path):
    root = _write_dataset(tmp_path)
    eight = ["pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    streams, _ = load_streams(_task(category_policy="official8", labels=eight), str(root), use_cache=False)
    # ignored_mapping: other vehicle -> car, trailer -> truck, other person -> pedestrian
    assert _summary(streams)[VA][1][2] == ("rider", "car", "truck")
    eleven = eight + ["other person", "other vehicle", "trailer"]
    streams, _ = load_streams(_task(category_policy="raw11", labels=eleven), str(root), use_cache=False)
    assert _summary(streams)[VA][0][2] == ("pedestrian", "car", "other person")


def test_policy_must_match_label_space(tmp_path):
    root = _write_dataset(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_streams(_task(category_policy="raw11"), str(root), use_cache=False)
    assert "label_space.labels" in str(e.value) and "other person" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_streams(_task(category_policy="paper11"), str(root), use_cache=False)
    assert "converter_options.category_policy" in str(e.value)
    with pytest.raises(ConfigError, match="unknown option"):
        load_streams(_task(crowds="drop"), str(root), use_cache=False)


def test_label_space_synonyms():
    space = load_task("bdd100k_mot").label_space
    p = space.parse("people, a motorbike, two bikes, a van, other vehicles, a cyclist and a semi trailer")
    assert p.labels == ("pedestrian", "motorcycle", "bicycle", "car", "other vehicle", "rider", "trailer")
    assert p.unmapped == ()


def test_missing_labels_folder(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError) as e:
        load_streams(load_task("bdd100k_mot"), str(tmp_path), use_cache=False)
    msg = str(e.value)
    assert str(tmp_path / "labels" / "box_track_20" / "val") in msg
    assert "expected layout" in msg and "box_track_20" in msg


def test_missing_frame_index(tmp_path):
    root = _write_dataset(tmp_path)
    path = root / "labels/box_track_20/val" / f"{VB}.json"
    recs = json.loads(path.read_text())
    del recs[2]["frameIndex"]
    path.write_text(json.dumps(recs))
    with pytest.raises(DatasetError) as e:
        load_streams(load_task("bdd100k_mot"), str(root), use_cache=False)
    assert str(path) in str(e.value) and "'frameIndex'" in str(e.value) and "record 2" in str(e.value)


def test_unknown_category_and_duplicate_index(tmp_path):
    root = _write_dataset(tmp_path)
    path = root / "labels/box_track_20/val" / f"{VA}.json"
    recs = json.loads(path.read_text())
    recs[0]["labels"][0]["category"] = "spaceship"
    path.write_text(json.dumps(recs))
    with pytest.raises(DatasetError, match="unknown category 'spaceship'"):
        load_streams(load_task("bdd100k_mot"), str(root), use_cache=False)
    recs[0]["labels"][0]["category"] = "car"
    recs[1]["frameIndex"] = 0
    path.write_text(json.dumps(recs))
    with pytest.raises(DatasetError, match="two records with frameIndex 0"):
        load_streams(load_task("bdd100k_mot"), str(root), use_cache=False)


# ---------------------------------------------------------------------------------------------
# The real ground truth of one val video (202 frames at 5 Hz).


def test_real_fixture(shared_fixtures, tmp_path):
    src = shared_fixtures / "bdd100k" / "b1c66a42-6f7d68ca.scalabel.json"
    video = "b1c66a42-6f7d68ca"
    dst = tmp_path / "labels" / "box_track_20" / "val"
    dst.mkdir(parents=True)
    shutil.copy(src, dst / f"{video}.json")
    streams, _ = load_streams(load_task("bdd100k_mot"), str(tmp_path), use_cache=False)
    assert [s.id for s in streams] == [video]
    frames = streams[0].frames

    # Independently: frameIndex 0..201 contiguous at 5 Hz -> 1 FPS keeps frameIndex 0, 5, ..., 200.
    raw = json.loads(src.read_text())
    indices = sorted(r["frameIndex"] for r in raw)
    assert indices == list(range(202))
    kept = [r for r in raw if r["frameIndex"] % 5 == 0]
    assert len(frames) == len(kept) == 41
    assert [f.timestamp_s for f in frames] == [float(t) for t in range(41)]
    assert [f.meta["frame_index"] for f in frames] == list(range(0, 201, 5))

    # Per-class frame counts and box counts by a plain loop (paper10: other person -> pedestrian).
    merge = {"other person": "pedestrian"}
    expected = Counter()
    n_boxes = 0
    for r in kept:
        cats = {merge.get(lab["category"], lab["category"]) for lab in r["labels"]}
        expected.update(cats)
        n_boxes += len(r["labels"])
    got = Counter(lab for f in frames for lab in f.labels)
    assert got == expected
    assert got == Counter({"car": 41, "rider": 24, "motorcycle": 24, "pedestrian": 15, "truck": 11, "bus": 4})
    assert sum(len(f.boxes) for f in frames) == n_boxes == 676
    per_frame = [len(f.labels) for f in frames]
    assert (min(per_frame), max(per_frame), sum(per_frame)) == (1, 5, 119)


# -- bad inputs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, key, message", [
    ({"min_box_area": float("nan")}, "min_box_area", "expected a finite number >= 0"),
    ({"min_box_area": float("inf")}, "min_box_area", "expected a finite number >= 0"),
    ({"category_policy": ["paper10"]}, "category_policy", "unknown category_policy"),
    ({"labels_dir": 5}, "labels_dir", "expected a folder under the root, got 5"),
    ({"images_dir": ""}, "images_dir", "expected a folder under the root, got ''"),
])
def test_bad_options_name_the_key(tmp_path, options, key, message):
    root = _write_dataset(tmp_path)
    with pytest.raises(ConfigError, match=message) as e:
        load_streams(_task(**options), str(root), use_cache=False)
    assert f"converter_options.{key}" in str(e.value)


def _one_file(tmp_path, content: str | bytes) -> Path:
    folder = tmp_path / "labels" / "box_track_20" / "val"
    folder.mkdir(parents=True)
    (folder / f"{VA}.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    return tmp_path


@pytest.mark.parametrize("content, message", [
    ("[]", "BDD100K MOT: the label file holds no frame records"),
    ('[{"name": "caf\xe9"}]'.encode("latin-1"), r"label file is not UTF-8 text \(byte 0xe9 at line 1, column 15\)"),
    (json.dumps([{"videoName": VA, "frameIndex": 0, "labels": [_label("car", (0, 0, 5, 5))]}])
     .replace('"x1": 0', '"x1": NaN'), "frame 0 label 0: box2d must be finite with x1 <= x2 and y1 <= y2"),
    (json.dumps([{"videoName": VA, "frameIndex": 0, "labels": [_label("car", (9, 0, 5, 5))]}]),
     "frame 0 label 0: box2d must be finite with x1 <= x2 and y1 <= y2"),
])
def test_bad_label_files(tmp_path, content, message):
    root = _one_file(tmp_path, content)
    with pytest.raises(DatasetError, match=message) as e:
        load_streams(_task(), str(root), use_cache=False)
    assert str(root / "labels" / "box_track_20" / "val" / f"{VA}.json") in str(e.value)


def test_a_far_frame_index_does_not_walk_every_second_in_between(tmp_path, no_hang):
    recs = [{"videoName": VA, "frameIndex": i, "labels": []} for i in (0, 10**12)]
    root = _one_file(tmp_path, json.dumps(recs))
    streams, _ = no_hang(load_streams, _task(), str(root), use_cache=False, seconds=20)
    assert [(f.timestamp_s, f.meta["frame_index"]) for f in streams[0].frames] == [(0.0, 0), (2e11, 10**12)]


def test_a_task_without_data_root():
    data = load_merged(TASKS_DIR / "bdd100k_mot.yaml")
    data["dataset"]["required"] = False
    with pytest.raises(DatasetError, match=r"BDD100K MOT: the converter reads a dataset root"):
        load_streams(task_from_dict(data, source="bdd-test.yaml"), use_cache=False)
