"""The generic converter (tasks/generic.py): a task added with YAML alone, in a user's folder that
includes the shipped bases, over a tiny dataset in the generic layout written here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from edgevlm_eval.core.errors import ConfigError, DatasetError
from edgevlm_eval.tasks.streams import load_streams
from edgevlm_eval.tasks import TASKS_DIR, discover, load_task
from edgevlm_eval.tasks.generic import natural_key
from edgevlm_eval.core.types import Box


def make_frames(root: Path, stream: str, names: list[str]):
    d = root / "frames" / stream
    d.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        Image.new("RGB", (16, 9), (i * 20 % 256, 0, 0)).save(d / n)


def write_task(folder: Path, name: str = "my_task", extra: str = "", labels: str | None = None) -> Path:
    """A user's task YAML in their own folder; the shipped bases are included by a relative path
    (an include is resolved relative to the including file)."""
    folder.mkdir(parents=True, exist_ok=True)
    multi = os.path.relpath(TASKS_DIR / "_multi_object.yaml", folder)
    generic = os.path.relpath(TASKS_DIR / "_generic.yaml", folder)
    labels = labels or ("label_space:\n  labels:\n    - car\n    - name: pedestrian\n      synonyms: [person, people]\n"
                        "    - traffic cone\n")
    p = folder / f"{name}.yaml"
    p.write_text(f"include: [{multi}, {generic}]\nname: {name}\nfps: 1\n{labels}{extra}", encoding="utf-8")
    return p


@pytest.fixture
def csv_root(tmp_path) -> Path:
    root = tmp_path / "data"
    make_frames(root, "street", [f"f{i}.jpg" for i in range(10)])  # 2 FPS source, 5 s
    make_frames(root, "yard", ["img1.png", "img2.png", "img10.png"])  # natural order: 1, 2, 10
    (root / "labels.csv").write_text(
        "stream,frame,labels\n"
        "street,f0.jpg,car\n"
        "street,f1.jpg,car;pedestrian\n"       # not sampled: ignored
        "street,f2.jpg,Car; Person\n"          # case and synonyms fold
        "street,f4,\n"                         # name without extension; no labels
        "street,f6.jpg,traffic_cone;car;car\n"
        "street,f8.jpg,none\n"
        "yard,img1.png,pedestrian\n"
        "yard,img10.png,traffic cone\n",
        encoding="utf-8")
    return root


def task_in(tmp_path, **kw):
    return load_task(str(write_task(tmp_path / "my_tasks", **kw)))


def test_csv_streams_by_hand(tmp_path, csv_root):
    task = task_in(tmp_path, extra="converter_options:\n  source_fps: 2\n")
    assert task.converter == "generic" and task.metrics == ["micro_f1", "macro_f1", "exact_match"]
    streams, info = load_streams(task, str(csv_root))
    assert [s.id for s in streams] == ["street", "yard"]
    street, yard = streams
    # 10 images at 2 FPS sampled to 1 FPS: images 0, 2, 4, 6, 8 at 0..4 s
    assert [Path(f.images[0]).name for f in street.frames] == ["f0.jpg", "f2.jpg", "f4.jpg", "f6.jpg", "f8.jpg"]
    assert [f.timestamp_s for f in street.frames] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [f.labels for f in street.frames] == [("car",), ("car", "pedestrian"), (), ("traffic cone", "car"), ()]
    assert street.meta == {"source_frames": 10, "source_fps": 2.0}
    assert [f.meta["source_index"] for f in street.frames] == [0, 2, 4, 6, 8]
    # img1, img2, img10 at 2 FPS -> img1 (0 s) and img10 (1 s)
    assert [(Path(f.images[0]).name, f.labels) for f in yard.frames] == [("img1.png", ("pedestrian",)),
                                                                         ("img10.png", ("traffic cone",))]
    assert all(f.query == task.query for s in streams for f in s.frames)
    assert Path(street.frames[0].images[0]) == csv_root / "frames" / "street" / "f0.jpg"


def test_user_folder_is_discovered(tmp_path, csv_root, monkeypatch):
    write_task(tmp_path / "my_tasks")
    assert discover([tmp_path / "my_tasks"])["my_task"] == tmp_path / "my_tasks" / "my_task.yaml"
    monkeypatch.setenv("EDGEVLM_TASKS_PATH", str(tmp_path / "my_tasks"))
    assert load_task("my_task").name == "my_task"


def test_jsonl_index_boxes_and_two_images(tmp_path):
    root = tmp_path / "data"
    make_frames(root, "cam", [f"{i:03d}.jpg" for i in range(4)])
    rows = [{"stream": "cam", "frame": 0, "labels": ["car"], "boxes": [["car", 1, 2, 5, 6]]},
            {"stream": "cam", "frame": 1, "labels": "pedestrian;car"},
            {"stream": "cam", "frame": 2, "labels": []},
            {"stream": "cam", "frame": 3, "labels": ["people"], "boxes": [["person", 0, 0, 3, 8.5]]}]
    (root / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    task = task_in(tmp_path, extra="images_per_query: 2\nconverter_options: {frame_key: index}\n")
    (s,) = load_streams(task, str(root))[0]
    assert [f.labels for f in s.frames] == [("car",), ("pedestrian", "car"), (), ("pedestrian",)]
    assert [[Path(p).name for p in f.images] for f in s.frames] == [
        ["000.jpg", "000.jpg"], ["000.jpg", "001.jpg"], ["001.jpg", "002.jpg"], ["002.jpg", "003.jpg"]]
    assert s.frames[0].boxes == (Box("car", 1, 2, 5, 6),)
    assert s.frames[3].boxes == (Box("pedestrian", 0, 0, 3, 8.5),)


def test_custom_columns_and_separator(tmp_path):
    root = tmp_path / "data"
    make_frames(root, "v1", ["a.jpg", "b.jpg"])
    (root / "gt.csv").write_text("video,image,objects\nv1,a.jpg,car|traffic cone\nv1,b.jpg,\n", encoding="utf-8")
    task = task_in(tmp_path, extra="converter_options:\n  labels_file: gt.csv\n  label_separator: '|'\n"
                                   "  columns: {stream: video, frame: image, labels: objects}\n")
    (s,) = load_streams(task, str(root))[0]
    assert [f.labels for f in s.frames] == [("car", "traffic cone"), ()]


def test_single_label_task(tmp_path):
    root = tmp_path / "data"
    make_frames(root, "k", ["1.jpg", "2.jpg", "3.jpg"])
    (root / "labels.csv").write_text("stream,frame,labels\nk,1,cutting\nk,2,\nk,3,Stirring\n", encoding="utf-8")
    labels = ("metrics: [accuracy]\nprimary_metric: accuracy\nlabel_space:\n  multi_label: false\n"
              "  none_label: none\n  labels: [cutting, stirring]\n")
    task = task_in(tmp_path, labels=labels)
    (s,) = load_streams(task, str(root))[0]
    assert [f.labels for f in s.frames] == [("cutting",), ("none",), ("stirring",)]
    assert [f.scored for f in s.frames] == [True, False, True]  # a none frame is unscored by default
    (root / "labels.csv").write_text("stream,frame,labels\nk,1,cutting;stirring\nk,2,\nk,3,\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="line 2: a single-label task needs exactly one label"):
        load_streams(task, str(root), use_cache=False)


# -- unlabeled frames ---------------------------------------------------------------------------------


def unlabeled_root(tmp_path) -> Path:
    root = tmp_path / "data"
    make_frames(root, "s", [f"{i}.jpg" for i in range(4)])
    (root / "labels.csv").write_text("stream,frame,labels\ns,0.jpg,car\ns,2.jpg,pedestrian\ns,3.jpg,car\n",
                                     encoding="utf-8")
    return root


def test_unlabeled_frame_is_an_error_by_default(tmp_path):
    root = unlabeled_root(tmp_path)
    with pytest.raises(DatasetError) as e:
        load_streams(task_in(tmp_path), str(root))
    assert "s/1.jpg" in str(e.value) and "unlabeled" in str(e.value) and str(root / "labels.csv") in str(e.value)


def test_unlabeled_skip_leaves_a_gap_in_time(tmp_path):
    root = unlabeled_root(tmp_path)
    (s,) = load_streams(task_in(tmp_path, extra="converter_options: {unlabeled: skip}\n"), str(root))[0]
    assert [(f.index, f.timestamp_s, f.labels) for f in s.frames] == [
        (0, 0.0, ("car",)), (1, 2.0, ("pedestrian",)), (2, 3.0, ("car",))]
    assert s.meta["unlabeled_frames_skipped"] == 1


def test_unlabeled_empty(tmp_path):
    root = unlabeled_root(tmp_path)
    (s,) = load_streams(task_in(tmp_path, extra="converter_options: {unlabeled: empty}\n"), str(root))[0]
    assert [f.labels for f in s.frames] == [("car",), (), ("pedestrian",), ("car",)]


# -- bad input ----------------------------------------------------------------------------------------------


def test_label_not_in_space_names_file_line_and_label(tmp_path, csv_root):
    with open(csv_root / "labels.csv", "a", encoding="utf-8") as fh:
        fh.write("yard,img2.png,car;unicorn\n")
    with pytest.raises(DatasetError) as e:
        load_streams(task_in(tmp_path, extra="converter_options: {source_fps: 2}\n"), str(csv_root))
    msg = str(e.value)
    assert "line 10" in msg and "'unicorn'" in msg and str(csv_root / "labels.csv") in msg
    assert "car, pedestrian, traffic cone" in msg


def test_missing_frames_folder_names_path_and_layout(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "labels.csv").write_text("stream,frame,labels\n", encoding="utf-8")
    with pytest.raises(DatasetError) as e:
        load_streams(task_in(tmp_path), str(root))
    assert str(root / "frames") in str(e.value) and "expected layout" in str(e.value)
    assert "<root>/frames/<stream>/" in str(e.value)


def test_missing_labels_file(tmp_path):
    root = tmp_path / "data"
    make_frames(root, "s", ["0.jpg"])
    with pytest.raises(DatasetError, match="no labels.csv or labels.jsonl"):
        load_streams(task_in(tmp_path), str(root))


def test_missing_root_is_reported_before_converting(tmp_path):
    with pytest.raises(DatasetError, match="no dataset root given"):
        load_streams(task_in(tmp_path))


@pytest.mark.parametrize("row, message", [
    ("nowhere,0.jpg,car", "line 2: stream 'nowhere' has no folder"),
    ("s,9.jpg,car", "line 2: frame '9.jpg' names no image"),
    ("s,0.jpg,car\ns,0,car", "line 3: frame '0' of stream 's' is labelled twice \\(also line 2\\)"),
])
def test_bad_rows(tmp_path, row, message):
    root = tmp_path / "data"
    make_frames(root, "s", ["0.jpg"])
    (root / "labels.csv").write_text(f"stream,frame,labels\n{row}\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_streams(task_in(tmp_path), str(root))


def test_missing_column_and_bad_json(tmp_path):
    root = tmp_path / "data"
    make_frames(root, "s", ["0.jpg"])
    (root / "labels.csv").write_text("stream,image,labels\ns,0.jpg,car\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['frame'\]"):
        load_streams(task_in(tmp_path), str(root))
    (root / "labels.csv").unlink()
    (root / "labels.jsonl").write_text('{"stream": "s", "frame": "0.jpg", "labels": ["car"]}\n{oops\n')
    with pytest.raises(DatasetError, match="line 2: not JSON"):
        load_streams(task_in(tmp_path), str(root))


def test_bad_option_names_the_key(tmp_path, csv_root):
    with pytest.raises(ConfigError, match="converter_options.unlabeled"):
        load_streams(task_in(tmp_path, extra="converter_options: {unlabeled: maybe}\n"), str(csv_root))
    with pytest.raises(ConfigError, match="converter_options.source_fps"):
        load_streams(task_in(tmp_path, extra="converter_options: {source_fps: 0}\n"), str(csv_root))


def test_natural_order():
    names = ["f10.jpg", "f2.jpg", "f1.jpg", "a.jpg"]
    assert sorted(names, key=natural_key) == ["a.jpg", "f1.jpg", "f2.jpg", "f10.jpg"]


# -- malformed rows change no ground truth: each is an error naming the file and the line -------------------------


def three_frames(tmp_path, labels_csv: str | bytes | None = None, jsonl: str | None = None) -> Path:
    root = tmp_path / "data"
    make_frames(root, "s", ["0.jpg", "1.jpg", "2.jpg"])
    if jsonl is not None:
        (root / "labels.jsonl").write_text(jsonl, encoding="utf-8")
    elif isinstance(labels_csv, bytes):
        (root / "labels.csv").write_bytes(labels_csv)
    else:
        (root / "labels.csv").write_text(labels_csv, encoding="utf-8")
    return root


def test_labels_cell_missing_is_an_error_not_no_objects(tmp_path):
    root = three_frames(tmp_path, "stream,frame,labels\ns,0.jpg,car\ns,1.jpg\ns,2.jpg,\n")
    with pytest.raises(DatasetError) as e:
        load_streams(task_in(tmp_path), str(root))
    assert str(e.value).startswith("line 3: 2 field(s), the header has 3 (stream,frame,labels): 's,1.jpg'")
    assert f"path tried: {root / 'labels.csv'}" in str(e.value)


def test_labels_split_by_commas_is_an_error_not_the_first_label(tmp_path):
    root = three_frames(tmp_path, "stream,frame,labels\ns,0.jpg,car,pedestrian,traffic cone\ns,1.jpg,\ns,2.jpg,\n")
    with pytest.raises(DatasetError) as e:
        load_streams(task_in(tmp_path), str(root))
    assert str(e.value).startswith("line 2: 5 field(s), the header has 3 (stream,frame,labels); labels are "
                                   "separated by ';' (converter_options.label_separator)")
    # quoted, the commas are one cell: labels separated by ',' then work
    (root / "labels.csv").write_text('stream,frame,labels\ns,0.jpg,"car,pedestrian"\ns,1.jpg,\ns,2.jpg,\n')
    streams, _ = load_streams(task_in(tmp_path, extra="converter_options: {label_separator: ','}\n"), str(root))
    assert [f.labels for f in streams[0].frames] == [("car", "pedestrian"), (), ()]


@pytest.mark.parametrize("text, message", [
    ('stream,frame,labels\ns,0.jpg,"car\ns,1.jpg,\ns,2.jpg,\n',
     r"line 2: a quoted cell runs over lines 2..4 \(a double quote left open\?\)"),
    ("stream,frame,labels,labels\ns,0.jpg,car,\ns,1.jpg,,\ns,2.jpg,,\n",
     r"column\(s\) \['labels'\] appear more than once"),
    (b"stream,frame,labels\ns,0.jpg,caf\xe9\n", r"labels file is not UTF-8 text \(byte 0xe9 at line 2, column 12\)"),
])
def test_malformed_csv(tmp_path, text, message):
    root = three_frames(tmp_path, text)
    with pytest.raises(DatasetError, match=message):
        load_streams(task_in(tmp_path), str(root))


ROWS = ['{"stream": "s", "frame": "1.jpg", "labels": []}', '{"stream": "s", "frame": "2.jpg", "labels": []}']


@pytest.mark.parametrize("first, message", [
    ('{"stream": "s", "frame": "0.jpg"}', r"line 1: missing key\(s\) \['labels'\] \(a frame with no labels has "),
    ('{"stream": "s", "frame": "0.jpg", "labels": null}', "line 1: 'labels' must be a list of labels or a string, "
                                                          "got None"),
    ('{"stream": "s", "frame": "0.jpg", "labels": ["car"], "boxes": [["car", NaN, 0, 5, 5]]}',
     r"line 1: a box is \[label, x1, y1, x2, y2\] with finite numbers"),
    ('{"stream": "s", "frame": "0.jpg", "labels": ["car"], "boxes": [["car", 9, 9, 1, 1]]}',
     "x1 <= x2 and y1 <= y2"),
    ('{"stream": "s", "frame": "0.jpg", "labels": ["car"], "boxes": [["pedestrian", 0, 0, 5, 5]]}',
     r"line 1: boxes of \['pedestrian'\], which are not among the frame's labels \['car'\]"),
    ('{"stream": "s", "frame": "0.jpg", "labels": ["car"]', "line 1: not JSON"),
])
def test_malformed_jsonl(tmp_path, first, message):
    root = three_frames(tmp_path, jsonl="\n".join([first, *ROWS]) + "\n")
    with pytest.raises(DatasetError, match=message) as e:
        load_streams(task_in(tmp_path), str(root))
    assert str(root / "labels.jsonl") in str(e.value)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_source_fps_nan_or_inf_is_refused(tmp_path, no_hang, value):
    root = three_frames(tmp_path, "stream,frame,labels\ns,0.jpg,car\ns,1.jpg,\ns,2.jpg,\n")
    task = task_in(tmp_path, extra=f"converter_options: {{source_fps: {value}}}\n")
    with pytest.raises(ConfigError, match="converter_options.source_fps': expected a positive finite number"):
        no_hang(load_streams, task, str(root))


def test_nothing_to_evaluate_is_an_error(tmp_path):
    root = three_frames(tmp_path, "stream,frame,labels\n")
    with pytest.raises(DatasetError, match="the generic converter found no frames to evaluate"):
        load_streams(task_in(tmp_path, extra="converter_options: {unlabeled: skip}\n"), str(root))


def test_columns_must_name_different_columns(tmp_path):
    root = three_frames(tmp_path, "stream,frame,labels\ns,0.jpg,car\ns,1.jpg,\ns,2.jpg,\n")
    with pytest.raises(ConfigError, match="converter_options.columns': expected a different column name"):
        load_streams(task_in(tmp_path, extra="converter_options: {columns: {labels: frame}}\n"), str(root))
