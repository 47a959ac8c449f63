"""The stream cache and the streams JSONL format (edgevlm_eval/streams.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from edgevlm_eval.core.errors import DatasetError
from edgevlm_eval.tasks.streams import FORMAT, cache_dir, load_streams, read_streams, write_streams
from edgevlm_eval.tasks import TASKS_DIR, load_task
from edgevlm_eval.tasks.demo import DemoConverter
from edgevlm_eval.tasks.generic import GenericConverter
from edgevlm_eval.core.types import Box, Frame, Stream


def make_dataset(root: Path) -> Path:
    for s, n in (("a", 3), ("b", 2)):
        d = root / "frames" / s
        d.mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8)).save(d / f"{i}.jpg")
    labels = root / "labels.csv"
    labels.write_text("stream,frame,labels\na,0.jpg,car\na,1.jpg,\na,2.jpg,car;bus\nb,0.jpg,bus\nb,1.jpg,car\n",
                      encoding="utf-8")
    return labels


def write_task(folder: Path, options: str = "{}", description: str = "mine") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    base = os.path.relpath(TASKS_DIR / "_multi_object.yaml", folder)
    p = folder / "cached.yaml"
    p.write_text(f"include: {base}\nname: cached\ndescription: {description}\nconverter: generic\ndataset: {{}}\n"
                 f"fps: 1\nconverter_options: {options}\nlabel_space:\n  labels: [car, bus]\n", encoding="utf-8")
    return p


@pytest.fixture
def counted(monkeypatch):
    """Count calls of the generic converter's convert."""
    calls = []
    real = GenericConverter.convert

    def convert(self, ctx):
        calls.append(ctx.work_dir)
        return real(self, ctx)

    monkeypatch.setattr(GenericConverter, "convert", convert)
    return calls


@pytest.fixture
def setup(tmp_path, counted):
    root = tmp_path / "data"
    labels = make_dataset(root)
    return root, labels, write_task(tmp_path / "tasks"), counted


def test_second_load_hits_the_cache_without_converting(setup):
    root, _, yaml_path, calls = setup
    task = load_task(str(yaml_path))
    first, info1 = load_streams(task, str(root))
    assert not info1["cache_hit"] and len(calls) == 1
    assert Path(info1["cache_file"]).is_file()
    assert Path(info1["cache_file"]).parent == cache_dir() / "streams"
    second, info2 = load_streams(load_task(str(yaml_path)), str(root))
    assert info2["cache_hit"] and len(calls) == 1
    assert info2["cache_key"] == info1["cache_key"]
    assert [s.frames for s in second] == [s.frames for s in first]
    assert [(s.id, s.task, s.fps, s.meta) for s in second] == [(s.id, s.task, s.fps, s.meta) for s in first]


def test_use_cache_false_converts_and_writes_nothing(setup):
    root, _, yaml_path, calls = setup
    task = load_task(str(yaml_path))
    _, info = load_streams(task, str(root), use_cache=False)
    load_streams(task, str(root), use_cache=False)
    assert len(calls) == 2 and not Path(info["cache_file"]).exists()


def key_of(yaml_path: Path, root: Path) -> str:
    return load_streams(load_task(str(yaml_path)), str(root))[1]["cache_key"]


def test_key_follows_options_and_yaml_but_not_the_description(setup, tmp_path):
    root, _, yaml_path, calls = setup
    k0 = key_of(yaml_path, root)
    assert key_of(write_task(tmp_path / "tasks", description="other words"), root) == k0
    k1 = key_of(write_task(tmp_path / "tasks", options="{label_separator: ';', unlabeled: skip}"), root)
    assert k1 != k0
    assert key_of(write_task(tmp_path / "tasks"), root) == k0  # back to the first YAML: cached
    assert len(calls) == 2


