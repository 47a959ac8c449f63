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


# -- a cache file edited by hand or damaged is never used silently ------------------------------------------------


def _edit(path: Path, line: int, **changes):
    lines = path.read_text(encoding="utf-8").splitlines()
    rec = json.loads(lines[line])
    rec.update(changes)
    lines[line] = json.dumps(rec, sort_keys=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("line, changes, why", [
    (1, {"labels": ["bus"]}, "does not match"),  # a label changed by hand: valid JSON, right counts
    (0, {"fps": 5}, "does not match"),  # the header's rate changed
    (2, {"index": 1.7}, "'index' must be an integer >= 0, got 1.7"),
    (2, {"timestamp_s": float("nan")}, "'timestamp_s' must be a finite number, got nan"),
    (1, {"images": "a.jpg"}, "'images' must be a list of image paths"),
    (0, {"sha256": None}, "does not match"),
])
def test_edited_cache_file_is_detected_and_rebuilt(setup, line, changes, why):
    root, _, yaml_path, calls = setup
    task = load_task(str(yaml_path))
    first, info = load_streams(task, str(root))
    path = Path(info["cache_file"])
    _edit(path, line, **changes)
    again, info2 = load_streams(task, str(root))
    assert not info2["cache_hit"] and len(calls) == 2
    assert info2["cache_rebuilt"].startswith(f"{path}: ") and why in info2["cache_rebuilt"]
    assert [s.frames for s in again] == [s.frames for s in first]
    assert [f.labels for f in read_streams(path)[1][0].frames] == [("car",), (), ("car", "bus")]  # whole again


def test_a_cache_file_without_checksum_is_rebuilt(setup):
    root, _, yaml_path, calls = setup
    task = load_task(str(yaml_path))
    _, info = load_streams(task, str(root))
    path = Path(info["cache_file"])
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    del header["sha256"]
    path.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    assert read_streams(path)[0]["task"] == "cached"  # a streams file may have none (written by hand)
    _, info2 = load_streams(task, str(root))
    assert "the header has no 'sha256'" in info2["cache_rebuilt"] and len(calls) == 2


def test_read_streams_refuses_an_edited_file(tmp_path):
    task = load_task("demo")
    p = tmp_path / "s.jsonl"
    write_streams(p, task, [Stream("s", "demo", 1.0, [Frame("s", 0, 0.0, ("a.png",), "q", ("car",))])])
    p.write_text(p.read_text().replace('"labels": ["car"]', '"labels": ["bus"]'))
    with pytest.raises(DatasetError) as e:
        read_streams(p)
    assert str(e.value).startswith("the file changed after it was written (its sha256 does not match)")
    assert f"path tried: {p}" in str(e.value)


def test_cache_that_cannot_be_written_keeps_the_conversion(setup, tmp_path, monkeypatch):
    root, _, yaml_path, calls = setup
    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(tmp_path / "cache_file"))
    (tmp_path / "cache_file").write_text("not a folder")
    streams, info = load_streams(load_task(str(yaml_path)), str(root))
    assert [f.labels for f in streams[0].frames] == [("car",), (), ("car", "bus")]
    assert not info["cache_hit"] and info["cache_warning"].startswith(f"cannot write {tmp_path / 'cache_file'}/")
    assert info["cache_warning"].endswith("Not a directory [ENOTDIR]; nothing was written (the streams were "
                                          "converted but are not cached)")


def test_disk_full_while_caching_keeps_the_conversion_and_the_old_file(setup, monkeypatch):
    import errno

    root, _, yaml_path, calls = setup
    task = load_task(str(yaml_path))
    _, info = load_streams(task, str(root))
    path = Path(info["cache_file"])
    path.write_text("damaged\n")
    monkeypatch.setattr("edgevlm_eval.core.io.os.fsync", lambda fd: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    streams, info2 = load_streams(task, str(root))
    assert len(streams) == 2 and len(calls) == 2
    assert info2["cache_warning"] == (f"cannot write {path}: No space left on device [ENOSPC]; the previous file is "
                                      "unchanged (the streams were converted but are not cached)")
    assert path.read_text() == "damaged\n"  # no temporary file is left beside it
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, path.name.replace(".jsonl", ".files")])


def test_cache_path_taken_by_a_folder(setup):
    root, _, yaml_path, calls = setup
    task = load_task(str(yaml_path))
    _, info = load_streams(task, str(root))
    path = Path(info["cache_file"])
    path.unlink()
    path.mkdir()
    streams, info2 = load_streams(task, str(root))
    assert len(streams) == 2 and "not a streams file: a folder" in info2["cache_rebuilt"]
    assert "Is a directory [EISDIR]" in info2["cache_warning"]


def test_converter_output_is_checked(tmp_path, monkeypatch):
    """A converter of one's own that builds Frames itself gets the same checks as ctx.frame's."""
    root = tmp_path / "data"
    make_dataset(root)
    task = load_task(str(write_task(tmp_path / "tasks")))

    def bad_box(self, ctx):
        f = Frame("a", 0, 0.0, ("x.png",), task.query, ("car",), (Box("car", 5, 0, 1, 1),))
        return [Stream("a", task.name, 1.0, [f])]

    monkeypatch.setattr(GenericConverter, "convert", bad_box)
    with pytest.raises(DatasetError, match=r"stream a frame 0: bad box \['car', 5, 0, 1, 1\]"):
        load_streams(task, str(root), use_cache=False)
    monkeypatch.setattr(GenericConverter, "convert", lambda self, ctx: [])
    with pytest.raises(DatasetError, match="the generic converter found no frames to evaluate"):
        load_streams(task, str(root), use_cache=False)
