"""`record`: an LVLM trace from a scripted LVLM, batched or concurrent, resumable; search knobs."""

from __future__ import annotations

import json

import pytest

from edgevlm_eval.app.record import record
from edgevlm_eval.collab.search import Target, dry_lcr, parse_target, search
from edgevlm_eval.collab.simulator import SimConfig, Simulator
from edgevlm_eval.collab.strategies import run_of
from edgevlm_eval.collab.testing import ScriptedLVLM, ScriptedSVLM, replay, toy_streams, toy_task, toy_trace
from edgevlm_eval.collab.trace import read_trace
from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.model_adapters.base import Capabilities
from edgevlm_eval.core.types import Box


def _lvlm(**kw):
    answers = {("s0", 1): ("car, truck", [Box("car", 1, 2, 30, 40), Box("truck", 50, 50, 90, 80)]),
               ("s1", 0): ("<answer>pedestrian</answer>", [])}
    return ScriptedLVLM(answers, default="car", fail={("s1", 2): "HTTP 503"}, inference_s=0.25, **kw)


def test_record_batched(tmp_path):
    task = toy_task()
    streams = toy_streams(task, 2, 3)
    lv = _lvlm()
    out = record(task, streams, lv, tmp_path / "t.jsonl", model="scripted-lvlm", batch_size=4)
    assert [len(c) for c in lv.calls] == [1, 4, 1]  # the preflight (one real frame alone), then batches of 4
    tr = read_trace(out)
    tr.check_covers(streams, "toy")
    assert tr.header["task"] == "toy" and tr.header["model"] == "scripted-lvlm" and tr.header["latency"] == "measured"
    r = tr.get("s0", 1)
    assert r.answer == "car, truck" and r.rois == (Box("car", 1, 2, 30, 40), Box("truck", 50, 50, 90, 80))
    assert r.inference_s == 0.25 and r.total_s >= 0.25
    assert tr.get("s1", 2).ok is False and tr.get("s1", 2).error == "HTTP 503"
    line = json.loads(out.read_text().splitlines()[2])
    assert set(line) >= {"task", "stream", "frame", "model", "answer", "labels", "rois", "latency"}
    assert set(line["latency"]) == {"upload_s", "queue_s", "inference_s", "download_s", "total_s"}
    tr.reparse(task.label_space)
    assert tr.get("s1", 0).labels == ("pedestrian",)


def test_record_with_a_latency_source_keeps_frames_outside_the_selection(tmp_path):
    # a trace recorded on two streams, then `record` again on one of them (--limit 1): nothing is
    # asked, and the frames of the other stream, already paid for, stay in the trace
    task = toy_task()
    streams = toy_streams(task, 2, 3)
    path = tmp_path / "t.jsonl"
    record(task, streams, ScriptedLVLM(default="car"), path, model="m", latency="fixed:2")
    lv = ScriptedLVLM(default="car")
    record(task, streams[:1], lv, path, model="m", latency="fixed:2")
    assert lv.calls == []
    tr = read_trace(path)
    tr.check_covers(streams, "toy")
    assert len(tr.records) == 6 and all(r.total_s == 2.0 for r in tr.records.values())


def test_record_concurrent_and_resume(tmp_path):
    task = toy_task()
    streams = toy_streams(task, 2, 3)
    lv = _lvlm()
    lv.capabilities = Capabilities(grounding=True, batched=False)
    path = tmp_path / "t.jsonl"
    record(task, streams[:1], lv, path, model="m", concurrency=3)
    assert all(len(c) == 1 for c in lv.calls) and len(lv.calls) == 3  # the preflight is the first frame
    # killed mid-line, then started again on all streams: only the missing frames are recorded
    with open(path, "a") as fh:
        fh.write('{"stream": "s1", "fra')
    lv2 = _lvlm()
    record(task, streams, lv2, path, model="m")
    assert sorted(i for c in lv2.calls for i in c) == ["rec|s1|0", "rec|s1|1", "rec|s1|2"]
    tr = read_trace(path)
    assert len(tr.records) == 6
    with pytest.raises(Exception, match="cannot resume"):
        record(task, streams, _lvlm(), path, model="other")


def test_record_with_a_latency_source(tmp_path):
    task = toy_task()
    streams = toy_streams(task, 1, 3)
    path = record(task, streams, _lvlm(), tmp_path / "t.jsonl", model="m", latency="fixed:2.5")
    tr = read_trace(path)
    assert [tr.get("s0", t).total_s for t in range(3)] == [2.5] * 3
    assert tr.header["latency"] == "fixed:2.5"
    measured = json.loads(path.read_text().splitlines()[1])["latency"]["measured_total_s"]
    assert measured < 1
    # recording again (nothing left to record) with another source keeps the measured total
    record(task, streams, _lvlm(), path, model="m", latency="fixed:4")
    d = json.loads(path.read_text().splitlines()[1])["latency"]
    assert (d["total_s"], d["measured_total_s"]) == (4.0, measured)


# -- --target-lcr ---------------------------------------------------------------------------------


def test_parse_target():
    assert parse_target("0.25") == Target(0.25, 0.25)
    assert parse_target("20-30%") == Target(0.2, 0.3)
    assert parse_target("25%") == Target(0.25, 0.25)
    assert parse_target("1.0") == Target(1.0, 1.0)
    with pytest.raises(ConfigError, match="25%"):
        parse_target("1.5")  # one unit: a fraction, unless written with a percent sign
    with pytest.raises(ConfigError):
        parse_target("20-30")
    assert parse_target("0.35-0.45") == Target(0.35, 0.45)
    with pytest.raises(ConfigError):
        parse_target("0.5-0.2")
    with pytest.raises(ConfigError):
        parse_target("abc")


