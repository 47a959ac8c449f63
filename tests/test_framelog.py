"""The per-frame log: truncated last lines, kill-and-resume to the same results, no frame twice."""

from __future__ import annotations

import json

import pytest

from edgevlm_eval.collab.accounting import summarise, without_timings
from edgevlm_eval.collab.simulator import SimConfig, Simulator, load_done
from edgevlm_eval.collab.strategies import run_of
from edgevlm_eval.collab.testing import ScriptedSVLM, toy_streams, toy_task, toy_trace
from edgevlm_eval.core.errors import DatasetError
from edgevlm_eval.core.records import FrameLine, FrameLogWriter, check_unique, read_framelog

SPECS = [run_of("edgevlm", K_call=2, K_delay=2), run_of("laecips", theta=0.5), run_of("adas", kappa=1.5),
         run_of("parallel", K_call=1, K_delay=3), run_of("svlm_only")]


class Killed(Exception):
    pass


def _svlm(kill_after: int | None = None):
    """Answers depend on the frame and on whether the history holds an LVLM entry, so a wrongly
    rebuilt state after resume would change the outputs."""

    calls = {"n": 0}

    def fn(req):
        stream, frame = req.id.split("|")[-2:]
        lv = any(e.source == "lvlm" for e in req.history)
        return "car, truck" if lv else ("pedestrian" if int(frame) % 3 else "car")

    svlm = ScriptedSVLM(fn=fn, probs={("s0", t): [0.95] for t in range(0, 40, 4)}, default_prob=0.3)
    if kill_after is not None:
        orig = svlm.generate

        def generate(reqs):
            calls["n"] += 1
            if calls["n"] > kill_after:
                raise Killed()
            return orig(reqs)

        svlm.generate = generate
    return svlm


def _world():
    task = toy_task()
    streams = toy_streams(task, 3, 14, truth=lambda s, t: ("car", "truck") if t % 2 else ("pedestrian",))
    lat = lambda s, t: [0.4, 2.2, 0.9, 3.5, 1.2, 0.7, 5.0][(t + int(s[1:])) % 7]
    trace = toy_trace(streams, latency=lat, answer="car, truck")
    trace.reparse(task.label_space)
    return task, streams, trace


def _run(path, svlm, done=None, append=False):
    task, streams, trace = _world()
    log = FrameLogWriter(path, {"config_hash": "h"}, append=append)
    sim = Simulator(task, streams, trace, svlm, SimConfig(check_images=False, edge_latency=0.2), log=log, done=done)
    try:
        sim.run(SPECS)
    finally:
        log.close()
    return task


def test_kill_and_resume_gives_the_same_results(tmp_path):
    full = tmp_path / "full.jsonl"
    task = _run(full, _svlm())
    _, ref_lines = read_framelog(full)
    ref = without_timings(summarise(ref_lines, task))

    part = tmp_path / "part.jsonl"
    with pytest.raises(Killed):
        _run(part, _svlm(kill_after=6))
    # a kill in the middle of a write leaves half a line without its newline
    with open(part, "a") as fh:
        fh.write('{"run": "edgevlm", "stream": "s0", "fra')
    header, lines = read_framelog(part)
    assert header["config_hash"] == "h"
    assert 0 < len(lines) < len(ref_lines)
    svlm2 = _svlm()
    _run(part, svlm2, done=load_done(lines), append=True)
    _, lines2 = read_framelog(part)
    check_unique(lines2)  # no frame logged twice
    assert len(lines2) == len(ref_lines) == 3 * 14 * len(SPECS)
    assert without_timings(summarise(lines2, task)) == ref
    # the frames done before the kill were not sent to the SVLM again
    assert len(svlm2.requests) == len([ln for ln in ref_lines if ln.svlm]) - len([ln for ln in lines if ln.svlm])
    # and the per-frame lines themselves agree, timings aside
    strip = lambda ls: sorted((json.dumps({k: v for k, v in ln.to_json().items() if k not in ("engine_s", "svlm_s")},
                                          sort_keys=True) for ln in ls))
    assert strip(lines2) == strip(ref_lines)


def test_resume_with_other_settings_is_refused(tmp_path):
    part = tmp_path / "part.jsonl"
    with pytest.raises(Killed):
        _run(part, _svlm(kill_after=6))
    _, lines = read_framelog(part)
    task, streams, trace = _world()
    sim = Simulator(task, streams, trace, _svlm(), SimConfig(check_images=False, edge_latency=0.2),
                    done=load_done(lines))
    with pytest.raises(DatasetError, match="per-frame log disagrees"):
        sim.run([run_of("edgevlm", K_call=0, K_delay=1)])


def test_read_framelog_errors(tmp_path):
    p = tmp_path / "f.jsonl"
    good = json.dumps({"run": "a", "stream": "s", "frame": 0, "upload": False, "output": "svlm", "why": "never"})
    p.write_text('{"format": "edgevlm-eval.framelog/1"}\n' + good + '\nnot json\n{"run": "b"}\n')
    with pytest.raises(DatasetError, match="line 3: not JSON"):
        read_framelog(p)
    p.write_text('{"format": "edgevlm-eval.framelog/1"}\n{"run": "a"}\n')
    with pytest.raises(DatasetError, match="line 2: not a per-frame log line"):
        read_framelog(p)
    p.write_text('{"format": "other"}\n')
    with pytest.raises(DatasetError, match="not a per-frame log"):
        read_framelog(p)
    p.write_text('{"form')  # killed while writing the header
    assert read_framelog(p) == ({}, [])
    with pytest.raises(DatasetError, match="logged twice"):
        check_unique([FrameLine.from_json(json.loads(good))] * 2)
