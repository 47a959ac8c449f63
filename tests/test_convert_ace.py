"""ACE (KSCGR) converter on tiny videos in the real layout, with streams worked out by hand."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from edgevlm_eval.core.taskconfig import load_merged, task_from_dict
from edgevlm_eval.core.errors import ConfigError, DatasetError
from edgevlm_eval.tasks.streams import load_streams
from edgevlm_eval.tasks import TASKS_DIR, ConvertContext, get_converter

YAML = TASKS_DIR / "ace.yaml"


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 180, 40)).save(buf, format="JPEG")
    return buf.getvalue()


JPEG = _jpeg()


def write_video(folder: Path, n_frames: int, runs: list[tuple[int, int, int]], *, skip_lines=(), text=None):
    """`folder`/image_jpg/0.jpg .. and labels.txt from (first, last, code) runs, one tab-separated
    line per frame (frames in `skip_lines` get none)."""
    (folder / "image_jpg").mkdir(parents=True)
    for n in range(n_frames):
        (folder / "image_jpg" / f"{n}.jpg").write_bytes(JPEG)
    if text is None:
        lines = [f"{f}\t{code}" for a, b, code in runs for f in range(a, b + 1) if f not in skip_lines]
        text = "\n".join(lines) + "\n"
    (folder / "labels.txt").write_text(text)


@pytest.fixture
def root(tmp_path) -> Path:
    r = tmp_path / "ace"
    # 91 frames (0..90 = 3.0 s at 30 fps); labels.txt has one line fewer (frames 0..89): frame 90
    # has no line. 0-20 none, 21-45 breaking, 46-70 mixing, 71-89 baking.
    write_video(r / "test_data_10_01", 91, [(0, 20, -1000), (21, 45, 1), (46, 70, 2), (71, 89, 3)])
    # 40 frames (0..39 = 1.3 s): 0-29 boiling, 30-39 peeling.
    write_video(r / "boild-egg-2", 40, [(0, 29, 6), (30, 39, 8)])
    return r


def make_task(split="test", **label_space):
    data = load_merged(YAML)
    data["dataset"]["split"] = split
    data["label_space"].update(label_space)
    return task_from_dict(data, source=str(YAML))


def convert(task, root):
    streams, _ = load_streams(task, str(root), use_cache=False)
    return {s.id: s for s in streams}


def test_test_split_sampled_by_hand(root):
    streams = convert(make_task("test"), root)
    assert list(streams) == ["test_data_10_01"]
    s = streams["test_data_10_01"]
    # 1 FPS from 30 fps: images 0, 30, 60, 90 at 0, 1, 2, 3 s.
    # 0 -> -1000 (none, unscored); 30 -> breaking; 60 -> mixing; 90 -> no line (none, unscored).
    assert [(f.index, f.timestamp_s, f.labels, f.scored) for f in s.frames] == [
        (0, 0.0, ("none",), False), (1, 1.0, ("breaking",), True), (2, 2.0, ("mixing",), True),
        (3, 3.0, ("none",), False)]
    assert [f.images for f in s.frames] == [(str((root / "test_data_10_01" / "image_jpg" / f"{n}.jpg").resolve()),)
                                           for n in (0, 30, 60, 90)]
    assert [f.meta["label_code"] for f in s.frames] == [-1000, 1, 2, None]
    assert s.meta["frames_without_label"] == 1 and s.meta["source_frames"] == 91 and s.meta["split"] == "test"
    assert s.frames[1].query.startswith("Describe what the chef in the picture is doing.")


def test_train_and_all_splits(root):
    train = convert(make_task("train"), root)
    assert list(train) == ["boild-egg-2"]
    # 40 frames end at 1.3 s: targets 0 s and 1 s -> images 0 (boiling) and 30 (peeling).
    assert [(f.timestamp_s, f.labels, f.meta["source_frame"]) for f in train["boild-egg-2"].frames] == [
        (0.0, ("boiling",), 0), (1.0, ("peeling",), 30)]
    assert sorted(convert(make_task("all"), root)) == ["boild-egg-2", "test_data_10_01"]


def test_videos_one_level_down(tmp_path):
    r = tmp_path / "kscgr"
    write_video(r / "test" / "test_data_11_03", 31, [(0, 30, 7)])
    write_video(r / "train" / "ham-egg-1", 31, [(0, 30, 5)])
    streams = convert(make_task("test"), r)
    assert list(streams) == ["test_data_11_03"]
    assert [f.labels for f in streams["test_data_11_03"].frames] == [("seasoning",), ("seasoning",)]


def test_score_none_true_scores_none_frames(root):
    s = convert(make_task("test", score_none=True), root)["test_data_10_01"]
    assert [(f.labels, f.scored) for f in s.frames] == [
        (("none",), True), (("breaking",), True), (("mixing",), True), (("none",), True)]


def test_missing_image_in_the_middle_takes_the_nearest(tmp_path):
    r = tmp_path / "ace"
    write_video(r / "test_data_10_02", 61, [(0, 29, 4), (30, 30, 5), (31, 60, 4)])
    (r / "test_data_10_02" / "image_jpg" / "30.jpg").unlink()
    s = convert(make_task("test"), r)["test_data_10_02"]
    # target 1.0 s: images 29 and 31 are equally near (1/30 s) -> the earlier, 29 (turning).
    assert [(f.meta["source_frame"], f.labels) for f in s.frames] == [(0, ("turning",)), (29, ("turning",)),
                                                                      (60, ("turning",))]
    assert s.meta["missing_images"] == 1


def test_missing_root_names_path_and_layout(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as e:
        convert(make_task(), missing)
    assert str(missing) in str(e.value) and "image_jpg/<n>.jpg" in str(e.value)
    # the converter itself says the same when handed a root that is not a folder
    task = make_task()
    conv = get_converter("ace")
    with pytest.raises(DatasetError) as e:
        conv.convert(ConvertContext(task=task, root=missing, work_dir=tmp_path, options=conv.resolved_options(task)))
    assert str(missing) in str(e.value) and "labels.txt" in str(e.value)


def test_root_without_videos_or_split(tmp_path):
    (tmp_path / "empty" / "junk").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no video folders"):
        convert(make_task(), tmp_path / "empty")
    r = tmp_path / "trainonly"
    write_video(r / "omelette-4", 3, [(0, 2, 3)])
    with pytest.raises(DatasetError, match="split 'test'"):
        convert(make_task("test"), r)
    with pytest.raises(ConfigError, match="unknown split 'val'"):
        convert(make_task("val"), r)


@pytest.mark.parametrize("line, why", [("12 breaking", "expected '<frame>"), ("12", "expected '<frame>"),
                                       ("12\t9", "unknown label 9"), ("3\t1", "frame 3 is labelled twice")])
def test_malformed_labels_line_names_file_and_line(tmp_path, line, why):
    r = tmp_path / "ace"
    text = "0\t-1000\n1\t-1000\n2\t1\n3\t1\n" + line + "\n"
    write_video(r / "test_data_10_03", 6, [], text=text)
    with pytest.raises(DatasetError) as e:
        convert(make_task(), r)
    assert str(r / "test_data_10_03" / "labels.txt") in str(e.value)
    assert "line 5" in str(e.value) and why in str(e.value)


def test_video_without_labels_file(tmp_path):
    r = tmp_path / "ace"
    write_video(r / "test_data_10_04", 3, [(0, 2, 1)])
    (r / "test_data_10_04" / "labels.txt").unlink()
    with pytest.raises(DatasetError) as e:
        convert(make_task(), r)
    assert str(r / "test_data_10_04" / "labels.txt") in str(e.value)


def test_inputs_are_the_label_files(root):
    task = make_task("all")
    conv = get_converter("ace")
    ctx = ConvertContext(task=task, root=root, work_dir=root, options=conv.resolved_options(task))
    r = root.resolve()
    assert conv.inputs(ctx) == [r / "boild-egg-2" / "labels.txt", r / "test_data_10_01" / "labels.txt"]


def test_answers_a_vlm_gives_map_to_actions():
    task = make_task()
    parse = task.label_space.parse
    cases = {"The chef is cracking an egg into a bowl.": "breaking", "Stirring the eggs": "mixing",
             "The chef whisks the eggs.": "mixing", "The chef fries an egg in the pan": "baking",
             "Flipping the omelette": "turning", "The chef cuts the ham": "cutting",
             "Boiling eggs in a pot": "boiling", "Adding salt": "seasoning", "Peeling a boiled egg": "peeling"}
    for answer, label in cases.items():
        assert parse(answer).labels == (label,), answer
    assert task.history_snippet(3.2, ["seasoning"]) == "This is the image from 3 seconds ago; the chef was seasoning."
    assert task.label_space.none_label == "none" and task.score_none is False


# -- bad inputs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_source_fps_must_be_finite(tmp_path, no_hang, value):
    r = tmp_path / "ace"
    write_video(r / "test_data_10_01", 31, [(0, 30, 1)])
    data = load_merged(YAML)
    data["converter_options"]["source_fps"] = value
    task = task_from_dict(data, source="ace-test.yaml")
    with pytest.raises(ConfigError, match="converter_options.source_fps': expected a positive finite number"):
        no_hang(convert, task, r)


@pytest.mark.parametrize("text, message", [
    ("", "ACE: the labels file is empty"),
    ("".join(f"{i}\t1\n" for i in range(10)), "labels.txt ends at frame 9 but the images go on to 60.jpg: 51 frames "
                                              "have no line"),
    ("0\t1\n1\tcaf\xe9\n", r"ACE labels file is not UTF-8 text \(byte 0xe9 at line 2, column 6\)"),
])
def test_empty_truncated_or_not_utf8_labels(tmp_path, text, message):
    r = tmp_path / "ace"
    write_video(r / "test_data_10_01", 61, [], text="")
    (r / "test_data_10_01" / "labels.txt").write_bytes(text.encode("latin-1"))
    with pytest.raises(DatasetError, match=message) as e:
        convert(make_task(), r)
    assert str(r / "test_data_10_01" / "labels.txt") in str(e.value)


def test_two_images_for_one_frame_number(tmp_path):
    r = tmp_path / "ace"
    write_video(r / "test_data_10_01", 31, [(0, 30, 1)])
    (r / "test_data_10_01" / "image_jpg" / "007.jpg").write_bytes(JPEG)
    with pytest.raises(DatasetError, match="007.jpg and 7.jpg are both frame 7"):
        convert(make_task(), r)


def test_a_task_without_data_root(tmp_path):
    data = load_merged(YAML)
    data["dataset"]["required"] = False
    with pytest.raises(DatasetError, match=r"ACE: the converter reads a dataset root \(dataset.required must not"):
        convert(task_from_dict(data, source=str(YAML)), None)