def test_key_follows_annotation_content_and_mtime(setup):
    root, labels, yaml_path, calls = setup
    k0 = key_of(yaml_path, root)
    st = labels.stat()
    # same size, other content, same mtime would not be seen (files are not hashed); the mtime is
    labels.write_text(labels.read_text().replace("b,1.jpg,car", "b,1.jpg,bus"), encoding="utf-8")
    os.utime(labels, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    streams, info = load_streams(load_task(str(yaml_path)), str(root))
    assert info["cache_key"] != k0 and not info["cache_hit"] and len(calls) == 2
    assert streams[1].frames[1].labels == ("bus",)  # the new content, not the cached one
    # touching the file alone (content unchanged) also invalidates
    os.utime(labels, ns=(st.st_atime_ns, st.st_mtime_ns + 9_000_000_000))
    assert key_of(yaml_path, root) not in (k0, info["cache_key"]) and len(calls) == 3
    # a new image in a stream folder changes the folder's mtime, which the generic converter lists
    k3 = key_of(yaml_path, root)
    Image.new("RGB", (8, 8)).save(root / "frames" / "b" / "2.jpg")
    d = root / "frames" / "b"
    os.utime(d, ns=(d.stat().st_atime_ns, d.stat().st_mtime_ns + 5_000_000_000))
    with pytest.raises(DatasetError, match="b/2.jpg"):  # converted again: the new frame has no labels
        load_streams(load_task(str(yaml_path)), str(root))
    assert k3 != k0 and len(calls) == 4


def test_key_follows_root_and_converter_version(setup, tmp_path, monkeypatch):
    root, _, yaml_path, calls = setup
    k0 = key_of(yaml_path, root)
    other = tmp_path / "copy"
    make_dataset(other)
    assert key_of(yaml_path, other) != k0
    monkeypatch.setattr(GenericConverter, "version", "999")
    assert key_of(yaml_path, root) != k0
    assert len(calls) == 3


@pytest.mark.parametrize("damage", ["garbage", "binary", "truncated", "not_a_mapping", "empty", "unknown_stream"])
def test_damaged_cache_file_is_rebuilt(setup, damage):
    root, _, yaml_path, calls = setup
    task = load_task(str(yaml_path))
    first, info = load_streams(task, str(root))
    path = Path(info["cache_file"])
    lines = path.read_text(encoding="utf-8").splitlines()
    if damage == "garbage":
        path.write_text("this is not json\n")
    elif damage == "binary":
        path.write_bytes(b"\xff\xfe\x00\x81garbage")
    elif damage == "truncated":  # a frame line lost: the header's counts no longer match
        path.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    elif damage == "not_a_mapping":
        path.write_text("[1, 2, 3]\n")
    elif damage == "empty":
        path.write_text("")
    elif damage == "unknown_stream":
        rec = json.loads(lines[-1])
        rec["stream"] = "zzz"
        path.write_text("\n".join(lines[:-1] + [json.dumps(rec)]) + "\n", encoding="utf-8")
    again, info2 = load_streams(task, str(root))
    assert not info2["cache_hit"] and len(calls) == 2
    assert [s.frames for s in again] == [s.frames for s in first]
    assert read_streams(path)[1][0].frames == first[0].frames  # the file is whole again


def test_generated_images_missing_means_rebuild(tmp_path, monkeypatch):
    calls = []
    real = DemoConverter.convert
    monkeypatch.setattr(DemoConverter, "convert", lambda self, ctx: calls.append(1) or real(self, ctx))
    base = os.path.relpath(TASKS_DIR / "demo.yaml", tmp_path)
    p = tmp_path / "tiny_demo.yaml"
    p.write_text(f"include: {base}\nname: tiny_demo\nconverter_options: {{n_streams: 1, frames_per_stream: 3}}\n")
    task = load_task(str(p))
    streams, _ = load_streams(task)
    assert load_streams(task)[1]["cache_hit"] and len(calls) == 1
    os.unlink(streams[0].frames[-1].images[0])
    again, info = load_streams(task)
    assert not info["cache_hit"] and len(calls) == 2
    assert Path(again[0].frames[-1].images[0]).is_file()


# -- the JSONL format ------------------------------------------------------------------------------------


def test_write_read_round_trip(tmp_path):
    task = load_task("demo")
    f = [Frame("s1", 0, 0.0, ("a.png",), "q?", ("car", "bus"), (Box("car", 1.5, 2, 3, 4.25),), meta={"x": [1, 2]}),
         Frame("s1", 1, 1.0, ("a.png", "b.png"), "q?", (), scored=False),
         Frame("s0", 0, 0.5, ("c.png",), "q?", ("pedestrian",))]
    streams = [Stream("s1", "demo", 1.0, f[:2], meta={"theme": "city"}), Stream("s0", "demo", 1.0, f[2:])]
    path = tmp_path / "out.jsonl"
    write_streams(path, task, streams, {"note": "hi"})
    header, back = read_streams(path)
    assert header["format"] == FORMAT and header["task"] == "demo" and header["fps"] == 1.0
    assert header["streams"] == {"s1": {"n_frames": 2, "theme": "city"}, "s0": {"n_frames": 1}}
    assert header["labels"] == task.label_space.names and header["note"] == "hi"
    # streams come back in the header's order, which is sorted by id (load_streams sorts by id too)
    assert [(s.id, s.task, s.fps, s.meta) for s in back] == [("s0", "demo", 1.0, {}),
                                                              ("s1", "demo", 1.0, {"theme": "city"})]
    assert [s.frames for s in back] == [f[2:], f[:2]]
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[2]) == {"stream": "s1", "index": 1, "timestamp_s": 1.0,
                                                         "images": ["a.png", "b.png"], "query": "q?",
                                                         "labels": [], "scored": False}


def test_read_streams_rejects_other_files(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"format": "something/else"}\n')
    with pytest.raises(DatasetError, match="not a streams file") as e:
        read_streams(p)
    assert str(p) in str(e.value)
    task = load_task("demo")
    write_streams(p, task, [Stream("s", "demo", 1.0, [Frame("s", 0, 0.0, ("a",), "q", ())])])
    assert read_streams(p, "demo")[0]["task"] == "demo"
    with pytest.raises(DatasetError, match="streams of task 'demo', not 'nuscenes'"):
        read_streams(p, "nuscenes")
