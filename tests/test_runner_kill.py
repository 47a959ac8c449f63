"""Kill -9 a real run in the middle, start it again: same results as an uninterrupted run, no frame
logged twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from edgevlm_eval.collab.accounting import without_timings
from edgevlm_eval.core.records import check_unique, read_logs

SCRIPT = textwrap.dedent('''
    import sys, time
    from types import SimpleNamespace
    from edgevlm_eval.app import pipeline
    from edgevlm_eval.app.options import build_config
    from edgevlm_eval.model_adapters.base import Capabilities
    from edgevlm_eval.app.cli import build_run_parser
    from edgevlm_eval.collab.testing import ScriptedSVLM, toy_streams, toy_task, toy_trace
    from edgevlm_eval.collab.trace import write_trace
    import edgevlm_eval.model_adapters.registry as reg

    out, trace_path, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    task = toy_task()
    streams = toy_streams(task, 4, 30, truth=lambda s, t: ("car", "truck"))
    tr = toy_trace(streams, latency=lambda s, t: [0.4, 2.2, 0.9, 3.5, 1.2][(t * 7 + int(s[1:])) % 5],
                   answer="car, truck")
    write_trace(trace_path, {"task": "toy", "model": "m"}, tr.records.values())

    def fn(req):
        lv = any(e.source == "lvlm" for e in req.history)
        return "car, truck" if lv else ("car" if int(req.id.split("|")[-1]) % 3 else "pedestrian")

    class Slow(ScriptedSVLM):
        def generate(self, reqs):
            time.sleep(delay)
            return super().generate(reqs)

    reg.load_adapter = lambda spec, **kw: Slow(fn=fn, default_prob=0.5, keep=False)
    reg.resolve = lambda spec: SimpleNamespace(name=spec, capabilities=Capabilities(logprobs=True), edge_latency_s=None, options={})
    args = build_run_parser().parse_args(["--task", "toy", "--svlm", "x", "--trace", trace_path, "--output-dir", out,
                                          "--no-image-check", "--edge-latency", "fixed:0.2",
                                          "--strategy", "edgevlm,adas,laecips,svlm_only"])
    sys.exit(pipeline.main(build_config(args), task=task, streams=streams))
''')

NAME = "edgevlm+adas+laecips+svlm_only"


def test_sigkill_then_resume(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run([sys.executable, str(script), str(tmp_path / "ref"), str(tmp_path / "t1.jsonl"), "0"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert ref.returncode == 0, ref.stderr
    folder = tmp_path / "run" / "toy" / "x__m" / NAME
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run"), str(tmp_path / "t2.jsonl"), "0.05"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until some frames are logged, then kill -9
        log = folder / "frames.jsonl"
        if log.exists() and log.read_text().count("\n") > 40:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, partial = read_logs(folder)
    assert 40 <= len(partial) < 4 * 30 * 4
    assert not (folder / "results.json").exists()
    again = subprocess.run([sys.executable, str(script), str(tmp_path / "run"), str(tmp_path / "t2.jsonl"), "0"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    _, lines = read_logs(folder)
    check_unique(lines)
    assert len(lines) == 4 * 30 * 4
    r1 = json.loads((tmp_path / "ref" / "toy" / "x__m" / NAME / "results.json").read_text())["tasks"]["toy"]["runs"]
    r2 = json.loads((folder / "results.json").read_text())["tasks"]["toy"]["runs"]
    assert without_timings(r2) == without_timings(r1)
