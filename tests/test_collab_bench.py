"""The engine benchmark script still runs (tiny sizes; the figures themselves are not asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"


def test_bench_engine_smoke(capsys):
    spec = importlib.util.spec_from_file_location("bench_engine", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--streams", "3", "--frames", "7", "--repeat", "1", "--skip-real"]) == 0
    out = capsys.readouterr().out
    for name in ("svlm_only", "lvlm_only", "parallel", "laecips", "adas", "edgevlm", "decisions only"):
        assert name in out
