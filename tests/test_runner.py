"""The main command's pipeline end to end on a toy task (streams given in memory): results JSON,
resume, rescore, protocols, --target-lcr, bad images, secrets, sharding, config precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgevlm_eval.app import pipeline
from edgevlm_eval.app.cli import build_run_parser
from edgevlm_eval.app.options import build_config
from edgevlm_eval.collab.accounting import without_timings
from edgevlm_eval.collab.testing import ScriptedSVLM, toy_streams, toy_task, toy_trace
from edgevlm_eval.collab.trace import write_trace
from edgevlm_eval.core.errors import ConfigError, UnknownNameError
from edgevlm_eval.core.records import read_logs
from edgevlm_eval.app.results import REDACTED, redact

N_STREAMS, N_FRAMES = 3, 12


def _fn(req):
    frame = int(req.id.split("|")[-1])
    lv = any(e.source == "lvlm" for e in req.history)
    return "car, truck" if lv else ("car" if frame % 2 else "pedestrian")


@pytest.fixture
def world(tmp_path, monkeypatch):
    task = toy_task()
    streams = toy_streams(task, N_STREAMS, N_FRAMES, truth=lambda s, t: ("car", "truck"))
    lat = lambda s, t: [0.4, 2.2, 0.9, 3.5, 1.2, 0.7][(t + int(s[1:])) % 6]
    tr = toy_trace(streams, latency=lat, answer="car, truck")
    trace = tmp_path / "trace.jsonl"
    write_trace(trace, {"task": "toy", "model": "scripted-lvlm"}, tr.records.values())
    made = []

    def load_adapter(spec, **kw):
        a = ScriptedSVLM(fn=_fn, probs={(s.id, t): [0.99] for s in streams for t in range(0, N_FRAMES, 3)},
                         default_prob=0.4)
        made.append(a)
        return a

    import edgevlm_eval.model_adapters.registry as reg

    monkeypatch.setattr(reg, "load_adapter", load_adapter)
    monkeypatch.setattr(reg, "resolve", _entry(logprobs=True))
    return task, streams, trace, tmp_path, made


def _entry(logprobs: bool):
    """A registry stand-in: any spec resolves to an entry of the scripted adapter."""
    from types import SimpleNamespace

    from edgevlm_eval.model_adapters.base import Capabilities

    return lambda spec: SimpleNamespace(name=spec, capabilities=Capabilities(logprobs=logprobs), edge_latency_s=None,
                                        options={})


PAIR = "scripted__scripted-lvlm"


def _cfg(tmp_path, trace, *extra):
    p = build_run_parser()
    args = p.parse_args(["--task", "toy", "--svlm", "scripted", "--lvlm", "scripted-lvlm", "--trace", str(trace),
                         "--output-dir", str(tmp_path / "out"), "--no-image-check", "--edge-latency", "fixed:0.2",
                         *extra])
    return build_config(args)


def _go(world, *extra, streams=None, code=0):
    task, all_streams, trace, tmp, _ = world
    cfg = _cfg(tmp, trace, *extra)
    assert pipeline.main(cfg, task=task, streams=streams or all_streams, stream_info={"cache_key": "k"}) == code
    return cfg


def _folder(world, name):
    return world[3] / "out" / "toy" / PAIR / name


def _results(world, name):
    return json.loads((_folder(world, name) / "results.json").read_text())


def test_all_strategies_results_json(world, capsys):
    # the toy frames have no image files: Distributed VLM uploads a fixed number of visual tokens
    _go(world, "--strategy", "all", "--uplink", "8", "--dvlm-tokens", "1824")
    doc = _results(world, "all")
    assert list(doc)[:2] == ["format", "provenance"]
    prov = doc["provenance"]
    for k in ("toolkit_version", "git_hash", "date", "python", "torch", "transformers", "config", "seeds", "models",
              "trace", "tasks", "config_hash"):
        assert k in prov
    assert prov["trace"]["sha256"] and prov["config"]["tau"] == 1.0 and prov["edge_latency"]["seconds"] == 0.2
    assert prov["tasks"]["toy"]["cache_key"] == "k" and prov["trace"]["model"] == "scripted-lvlm"
    block = doc["tasks"]["toy"]
    assert block["frames"] == N_STREAMS * N_FRAMES
    assert list(block["runs"]) == ["svlm_only", "lvlm_only", "distributed_vlm", "parallel", "laecips", "adas",
                                   "edgevlm", "edgevlm+CRM", "edgevlm+GGVR"]
    for rid, r in block["runs"].items():
        for k in ("spec", "metrics", "lcr", "lhl", "invalid", "unmapped", "timing", "output_sources", "decisions"):
            assert k in r, (rid, k)
        assert r["frames"] == N_STREAMS * N_FRAMES
    assert block["runs"]["svlm_only"]["lcr"] == 0 and block["runs"]["lvlm_only"]["lcr"] == 1
    assert block["runs"]["adas"]["label"] == "ADAS (proxy)" and block["runs"]["adas"]["display"]["proxy"] is True
    assert block["runs"]["edgevlm"]["spec"] == {"strategy": "edgevlm", "run": "edgevlm", "K_call": 3, "K_delay": 4.0,
                                                "crm": True, "ggvr": True, "grvr": True, "alpha": 0.7, "mu": 1.0}
    assert block["runs"]["svlm_only"]["display"]["reference"] is True
    # the ablation switches run at edgeVLM's own keyframes: same uploads, switches as named
    abl = {k: block["runs"][k] for k in ("edgevlm+CRM", "edgevlm+GGVR")}
    assert [(r["spec"]["crm"], r["spec"]["ggvr"], r["spec"]["grvr"]) for r in abl.values()] == [
        (True, False, False), (True, True, False)]
    assert all(r["lcr"] == block["runs"]["edgevlm"]["lcr"] for r in abl.values())
    _, lines = read_logs(_folder(world, "all"))
    assert len(lines) == 9 * N_STREAMS * N_FRAMES
    assert "toy: 9 runs" in capsys.readouterr().out


def test_all_adds_only_the_switch_rungs_below_the_users():
    from edgevlm_eval.collab.protocols import ablation_switches
    from edgevlm_eval.collab.strategies import run_of

    assert [i.spec.run_id for i in ablation_switches(run_of("edgevlm", grvr=False), None)] == ["edgevlm+CRM"]
    assert ablation_switches(run_of("edgevlm", ggvr=False, grvr=False), None) == []
    assert ablation_switches(run_of("edgevlm", crm=False), None) == []


def test_resume_after_a_kill_and_rescore(world):
    _go(world, "--strategy", "edgevlm,laecips,adas")
    folder = _folder(world, "edgevlm+laecips+adas")
    ref = _results(world, "edgevlm+laecips+adas")
    # kill: keep the header and the first 40 lines, and half of the next one
    log = folder / "frames.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:41]) + lines[41][:30])
    (folder / "results.json").unlink()
    _go(world, "--strategy", "edgevlm,laecips,adas")
    again = _results(world, "edgevlm+laecips+adas")
    strip = lambda d: without_timings(d["tasks"]["toy"]["runs"])
    assert strip(again) == strip(ref)
    _, logged = read_logs(folder)
    keys = [(ln.run, ln.stream, ln.frame) for ln in logged]
    assert len(keys) == len(set(keys)) == 3 * N_STREAMS * N_FRAMES
    # the SVLM only saw the frames that were not logged before the kill
    made = world[4]
    assert len(made[-1].requests) == 3 * N_STREAMS * N_FRAMES - 40
    # rescore: the same numbers from the log alone, without loading any model
    n_models = len(made)
    _go(world, "--strategy", "edgevlm,laecips,adas", "--rescore")
    assert len(made) == n_models
    re = _results(world, "edgevlm+laecips+adas")
    assert strip(re) == strip(ref)
    assert re["provenance"]["rescored"] is True


def test_resume_keeps_a_whole_last_line_without_its_newline(world):
    """A kill can stop the write right before a line's newline: the line is whole. Resume reads it
    as done (not recomputed), so the log must keep it, not cut it off as torn."""
    _go(world, "--strategy", "edgevlm")
    folder = _folder(world, "edgevlm")
    ref = _results(world, "edgevlm")
    log = folder / "frames.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:21]).rstrip("\n"))  # header + 20 whole lines, the last without "\n"
    (folder / "results.json").unlink()
    _go(world, "--strategy", "edgevlm")
    _, logged = read_logs(folder)
    keys = [(ln.run, ln.stream, ln.frame) for ln in logged]
    assert len(keys) == len(set(keys)) == N_STREAMS * N_FRAMES
    again = _results(world, "edgevlm")
    assert again["tasks"]["toy"]["runs"]["edgevlm"]["frames"] == N_STREAMS * N_FRAMES
    strip = lambda d: without_timings(d["tasks"]["toy"]["runs"])
    assert strip(again) == strip(ref)


def test_rescore_keeps_the_provenance_of_the_run(world):
    """--rescore rewrites results.json from run.json and the log: the latency sources the run used
    and its number of processes are part of what it reports, not lost by a rescore."""
    _go(world, "--strategy", "edgevlm,lvlm_only")
    ref = _results(world, "edgevlm+lvlm_only")["provenance"]
    assert ref["latency_sources"] == {"measured": {"spec": "measured"}} and ref["world"] == 1
    _go(world, "--strategy", "edgevlm,lvlm_only", "--rescore")
    re = _results(world, "edgevlm+lvlm_only")["provenance"]
    assert re["rescored"] is True
    for k in ("latency_sources", "world", "latency", "config_hash", "trace", "edge_latency", "metric_options"):
        assert re.get(k) == ref.get(k), k


def test_resume_progress_counts_each_frame_once(world, capsys):
    import re

    _go(world, "--strategy", "edgevlm")
    folder = _folder(world, "edgevlm")
    log = folder / "frames.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:21]))  # killed after 20 frames
    capsys.readouterr()
    _go(world, "--strategy", "edgevlm")
    captured = capsys.readouterr()
    counts = re.findall(r"toy: edgevlm: (\d+)/(\d+)", captured.out + captured.err)
    assert counts and all(int(a) <= int(b) for a, b in counts), counts[-1]
    assert counts[-1] == ("36", "36")


def test_all_without_uplink_skips_distributed_vlm(world, capsys):
    _go(world, "--strategy", "all")
    doc = _results(world, "all")
    assert "distributed_vlm" not in doc["tasks"]["toy"]["runs"] and len(doc["tasks"]["toy"]["runs"]) == 8
    assert "distributed_vlm skipped" in doc["provenance"]["notes"][0]
    assert "note: distributed_vlm skipped" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="uplink"):
        _go(world, "--strategy", "distributed_vlm", "--run-name", "d")


def test_other_configuration_in_the_same_folder_is_refused(world):
    _go(world, "--strategy", "edgevlm")
    with pytest.raises(ConfigError, match="another configuration"):
        _go(world, "--strategy", "edgevlm", "--K-call", "1")
    _go(world, "--strategy", "edgevlm", "--K-call", "1", "--overwrite")
    assert _results(world, "edgevlm")["tasks"]["toy"]["runs"]["edgevlm"]["spec"]["K_call"] == 1


def test_resume_is_refused_when_the_declared_edge_latency_changed(world, monkeypatch):
    """--edge-latency declared reads the SVLM entry's figure: a killed run resumed after that figure
    changed (a user's models.yaml edited) must not mix answers timed at both figures."""
    from types import SimpleNamespace

    import edgevlm_eval.model_adapters.registry as reg
    from edgevlm_eval.model_adapters.base import Capabilities

    def entry(seconds):
        return lambda spec: SimpleNamespace(name=spec, capabilities=Capabilities(logprobs=True), options={},
                                            edge_latency_s=seconds, edge_latency_basis="test")

    monkeypatch.setattr(reg, "resolve", entry(0.2))
    _go(world, "--strategy", "edgevlm", "--edge-latency", "declared")
    folder = _folder(world, "edgevlm")
    log = folder / "frames.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:21]))  # killed after 20 frames
    (folder / "results.json").unlink()
    monkeypatch.setattr(reg, "resolve", entry(1.5))  # now every SVLM answer is late (tau 1 s)
    with pytest.raises(ConfigError, match="another configuration"):
        _go(world, "--strategy", "edgevlm", "--edge-latency", "declared")


def test_resume_is_refused_when_the_latency_file_changed(world):
    """--latency file:F.csv: a killed run resumed after F.csv was edited must not mix the old and
    new LVLM latencies in one results.json."""
    _, streams, _, tmp, _ = world
    csv = tmp / "lat.csv"
    csv.write_text("stream,frame,latency_s\n" + "".join(f"{s.id},{f.index},0.5\n" for s in streams for f in s.frames))
    _go(world, "--strategy", "edgevlm", "--latency", f"file:{csv}")
    folder = _folder(world, "edgevlm")
    log = folder / "frames.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:21]))  # killed after 20 frames
    (folder / "results.json").unlink()
    # the frames not logged yet now answer late; the logged decisions cannot see it
    csv.write_text("".join(ln.replace(",0.5", ",3.0") if ln.split(",")[1].isdigit() and int(ln.split(",")[1]) >= 8
                           else ln for ln in csv.read_text().splitlines(keepends=True)))
    with pytest.raises(ConfigError, match="another configuration"):
        _go(world, "--strategy", "edgevlm", "--latency", f"file:{csv}")


def _killed_after_20_frames(world, name):
    folder = _folder(world, name)
    log = folder / "frames.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:21]))
    (folder / "results.json").unlink()


def test_resume_is_refused_when_the_svlm_entry_or_the_task_yaml_changed(world, monkeypatch):
    """Inputs that shape every answer but keep their names: the SVLM entry's options (a models.yaml
    edit: another checkpoint, max_new_tokens) and the task's YAML with an unchanged `version` (a
    reworded prompt). A killed run resumed after either must not mix answers of both."""
    import dataclasses
    from types import SimpleNamespace

    import edgevlm_eval.model_adapters.registry as reg
    from edgevlm_eval.model_adapters.base import Capabilities

    def entry(**options):
        return lambda spec: SimpleNamespace(name=spec, adapter="qwen2_5_vl", checkpoint="/ckpt", options=options,
                                            capabilities=Capabilities(logprobs=True), edge_latency_s=None,
                                            edge_latency_basis=None)

    monkeypatch.setattr(reg, "resolve", entry(max_new_tokens=32))
    _go(world, "--strategy", "edgevlm")
    _killed_after_20_frames(world, "edgevlm")
    monkeypatch.setattr(reg, "resolve", entry(max_new_tokens=8))
    with pytest.raises(ConfigError, match="another configuration"):
        _go(world, "--strategy", "edgevlm")
    monkeypatch.setattr(reg, "resolve", entry(max_new_tokens=32))
    _go(world, "--strategy", "edgevlm")  # the same entry again: resumes
    assert _results(world, "edgevlm")["tasks"]["toy"]["runs"]["edgevlm"]["frames"] == N_STREAMS * N_FRAMES

    task, all_streams, trace, tmp, _ = world
    _killed_after_20_frames(world, "edgevlm")
    reworded = dataclasses.replace(task, raw={**task.raw, "query": "Name every vehicle you see."})
    with pytest.raises(ConfigError, match="another configuration"):
        pipeline.main(_cfg(tmp, trace, "--strategy", "edgevlm"), task=reworded, streams=all_streams,
                      stream_info={"cache_key": "k"})


def test_unknown_strategy(world):
    with pytest.raises(UnknownNameError, match="known strategys|Known strategys"):
        _go(world, "--strategy", "edgevlm,foo")


def test_target_lcr_search(world):
    _go(world, "--strategy", "edgevlm,parallel,adas,laecips,svlm_only", "--target-lcr", "0.35-0.45")
    runs = _results(world, "edgevlm+parallel+adas+laecips+svlm_only")["tasks"]["toy"]["runs"]
    for rid in ("edgevlm", "parallel", "adas"):
        s = runs[rid]["search"]
        assert s["target"] == "35-45"
        # decisions of these strategies do not depend on the SVLM: the search's LCR is exact
        assert s["predicted_lcr"] == pytest.approx(runs[rid]["lcr"])
        assert 0.35 <= runs[rid]["lcr"] <= 0.45
        assert s["reached"] is True
    assert runs["laecips"]["search"]["knobs"]["theta"] != 0.95
    assert "lcr" in runs["svlm_only"] and "search" not in runs["svlm_only"]


def test_target_labels_read_back():
    from edgevlm_eval.collab.search import Target, parse_target

    for text in ("0.20-0.30", "0.25", "0.005-0.01"):
        t = parse_target(text)
        back = Target.from_label(t.label())
        assert (back.lo, back.hi) == (pytest.approx(t.lo), pytest.approx(t.hi))
    band = Target.from_label("50-60")
    assert (band.reached(0.5188), band.reached(0.675)) == (True, False)
    point = Target.from_label("25")
    assert (point.reached(0.26), point.reached(0.30)) == (True, False)


def test_a_target_the_knob_cannot_reach_is_flagged(world, capsys):
    # no K_call gives a call ratio this low on 12-frame streams (each stream uploads its first frame)
    _go(world, "--strategy", "edgevlm", "--target-lcr", "0.01-0.02", "--run-name", "low")
    doc = _results(world, "low")
    run = doc["tasks"]["toy"]["runs"]["edgevlm"]
    assert run["lcr"] > 0.02 and run["search"]["reached"] is False
    note = [n for n in doc["provenance"]["notes"] if n.startswith("edgevlm: LCR")]
    assert note and "outside its target 1-2 %" in note[0]
    assert "note: edgevlm: LCR" in capsys.readouterr().out


@pytest.mark.parametrize("protocol,n_rows,first_cols", [
    ("ablation", 4, ["group", "method"]),
    ("call-sweep", 19, ["sweep", "value", "LCR %", "LHL (frames)"]),
    ("delay", 28, ["group", "method"]),
])
def test_protocol_tables(world, protocol, n_rows, first_cols):
    _go(world, "--protocol", protocol)
    doc = _results(world, protocol)
    t = doc["protocol"]
    assert t["name"] == protocol and t["columns"][:len(first_cols)] == first_cols
    assert len(t["rows"]) == n_rows
    runs = doc["tasks"]["toy"]["runs"]
    if protocol == "ablation":
        assert [r[1] for r in t["rows"]] == ["Parallel", "+CRM", "+GGVR", "+GRVR"]
        assert all(runs[r]["lcr"] == 1.0 for r in runs)
    if protocol == "call-sweep":
        lcr = [r[2] for r in t["rows"] if r[0].startswith("K_call")]
        lhl = [r[3] for r in t["rows"] if r[0].startswith("K_call")]
        # fewer calls and older LVLM history as K_call grows (not strictly monotone on 12-frame streams)
        assert len(lcr) == 9 and lcr[0] == max(lcr) > lcr[-1] and lhl[0] == min(lhl) < lhl[-1]
        assert [r[2] for r in t["rows"] if r[0].startswith("K_delay")][-1] == 100.0  # K_call 0, K_delay inf
    if protocol == "delay":
        assert runs["edgevlm@d=3"]["spec"]["latency"] == "fixed:3"
        assert runs["parallel@d=2"]["output_sources"]["lvlm"] == 0  # every reply misses tau = 1 s
        # d = 1 s = tau: every frame is uploaded and answered in time, so edgeVLM is the LVLM
        assert runs["edgevlm@d=1"]["lcr"] == 1.0 and runs["edgevlm@d=1"]["output_sources"]["lvlm"] == 3 * 12
        assert runs["edgevlm@d=1"]["metrics"] == runs["lvlm_only@d=1"]["metrics"]


def test_main_protocol(world):
    _go(world, "--protocol", "main")
    doc = _results(world, "main")
    groups = [r[0] for r in doc["protocol"]["rows"]]
    assert groups.count("LCR 20-30 %") == 3 and groups.count("LCR 100 %") == 1
    # the paper's Table 2 order
    assert [r[1] for r in doc["protocol"]["rows"]][:6] == ["SVLM only", "LVLM only", "LAECIPS (authors' code)",
                                                          "ADAS (proxy)", "edgeVLM", "LAECIPS (authors' code)"]
    assert "distributed_vlm skipped" in doc["protocol"]["notes"][0]
    # the toy task has no calibration split: LAECIPS' classifier reading is left out, with a note
    assert any(n.startswith("laecips-clf skipped") for n in doc["protocol"]["notes"])
    assert doc["tasks"]["toy"]["runs"]["edgevlm@100"]["lcr"] == 1.0
    # a band a knob could not reach is said under the table too, not only in the provenance
    missed = [k for k, r in doc["tasks"]["toy"]["runs"].items() if (r.get("search") or {}).get("reached") is False]
    for k in missed:
        assert any(n.startswith(f"{k}: LCR") for n in doc["protocol"]["notes"]), (k, doc["protocol"]["notes"])
    assert [n for n in doc["provenance"]["notes"] if ": LCR" in n] == [n for n in doc["protocol"]["notes"] if ": LCR" in n]


def test_bad_images_are_invalid_and_counted(world, tmp_path):
    from PIL import Image

    task, _, trace, tmp, _ = world
    streams = toy_streams(task, 1, 4, image_dir=str(tmp_path / "img"))
    for f in streams[0].frames:
        Path(f.images[0]).parent.mkdir(parents=True, exist_ok=True)
        if f.index == 1:
            continue  # missing
        if f.index == 2:
            Path(f.images[0]).write_bytes(b"\xff\xd8\xff not a jpeg")
            continue
        Image.new("RGB", (8, 8), (f.index * 40, 0, 0)).save(f.images[0])
    import dataclasses

    cfg = dataclasses.replace(_cfg(tmp, trace, "--strategy", "svlm_only,lvlm_only"), image_check=True)
    assert pipeline.main(cfg, task=task, streams=streams) == 0
    runs = _results(world, "svlm_only+lvlm_only")["tasks"]["toy"]["runs"]
    for r in runs.values():
        assert r["invalid"]["by_reason"].get("image") == 2
    _, lines = read_logs(_folder(world, "svlm_only+lvlm_only"))
    bad = {ln.frame: ln.detail for ln in lines if ln.invalid == "image" and ln.run == "svlm_only"}
    assert "missing image" in bad[1] and "corrupt image" in bad[2]
    assert all(not ln.upload for ln in lines if ln.invalid == "image")


def test_secrets_are_redacted(world, monkeypatch):
    monkeypatch.setenv("MY_API_KEY", "sk-very-secret-123")
    _go(world, "--strategy", "svlm_only", "--run-name", "s")
    text = (_folder(world, "s") / "results.json").read_text() + (_folder(world, "s") / "run.json").read_text()
    assert "sk-very-secret-123" not in text
    assert redact({"api_key": "abc", "x": {"token": "t"}, "u": "http://h/?k=sk-very-secret-123", "n": 1}) == {
        "api_key": REDACTED, "x": {"token": REDACTED}, "u": f"http://h/?k={REDACTED}", "n": 1}


def test_shards_merge_to_the_single_process_result(world, monkeypatch):
    """Two processes, run one after the other (barriers stubbed): rank 1 then rank 0, which merges."""
    _go(world, "--strategy", "edgevlm,adas,svlm_only", "--run-name", "one")
    monkeypatch.setattr(pipeline, "barrier", lambda world: None)
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        _go(world, "--strategy", "edgevlm,adas,svlm_only", "--run-name", "two")
    folder = _folder(world, "two")
    assert sorted(p.name for p in folder.glob("frames*.jsonl")) == ["frames-000-of-002.jsonl",
                                                                      "frames-001-of-002.jsonl"]
    one, two = _results(world, "one"), _results(world, "two")
    assert without_timings(two["tasks"]["toy"]["runs"]) == without_timings(one["tasks"]["toy"]["runs"])
    assert pipeline.shard(world[1], 1, 2) == [world[1][1]]


def test_engine_config_yaml(world):
    tmp = world[3]
    cfg = tmp / "engine.yaml"
    cfg.write_text("latency: fixed:2\nK-call: 1\nstrategy: [edgevlm, svlm_only]\n")
    _go(world, "--engine-config", str(cfg), "--K-delay", "inf")
    doc = _results(world, "edgevlm+svlm_only")
    spec = doc["tasks"]["toy"]["runs"]["edgevlm"]["spec"]
    assert (spec["K_call"], spec["K_delay"]) == (1, "inf")
    assert doc["provenance"]["config"]["latency"] == "fixed:2"
    # fixed 2 s > tau: no LVLM answer is ever the output
    assert doc["tasks"]["toy"]["runs"]["edgevlm"]["output_sources"]["lvlm"] == 0
    cfg.write_text("K_cal: 1\n")
    with pytest.raises(ConfigError, match="key 'K_cal': unknown engine option; nearest: K_call"):
        _go(world, "--engine-config", str(cfg))
    cfg.write_text("tau: fast\n")
    with pytest.raises(ConfigError, match="tau.*expected a number"):
        _go(world, "--engine-config", str(cfg))


def test_flags_beat_engine_config_even_at_their_default(world):
    tmp = world[3]
    cfg = tmp / "engine.yaml"
    cfg.write_text("K_call: 5\ntau: 2.0\nstrategy: edgevlm\n")
    c = _cfg(tmp, world[2], "--engine-config", str(cfg), "--K-call", "3", "--tau", "1.0")
    assert dict(c.knobs)["K_call"] == 3 and c.tau == 1.0  # given on the command line: wins
    c = _cfg(tmp, world[2], "--engine-config", str(cfg))
    assert dict(c.knobs)["K_call"] == 5 and c.tau == 2.0  # not given: the YAML's
    _go(world, "--engine-config", str(cfg), "--K-call", "3", "--run-name", "p")
    assert _results(world, "p")["tasks"]["toy"]["runs"]["edgevlm"]["spec"]["K_call"] == 3


def test_per_strategy_knobs_on_the_command_line(world):
    _go(world, "--strategy", "edgevlm:K_call=1,K_delay=inf,name=ev1", "--strategy", "edgevlm,parallel:K_call=2",
        "--K-call", "4", "--run-name", "k")
    runs = _results(world, "k")["tasks"]["toy"]["runs"]
    assert list(runs) == ["ev1", "edgevlm", "parallel"]
    assert (runs["ev1"]["spec"]["K_call"], runs["ev1"]["spec"]["K_delay"]) == (1, "inf")
    assert runs["edgevlm"]["spec"]["K_call"] == 4  # the knob flag, for every strategy that has the knob
    assert runs["parallel"]["spec"]["K_call"] == 2  # the strategy's own knob beats the flag
    with pytest.raises(ConfigError, match="unknown knob"):
        _go(world, "--strategy", "parallel:crm=false", "--run-name", "x")
    with pytest.raises(ConfigError, match="two runs are named"):
        _go(world, "--strategy", "edgevlm,edgevlm", "--run-name", "x")


def test_laecips_without_token_probabilities(world, monkeypatch):
    import edgevlm_eval.model_adapters.registry as reg

    monkeypatch.setattr(reg, "resolve", _entry(logprobs=False))
    monkeypatch.setattr(reg, "load_adapter", lambda spec, **kw: ScriptedSVLM(fn=_fn, logprobs=False))
    with pytest.raises(ConfigError, match="laecips: it needs the SVLM's token probabilities"):
        _go(world, "--strategy", "edgevlm,laecips")
    _go(world, "--protocol", "ablation", "--run-name", "a")  # no laecips in it: fine
    _go(world, "--strategy", "all")
    doc = _results(world, "all")
    assert "laecips" not in doc["tasks"]["toy"]["runs"]
    assert any("laecips skipped" in n for n in doc["provenance"]["notes"])


def test_bootstrap_intervals(world):
    _go(world, "--strategy", "edgevlm,svlm_only", "--bootstrap", "200", "--bootstrap-seed", "5")
    doc = _results(world, "edgevlm+svlm_only")
    run = doc["tasks"]["toy"]["runs"]["edgevlm"]
    ci = run["ci"]["micro_f1"]
    assert ci["lo"] <= run["metrics"]["micro_f1"] <= ci["hi"] and ci["n_boot"] == 200 and ci["seed"] == 5
    assert run["ci"]["lcr"]["value"] == pytest.approx(run["lcr"])
    assert doc["provenance"]["seeds"]["bootstrap"] == 5


def test_unknown_switch_lists_the_nearest_known(capsys):
    with pytest.raises(SystemExit):
        build_run_parser().parse_args(["--task", "toy", "--no-crmm"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: --no-crmm" in err and "--no-crm" in err
