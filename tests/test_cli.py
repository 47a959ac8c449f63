"""The command line as a user meets it: tasks, streams, the main command's errors, a user's task
folder with a shipped base included by name and a converter of their own."""

from __future__ import annotations

import argparse
import json
import os
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from edgevlm_eval.app.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_tasks_lists_the_shipped_tasks(capsys, monkeypatch):
    for env in ("NUSCENES_ROOT", "BDD100K_ROOT", "IPN_HAND_ROOT", "ACE_ROOT"):
        monkeypatch.delenv(env, raising=False)
    code, out, _ = run(capsys, "tasks", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert {"nuscenes", "bdd100k_mot", "ipn_hand", "ace", "demo"} <= set(rows)
    assert rows["ipn_hand"]["fps"] == 2 and rows["ipn_hand"]["images_per_query"] == 2
    assert len(rows["ipn_hand"]["labels"]) == 14 and rows["ipn_hand"]["multi_label"] is False
    assert len(rows["nuscenes"]["labels"]) == 10 and len(rows["bdd100k_mot"]["labels"]) == 10
    assert len(rows["ace"]["labels"]) == 8
    assert rows["nuscenes"]["data"] == "not found" and rows["demo"]["data"] == "not needed"
    code, out, _ = run(capsys, "tasks")  # the table renders too
    assert code == 0 and "ipn_hand" in out


def test_tasks_shows_data_found(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("ACE_ROOT", str(tmp_path))
    _, out, _ = run(capsys, "tasks", "--json")
    assert {r["name"]: r for r in json.loads(out)}["ace"]["data"] == "found"


def test_streams_on_demo_and_cache(capsys, tmp_path):
    out_file = tmp_path / "demo.jsonl"
    code, out, _ = run(capsys, "streams", "--task", "demo", "--out", str(out_file), "--limit", "2")
    assert code == 0 and "demo: 2 streams" in out
    lines = out_file.read_text().splitlines()
    header, first = json.loads(lines[0]), json.loads(lines[1])
    assert header["format"] == "edgevlm-eval.streams/1" and header["task"] == "demo"
    assert set(first) >= {"stream", "index", "timestamp_s", "images", "query", "labels"}
    assert first["index"] == 0 and first["timestamp_s"] == 0.0
    assert first["query"].startswith("Identify which object categories")
    assert Path(first["images"][0]).exists()
    n_frames = sum(v["n_frames"] for v in header["streams"].values())
    assert len(lines) == 1 + n_frames
    code, out, _ = run(capsys, "streams", "--task", "demo", "--out", str(out_file), "--limit", "2")
    assert "(from cache)" in out


def test_unknown_task_lists_nearest(capsys):
    code, _, err = run(capsys, "streams", "--task", "ipn_hnad", "--out", "x.jsonl")
    assert code == 2
    assert "unknown task 'ipn_hnad'" in err
    assert err.split("nearest first): ")[1].startswith("ipn_hand")


def test_missing_data_root_names_path_and_layout(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("BDD100K_ROOT", raising=False)
    code, _, err = run(capsys, "--task", "bdd100k_mot", "--data-root", str(tmp_path / "nowhere"))
    assert code == 2
    assert str(tmp_path / "nowhere") in err and "labels/box_track_20" in err
    code, _, err = run(capsys, "streams", "--task", "bdd100k_mot", "--out", str(tmp_path / "x.jsonl"))
    assert code == 2 and "$BDD100K_ROOT" in err


def _user_dataset(root: Path, corrupt: bool = False):
    frames = root / "frames" / "cam1"
    frames.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (200, 0, 0)).save(frames / f"{i:03d}.png")
    if corrupt:
        (frames / "001.png").write_bytes(b"not a png at all")
    (root / "labels.csv").write_text("stream,frame,labels\ncam1,000.png,forklift\ncam1,001.png,\n"
                                     "cam1,002.png,forklift;person\n")


def test_user_task_includes_shipped_bases_by_name(capsys, tmp_path):
    tasks = tmp_path / "my_tasks"
    tasks.mkdir()
    (tasks / "warehouse.yaml").write_text(textwrap.dedent("""
        name: warehouse
        include: [_multi_object.yaml, _generic.yaml]
        dataset: {root_env: WAREHOUSE_ROOT_T}
        label_space:
          labels: [forklift, {name: person, synonyms: [worker]}]
        """))
    _user_dataset(tmp_path / "data", corrupt=True)
    out_file = tmp_path / "w.jsonl"
    code, out, _ = run(capsys, "streams", "--task", "warehouse", "--tasks-dir", str(tasks),
                       "--data-root", str(tmp_path / "data"), "--out", str(out_file), "--check-images")
    assert code == 0, out
    frames = [json.loads(x) for x in out_file.read_text().splitlines()[1:]]
    assert [f["labels"] for f in frames] == [["forklift"], [], ["forklift", "person"]]
    assert "1 frame images missing, corrupt or too large" in out and "cam1 frame 1: corrupt image" in out


def test_user_converter_by_import_path(capsys, tmp_path, monkeypatch):
    (tmp_path / "my_conv.py").write_text(textwrap.dedent("""
        from edgevlm_eval.tasks import Converter
        from edgevlm_eval.core.types import Stream

        class Shelf(Converter):
            name = "shelf"
            def convert(self, ctx):
                frames = [ctx.frame("s0", i, float(i), [str(ctx.root / "x.png")], ["box"] if i % 2 else [])
                          for i in range(4)]
                return [Stream(id="s0", task=ctx.task.name, fps=1.0, frames=frames)]
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "shelf.yaml").write_text(textwrap.dedent("""
        name: shelf
        include: _multi_object.yaml
        converter: my_conv:Shelf
        dataset: {}
        label_space: {labels: [box]}
        """))
    out_file = tmp_path / "s.jsonl"
    code, out, err = run(capsys, "streams", "--task", str(tmp_path / "shelf.yaml"), "--data-root", str(tmp_path),
                         "--out", str(out_file))
    assert code == 0, err
    frames = [json.loads(x) for x in out_file.read_text().splitlines()[1:]]
    assert [f["labels"] for f in frames] == [[], ["box"], [], ["box"]]
    (tmp_path / "bad.yaml").write_text((tmp_path / "shelf.yaml").read_text().replace("my_conv:Shelf", "my_conv:Nope"))
    code, _, err = run(capsys, "streams", "--task", str(tmp_path / "bad.yaml"), "--data-root", str(tmp_path),
                       "--out", str(out_file))
    assert code == 2 and "my_conv:Nope" in err


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for word in ("--task", "--svlm", "--lvlm", "--data-root", "--limit", "--output-dir", "streams", "tasks", "models"):
        assert word in out



def test_help_of_a_switch_that_sets_a_knob_gives_the_switch_default():
    # --laecips-strict sets laecips_fallback=false; its help said "default True" (the knob's default), which
    # read as if the switch were on by default
    from edgevlm_eval.app.cli import build_run_parser
    act = next(a for a in build_run_parser()._actions if "--laecips-strict" in a.option_strings)
    assert "default True" not in act.help
    assert act.help.endswith("(laecips, laecips-clf; default: off, laecips_fallback=True)")

# -- bad arguments and bad data at the command line ----------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--limit", "-1"], "argument --limit: expected a positive whole number (1 or more), got '-1'"),
    (["--limit", "0"], "argument --limit: expected a positive whole number (1 or more), got '0'"),
    (["--max-frames", "0"], "argument --max-frames: expected a positive whole number (1 or more), got '0'"),
    (["--max-frames", "two"], "argument --max-frames: expected a positive whole number (1 or more), got 'two'"),
])
def test_limit_and_max_frames_must_be_positive(capsys, tmp_path, args, message):
    for argv in (["streams", "--task", "demo", "--out", str(tmp_path / "x.jsonl"), *args],
                 ["record", "--task", "demo", "--lvlm", "demo-lvlm", "--out", str(tmp_path / "x.jsonl"), *args],
                 ["--task", "demo", "--svlm", "demo-svlm", "--lvlm", "demo-lvlm", *args]):  # the main command too
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_positive_int():
    from edgevlm_eval.app.args import positive_count

    assert positive_count("3") == 3 and positive_count(" 12 ") == 12
    for bad in ("0", "-1", "1.5", "", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a positive whole number"):
            positive_count(bad)


def test_tasks_lists_broken_yamls_with_their_error_and_fails(capsys, tmp_path):
    (tmp_path / "latin.yaml").write_bytes("name: latin\ndescription: caf\xe9\n".encode("latin-1"))
    (tmp_path / "typo.yaml").write_text("name: typo\ninclude: [_multi_object.yaml, _generic.yaml]\nconverter: genric\n"
                                        "dataset: {}\nlabel_space: {labels: ['[bold]car', bus]}\n")
    code, out, _ = run(capsys, "tasks", "--json", "--tasks-dir", str(tmp_path))
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 1
    assert rows["latin"]["error"].endswith("YAML file is not UTF-8 text (byte 0xe9 at line 2, column 17); save it as UTF-8")
    assert rows["typo"]["error"].startswith("unknown converter 'genric'")
    assert "error" not in rows["demo"]
    code, out, _ = run(capsys, "tasks", "--tasks-dir", str(tmp_path))
    assert code == 1 and "unknown converter 'genric'" in out
    (tmp_path / "typo.yaml").write_text((tmp_path / "typo.yaml").read_text().replace("genric", "generic"))
    (tmp_path / "latin.yaml").unlink()
    code, out, _ = run(capsys, "tasks", "--tasks-dir", str(tmp_path))
    assert code == 0 and "[bold]car, bus" in out  # YAML text is shown as written, not as markup
    code, _, err = run(capsys, "tasks", "--tasks-dir", str(tmp_path / "nope"))
    assert code == 2 and "nope: task folder (--tasks-dir) not found" in err


def _warehouse(tmp_path) -> Path:
    tasks = tmp_path / "my_tasks"
    tasks.mkdir()
    (tasks / "warehouse.yaml").write_text("name: warehouse\ninclude: [_multi_object.yaml, _generic.yaml]\n"
                                          "dataset: {root_env: WAREHOUSE_ROOT_T}\n"
                                          "label_space: {labels: [forklift, person]}\n")
    _user_dataset(tmp_path / "data")
    return tasks


def test_streams_check_images_reports_a_decompression_bomb(capsys, tmp_path):
    import struct
    import zlib

    tasks = _warehouse(tmp_path)
    w, h = 15000, 15000  # 225 Mpx in a 27 KB PNG
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(b"\x00" * (1 + w // 8)) for _ in range(h)) + comp.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "data" / "frames" / "cam1" / "001.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    code, out, err = run(capsys, "streams", "--task", "warehouse", "--tasks-dir", str(tasks), "--data-root",
                         str(tmp_path / "data"), "--out", str(tmp_path / "w.jsonl"), "--check-images")
    assert code == 0, err
    assert "1 frame images missing, corrupt or too large:" in out
    assert f"cam1 frame 1: image too large: {bomb} (PIL: Image size (225000000 pixels) exceeds limit" in out


def test_streams_output_errors_and_cache_warnings(capsys, tmp_path, monkeypatch):
    tasks = _warehouse(tmp_path)
    common = ["streams", "--task", "warehouse", "--tasks-dir", str(tasks), "--data-root", str(tmp_path / "data")]
    (tmp_path / "out_dir").mkdir()
    code, _, err = run(capsys, *common, "--out", str(tmp_path / "out_dir"))
    assert code == 2 and err.strip() == f"error: cannot write {tmp_path / 'out_dir'}: Is a directory [EISDIR]; " \
                                        "nothing was written"
    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(tmp_path / "not_a_folder"))
    (tmp_path / "not_a_folder").write_text("x")
    code, out, err = run(capsys, *common, "--out", str(tmp_path / "w.jsonl"))
    assert code == 0 and "warehouse: 1 streams, 3 frames" in out
    assert "warning: cannot write" in err and "(the streams were converted but are not cached)" in err
    code, _, err = run(capsys, *common[:-2], "--data-root", "", "--out", str(tmp_path / "w.jsonl"))
    assert code == 2 and "the dataset root given (--data-root) is an empty string" in err


def test_damaged_cache_is_reported_when_converted_again(capsys, tmp_path):
    tasks = _warehouse(tmp_path)
    common = ["streams", "--task", "warehouse", "--tasks-dir", str(tasks), "--data-root", str(tmp_path / "data"),
              "--out", str(tmp_path / "w.jsonl")]
    run(capsys, *common)
    (cache,) = (Path(os.environ["EDGEVLM_CACHE_DIR"]) / "streams").glob("warehouse-*.jsonl")
    cache.write_text(cache.read_text().replace('"forklift"', '"person"', 1))
    code, out, err = run(capsys, *common)
    assert code == 0 and "(from cache)" not in out
    assert f"stream cache not used, converted again: {cache}: the file changed after it was written" in err
    code, out, err = run(capsys, *common)
    assert "(from cache)" in out and err == ""
