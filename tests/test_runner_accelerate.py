"""A real 2-process run under `accelerate launch` (CPU, gloo barrier) equals the 1-process run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from edgevlm_eval.collab.accounting import without_timings

SCRIPT = textwrap.dedent('''
    import sys
    from types import SimpleNamespace
    from edgevlm_eval.app import pipeline
    from edgevlm_eval.app.options import build_config
    from edgevlm_eval.model_adapters.base import Capabilities
    from edgevlm_eval.app.cli import build_run_parser
    from edgevlm_eval.collab.testing import ScriptedSVLM, toy_streams, toy_task, toy_trace
    from edgevlm_eval.collab.trace import write_trace
    import edgevlm_eval.model_adapters.registry as reg

    out, trace_path, write = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    task = toy_task()
    streams = toy_streams(task, 5, 15, truth=lambda s, t: ("car", "truck"))
    if write:
        tr = toy_trace(streams, latency=lambda s, t: [0.4, 2.2, 0.9, 3.5, 1.2][(t * 7 + int(s[1:])) % 5],
                       answer="car, truck")
        write_trace(trace_path, {"task": "toy", "model": "m"}, tr.records.values())

    def fn(req):
        lv = any(e.source == "lvlm" for e in req.history)
        return "car, truck" if lv else "car"

    reg.load_adapter = lambda spec, **kw: ScriptedSVLM(fn=fn, default_prob=0.5)
    reg.resolve = lambda spec: SimpleNamespace(name=spec, capabilities=Capabilities(logprobs=True), edge_latency_s=None, options={})
    args = build_run_parser().parse_args(["--task", "toy", "--svlm", "x", "--trace", trace_path, "--output-dir", out,
                                          "--no-image-check", "--edge-latency", "fixed:0.2",
                                          "--strategy", "edgevlm,laecips,svlm_only", "--target-lcr", "0.3"])
    sys.exit(pipeline.main(build_config(args), task=task, streams=streams))
''')


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    exe = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or shutil.which("accelerate")
    if exe is None:
        pytest.skip("accelerate is not installed")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    trace = tmp_path / "trace.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), str(trace), "1"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert one.returncode == 0, one.stderr
    # --multi_gpu without GPUs still launches N CPU processes through torchrun (accelerate's --cpu
    # launcher needs MPI for more than one process)
    two = subprocess.run([exe, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
                          str(script), str(tmp_path / "two"), str(trace), "0"], capture_output=True, text=True,
                         env=env, timeout=180)
    assert two.returncode == 0, two.stderr[-3000:]
    name = "edgevlm+laecips+svlm_only"
    r1 = json.loads((tmp_path / "one" / "toy" / "x__m" / name / "results.json").read_text())
    r2 = json.loads((tmp_path / "two" / "toy" / "x__m" / name / "results.json").read_text())
    assert sorted(p.name for p in (tmp_path / "two" / "toy" / "x__m" / name).glob("frames*")) == [
        "frames-000-of-002.jsonl", "frames-001-of-002.jsonl"]
    assert r2["provenance"]["world"] == 2
    runs1, runs2 = without_timings(r1["tasks"]["toy"]["runs"]), without_timings(r2["tasks"]["toy"]["runs"])
    assert runs1 == runs2
    assert runs1["laecips"]["search"]["target"] == "30"