def test_dry_lcr_is_the_lcr_of_the_real_run():
    task = toy_task()
    streams = toy_streams(task, 3, 30)
    lat = lambda s, t: [0.4, 2.2, 0.9, 3.5, 1.2, 0.7, 6.0][(t * 3 + int(s[1:])) % 7]
    trace = toy_trace(streams, latency=lat)
    trace.reparse(task.label_space)
    sim = Simulator(task, streams, trace, None, SimConfig(check_images=False))
    for spec in (run_of("edgevlm", K_call=2, K_delay=2), run_of("parallel", K_call=0, K_delay=1),
                 run_of("adas", kappa=1.3)):
        out = replay(task, streams, trace, ScriptedSVLM(), [spec])
        lines = [ln for ls in out[spec.run_id].values() for ln in ls]
        assert dry_lcr(sim, spec) == pytest.approx(sum(ln.upload for ln in lines) / len(lines))
    res = search(sim, run_of("edgevlm"), Target(0.3, 0.3))
    with_4 = [row for row in res.tried if row[1] == 4]
    best4 = min(with_4, key=lambda row: abs(row[2] - 0.3))
    if abs(best4[2] - 0.3) <= 0.025:  # the given K_delay gets close enough: it is kept
        assert (res.spec.knobs.K_call, res.spec.knobs.K_delay) == (best4[0], 4) and len(res.tried) == len(with_4)
    else:  # otherwise other K_delays are tried and the nearest wins
        assert abs(res.lcr - 0.3) == pytest.approx(min(abs(row[2] - 0.3) for row in res.tried))
    band = search(sim, run_of("edgevlm"), Target(0.2, 0.6))
    assert 0.2 <= band.lcr <= 0.6 and band.spec.knobs.K_delay == 4


def test_theta_search_by_hand():
    # h = 0.0, 0.2, 0.2, 0.6, 1.0; upload when h <= theta; 5 frames
    hs = [0.0, 0.2, 0.2, 0.6, 1.0]
    theta = lambda lo: search(None, run_of("laecips"), Target(lo, lo), scores=hs, n_frames=5)  # noqa: E731
    assert theta(0.6).spec.knobs.theta == 0.2  # 3/5 upload
    assert theta(0.2).spec.knobs.theta == 0.0
    r = theta(0.0)
    assert r.lcr == 0 and r.spec.knobs.theta < 0  # nothing uploads
    assert theta(1.0).spec.knobs.theta == 1.0


def test_score_search_downward_knob():
    # a knob that uploads when the score is >= the threshold (direction -1)
    from edgevlm_eval.collab.search import search_score
    from edgevlm_eval.collab.strategy import LcrKnob

    knob = LcrKnob("threshold", direction=-1, by_score=True)
    base = run_of("laecips")
    hs = [0.1, 0.5, 0.5, 0.9]
    r = search_score(hs, 4, base.with_(), Target(0.75, 0.75), LcrKnob("theta", direction=-1, by_score=True))
    assert r.lcr == 0.75 and r.spec.knobs.theta == 0.5  # 0.5, 0.5, 0.9 are >= 0.5
    assert knob.direction == -1


def test_score_search_never_counts_frames_without_a_score_as_uploads():
    # None: the SVLM did not run on the frame (its image was unusable); the run never uploads such
    # a frame (why "image_error"), whatever the threshold, so the search must not count it
    from edgevlm_eval.collab.search import search_score
    from edgevlm_eval.collab.strategy import LcrKnob

    up = LcrKnob("theta", direction=+1, by_score=True)  # LAECIPS: upload when h <= theta
    r = search_score([None, 0.5, 0.9, 1.0], 4, run_of("laecips"), Target(0.25, 0.25), up)
    assert r.spec.knobs.theta == 0.5 and r.lcr == 0.25  # only the 0.5 frame uploads
    r = search_score([None, 0.5, 0.9, 1.0], 4, run_of("laecips"), Target(1.0, 1.0), up)
    assert r.lcr == 0.75  # at most the three frames with a score
    down = LcrKnob("theta", direction=-1, by_score=True)  # upload when score >= threshold
    r = search_score([None, 0.1, 0.5, 0.9], 4, run_of("laecips"), Target(1.0, 1.0), down)
    assert r.lcr == 0.75 and r.spec.knobs.theta == 0.1


def test_replay_maps_roi_labels_into_the_task_space(tmp_path):
    """ROIs keep the model's own words in the trace; replay maps them (synonyms, plurals), keeps the
    largest per label and drops what names no label."""
    from edgevlm_eval.core.labels import LabelSpace
    from edgevlm_eval.core.types import Box
    from edgevlm_eval.collab.trace import TraceRecord, read_trace, write_trace

    rois = (Box("Cars", 0, 0, 10, 10), Box("car", 0, 0, 30, 30), Box("people", 5, 5, 8, 9), Box("spaceship", 0, 0, 99, 99))
    rec = TraceRecord(stream="s", frame=0, answer="cars and people", labels=(), rois=rois, ok=True, error=None,
                      total_s=0.5)
    path = tmp_path / "t.jsonl"
    write_trace(path, {"task": "toy", "model": "m"}, [rec])
    trace = read_trace(path)
    assert [b.label for b in trace.records[("s", 0)].rois] == ["Cars", "car", "people", "spaceship"]  # raw words kept
    trace.reparse(LabelSpace(names=["car", "pedestrian"], synonyms={"pedestrian": ["people"]}))
    r = trace.records[("s", 0)]
    assert r.labels == ("car", "pedestrian")
    assert r.rois == (Box("car", 0, 0, 30, 30), Box("pedestrian", 5, 5, 8, 9))
