"""The ipn_hand converter: both annotation formats, 2 FPS sampling with two images, real fixture."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from edgevlm_eval.core.taskconfig import load_merged, task_from_dict
from edgevlm_eval.core.errors import ConfigError, DatasetError
from edgevlm_eval.tasks.streams import load_streams
from edgevlm_eval.tasks import TASKS_DIR, load_task

V1, V2 = "1CM1_1_R_#217", "4CM11_5_L_#99"
CODES = ["D0X", "B0A", "B0B", "G01", "G02", "G03", "G04", "G05", "G06", "G07", "G08", "G09", "G10", "G11"]
# (video, code, t_start, t_end): 1-based inclusive frames tiling each video from frame 1.
SEGMENTS = [
    (V1, "D0X", 1, 20), (V1, "B0A", 21, 40), (V1, "G08", 41, 46),
    (V2, "G01", 1, 16), (V2, "G04", 17, 31),
]


def _csv_rows(segs, header=False):
    rows = ["video,label,id,t_start,t_end,frames"] if header else []
    rows += [f"{v},{c},{CODES.index(c) + 1},{s},{e},{e - s + 1}" for v, c, s, e in segs]
    return "\n".join(rows) + "\n"


def _list_rows(segs):
    return "\n".join(f"./frames/{v} {CODES.index(c) + 1} {s} {e}" for v, c, s, e in segs) + "\n"


CLASS_IND = "".join(f"{i + 1} {c}\n" for i, c in enumerate(CODES))


def _task(split="test", **options):
    data = load_merged(TASKS_DIR / "ipn_hand.yaml")
    data["dataset"]["split"] = split
    data["converter_options"].update(options)
    return task_from_dict(data, source="ipn-test.yaml")


def _img(root, video, n):
    return str(root / "frames" / video / f"{video}_{n:06d}.jpg")


def _expected(root):
    """By hand: frames 1, 16, 31, 46 of V1 (46 frames) and 1, 16, 31 of V2 (31 frames) at 0, 0.5, 1, 1.5 s;
    images = (previous sampled frame, current), frame 0 sends its own image twice."""
    return {
        V1: [(0, 0.0, ("non-gesture",), (_img(root, V1, 1), _img(root, V1, 1))),
             (1, 0.5, ("non-gesture",), (_img(root, V1, 1), _img(root, V1, 16))),
             (2, 1.0, ("pointing with one finger",), (_img(root, V1, 16), _img(root, V1, 31))),
             (3, 1.5, ("double click with one finger",), (_img(root, V1, 31), _img(root, V1, 46)))],
        V2: [(0, 0.0, ("click with one finger",), (_img(root, V2, 1), _img(root, V2, 1))),
             (1, 0.5, ("click with one finger",), (_img(root, V2, 1), _img(root, V2, 16))),
             (2, 1.0, ("throw down",), (_img(root, V2, 16), _img(root, V2, 31)))],
    }


def _summary(streams):
    return {s.id: [(f.index, f.timestamp_s, f.labels, f.images) for f in s.frames] for s in streams}


def test_dataset_csv_format(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "Annot_TestList.txt").write_text(_csv_rows(SEGMENTS))
    task = load_task("ipn_hand")
    assert task.fps == 2 and task.images_per_query == 2 and task.dataset["split"] == "test"
    streams, _ = load_streams(task, str(tmp_path), use_cache=False)
    assert _summary(streams) == _expected(tmp_path)
    assert streams[0].meta["source_frames"] == 46 and streams[1].meta["source_frames"] == 31
    assert streams[0].frames[3].meta == {"source_frame": 46, "gesture": "G08"}
    assert streams[0].frames[0].query.startswith("Determine which hand gesture the person is performing.")


def test_authors_list_format(tmp_path):
    ann = tmp_path / "annotation_ipnGesture"
    ann.mkdir()
    (ann / "vallistall.txt").write_text(_list_rows(SEGMENTS))
    (ann / "classIndAll.txt").write_text(CLASS_IND)
    streams, _ = load_streams(load_task("ipn_hand"), str(tmp_path), use_cache=False)
    assert _summary(streams) == _expected(tmp_path)


def test_class_index_file_is_used(tmp_path):
    # A renumbered classIndAll.txt: id 1 means G10 here, so the list's "1" is zoom in.
    ann = tmp_path / "annotation_ipnGesture"
    ann.mkdir()
    (ann / "trainlistall.txt").write_text("./frames/x#1 1 1 15\n./frames/x#1 2 16 16\n")
    (ann / "classIndAll.txt").write_text("1 G10\n2 G11\n")
    streams, _ = load_streams(_task("train"), str(tmp_path), use_cache=False)
    assert [(f.labels, f.meta["source_frame"]) for f in streams[0].frames] == [
        (("zoom in",), 1), (("zoom out",), 16)]


def test_splits_and_header(tmp_path):
    ann = tmp_path / "annotations"
    ann.mkdir()
    (ann / "Annot_List.txt").write_text(_csv_rows(SEGMENTS, header=True))
    (ann / "Annot_TrainList.txt").write_text(_csv_rows(SEGMENTS[3:]))
    streams, _ = load_streams(_task("all"), str(tmp_path), use_cache=False)
    assert _summary(streams) == _expected(tmp_path)
    streams, _ = load_streams(_task("train"), str(tmp_path), use_cache=False)
    assert [s.id for s in streams] == [V2]
    with pytest.raises(DatasetError) as e:
        load_streams(_task("test"), str(tmp_path), use_cache=False)
    assert "Annot_TestList.txt" in str(e.value) and "vallistall.txt" in str(e.value)
    with pytest.raises(ConfigError, match="dataset.split"):
        load_streams(_task("val"), str(tmp_path), use_cache=False)


def test_unlabelled_gap_is_skipped(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "Annot_TestList.txt").write_text("g#1,G10,13,1,10,10\ng#1,G11,14,20,31,12\n")
    streams, _ = load_streams(load_task("ipn_hand"), str(tmp_path), use_cache=False)
    s = streams[0]
    # frame 16 (0.5 s) lies in the gap: skipped; the 1 s frame still shows frame 16 as its previous image.
    assert [(f.index, f.timestamp_s, f.labels) for f in s.frames] == [(0, 0.0, ("zoom in",)), (1, 1.0, ("zoom out",))]
    assert s.frames[1].images == (_img(tmp_path, "g#1", 16), _img(tmp_path, "g#1", 31))
    assert s.meta["unlabelled_frames_skipped"] == 1


@pytest.mark.parametrize("text,line,needle", [
    ("a#1,D0X,1,1,10,10\na#1,B0A,2,11\n", 2, "expected the columns"),
    ("a#1,D0X,1,1,10,10\na#1,B0A,two,11,20,10\n", 2, "'id'"),
    ("a#1,D0X,1,1,10,10\na#1,B0A,15,11,20,10\n", 2, "unknown class id 15"),
    ("a#1,B0B,2,1,10,10\n", 1, "does not match class id 2"),
    ("a#1,D0X,1,5,3,1\n", 1, "t_start <= t_end"),
    ("a#1,D0X,1,1,10,10\na#1,B0A,2,8,20,13\n", 2, "overlaps"),
])
def test_bad_csv_rows(tmp_path, text, line, needle):
    path = tmp_path / "annotations" / "Annot_TestList.txt"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(DatasetError) as e:
        load_streams(load_task("ipn_hand"), str(tmp_path), use_cache=False)
    msg = str(e.value)
    assert str(path) in msg and f"line {line}" in msg and needle in msg


def test_bad_list_rows(tmp_path):
    ann = tmp_path / "annotation_ipnGesture"
    ann.mkdir()
    path = ann / "vallistall.txt"
    (ann / "classIndAll.txt").write_text(CLASS_IND)
    path.write_text("./frames/a#1 1 1 10\n./frames/a#1 15 11 20\n")
    with pytest.raises(DatasetError) as e:
        load_streams(load_task("ipn_hand"), str(tmp_path), use_cache=False)
    assert str(path) in str(e.value) and "line 2" in str(e.value) and "unknown class id 15" in str(e.value)
    path.write_text("./frames/a#1 1 1 10\n\n./frames/a#1 2 11\n")
    with pytest.raises(DatasetError) as e:
        load_streams(load_task("ipn_hand"), str(tmp_path), use_cache=False)
    assert str(path) in str(e.value) and "line 3" in str(e.value)


def test_label_space_parses_close_names():
    task = load_task("ipn_hand")
    space = task.label_space
    assert len(space.names) == 14 and not space.multi_label
    cases = {
        "Pointing with one finger": "pointing with one finger",
        "Pointing with two fingers": "pointing with two fingers",
        "pointing with 2 fingers.": "pointing with two fingers",
        "Click with one finger": "click with one finger",
        "Double click with one finger": "double click with one finger",
        "<answer>Double-click with two fingers</answer>": "double click with two fingers",
        "The person is doing a double click with one finger.": "double click with one finger",
        "click with two fingers": "click with two fingers",
        "G08": "double click with one finger",
        "B0B": "pointing with two fingers",
        "No gesture": "non-gesture",
        "Non-gesture": "non-gesture",
        "throw left": "throw left",
        "Zoom out": "zoom out",
    }
    for answer, label in cases.items():
        assert space.parse(answer).labels == (label,), answer
    # CRM snippets at 2 FPS keep the half second.
    assert task.history_snippet(0.5, ["zoom in"]) == "This is the image from 0.5 seconds ago; the gesture was zoom in."
    assert task.history_snippet(1.0, ["throw up"]).startswith("This is the image from 1.0 seconds ago")


# ---------------------------------------------------------------------------------------------
# The authors' real list of the 148 training videos.


def test_real_fixture(shared_fixtures, tmp_path):
    ann = tmp_path / "annotation_ipnGesture"
    ann.mkdir()
    for name in ("trainlistall.txt", "classIndAll.txt"):
        shutil.copy(shared_fixtures / "ipn_hand" / name, ann / name)
    streams, _ = load_streams(_task("train"), str(tmp_path), use_cache=False)

    # Independent reading of the raw rows.
    rows: dict[str, list[tuple[int, int, int]]] = {}
    for line in (ann / "trainlistall.txt").read_text().split("\n"):
        if line.strip():
            path, cid, s, e = line.split()
            rows.setdefault(path.split("/")[-1], []).append((int(cid), int(s), int(e)))
    assert len(streams) == len(rows) == 148
    assert all("#" in v for v in rows)
    # The segments tile each video from frame 1, so every sampled frame has a label.
    for segs in rows.values():
        segs.sort(key=lambda r: r[1])
        assert segs[0][1] == 1 and all(b[1] == a[2] + 1 for a, b in zip(segs, segs[1:]))
    # 2 FPS from 30 fps: source frames 1, 16, 31, ... up to the last segment's end.
    expected_n = {v: (max(e for _, _, e in segs) - 1) // 15 + 1 for v, segs in rows.items()}
    got_n = {s.id: len(s) for s in streams}
    assert got_n == expected_n
    assert sum(got_n.values()) == 39289

    code = dict(line.split() for line in (ann / "classIndAll.txt").read_text().splitlines() if line.strip())
    by_id = {s.id: s for s in streams}
    for video in ("1CM1_4_R_#229", sorted(rows)[-1]):
        segs = rows[video]
        truth = Counter()
        for n in range(1, max(e for _, _, e in segs) + 1, 15):
            (cid,) = [c for c, s, e in segs if s <= n <= e]
            truth[code[str(cid)]] += 1
        assert Counter(f.meta["gesture"] for f in by_id[video].frames) == truth
    first = Counter(f.labels[0] for f in by_id["1CM1_4_R_#229"].frames)
    assert len(by_id["1CM1_4_R_#229"]) == 251  # 3751 frames -> (3751 - 1) // 15 + 1
    assert first["pointing with two fingers"] == sum(
        1 for n in range(1, 3752, 15) if any(c == 3 and s <= n <= e for c, s, e in rows["1CM1_4_R_#229"]))
    assert all(len(f.images) == 2 for s in streams for f in s.frames)


# -- bad inputs ------------------------------------------------------------------------------------------------


def _ipn_root(tmp_path, text: str | bytes) -> object:
    root = tmp_path / "ipn"
    (root / "annotations").mkdir(parents=True)
    f = root / "annotations" / "Annot_TestList.txt"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    return root


@pytest.mark.parametrize("options, key", [
    ({"annotation_file": 5}, "converter_options.annotation_file"),
    ({"annotation_file": []}, "converter_options.annotation_file"),
    ({"class_index_file": 5}, "converter_options.class_index_file"),
    ({"frames_dir": 5}, "converter_options.frames_dir"),
])
def test_options_of_the_wrong_type(tmp_path, options, key):
    root = _ipn_root(tmp_path, _csv_rows(SEGMENTS, header=True))
    with pytest.raises(ConfigError, match=key):
        load_streams(_task(**options), str(root), use_cache=False)


@pytest.mark.parametrize("text, message", [
    ("", "IPN Hand: the annotation file has no segments"),
    ("video,label,id,t_start,t_end,frames\n", "IPN Hand: the annotation file has no segments"),
    ("video,label,id,t_start,t_end,frames\nv\xe9,D0X,1,1,20,20\n".encode("latin-1"),
     r"IPN Hand annotation file is not UTF-8 text \(byte 0xe9 at line 2, column 2\)"),
])
def test_empty_or_not_utf8_annotations(tmp_path, text, message):
    root = _ipn_root(tmp_path, text)
    with pytest.raises(DatasetError, match=message) as e:
        load_streams(_task(), str(root), use_cache=False)
    assert str(root / "annotations" / "Annot_TestList.txt") in str(e.value)


def test_a_typo_in_t_end_is_refused_not_sampled_for_days(tmp_path, no_hang):
    root = _ipn_root(tmp_path, "video,label,id,t_start,t_end,frames\nv1,D0X,1,1,1000000000000,1\n")
    with pytest.raises(DatasetError, match="line 2: t_end 1000000000000 is more than 2592000 frames"):
        no_hang(load_streams, _task(), str(root), use_cache=False)


def test_a_task_without_data_root(tmp_path):
    data = load_merged(TASKS_DIR / "ipn_hand.yaml")
    data["dataset"]["required"] = False
    with pytest.raises(DatasetError, match=r"IPN Hand: the converter reads a dataset root"):
        load_streams(task_from_dict(data, source="ipn-test.yaml"), use_cache=False)
