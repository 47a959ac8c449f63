"""Numbers a user can trust, through the real command line: bad options fail before anything
expensive, pairings never collide, progress is readable off a terminal, and scores do not depend on
how busy the machine is."""

from __future__ import annotations

import json
import multiprocessing as mp
import time

import pytest

from edgevlm_eval.app import cli

TINY = ["--task", "demo-small", "--svlm", "tiny-qwen2.5-vl", "--lvlm", "tiny-qwen2.5-vl", "--limit", "2", "--max-frames",
        "3", "--no-plots"]


@pytest.fixture(autouse=True)
def small_demo(tmp_path_factory, monkeypatch):
    """`--task demo-small`: the demo world at 2 x 3 frames (generated in a moment, not 32 x 20)."""
    d = tmp_path_factory.mktemp("tasks")
    (d / "demo-small.yaml").write_text("name: demo-small\ninclude: demo\n"
                                       "converter_options: {n_streams: 2, frames_per_stream: 3}\n")
    monkeypatch.setenv("EDGEVLM_TASKS_PATH", str(d))


@pytest.fixture
def no_models(monkeypatch):
    """Any attempt to load a model or convert a dataset fails the test: the checks come first."""
    import edgevlm_eval.app.data as data
    import edgevlm_eval.model_adapters.registry as reg

    def boom(*a, **k):
        raise AssertionError("an expensive step ran before the options were checked")

    monkeypatch.setattr(reg, "load_adapter", boom)
    monkeypatch.setattr(data, "load_streams", boom)


@pytest.mark.parametrize("flags,says", [
    (["--tau", "-1"], "--tau"), (["--tau", "nan"], "--tau"), (["--tau", "inf"], "--tau"), (["--H", "-1"], "--H"),
    (["--delta", "-5"], "--delta"), (["--target-lcr", "1.5"], "25%"), (["--target-lcr", "0.5-0.2"], "band"),
    (["--latency", "4g"], "unknown latency source"), (["--latency", "fixed:-2"], "latency"),
    (["--edge-latency", "fast"], "--edge-latency"), (["--K-call", "-1"], "--K-call"),
    (["--K-call", "1.5"], "--K-call"), (["--K-delay", "-1"], "--K-delay"), (["--alpha", "2"], "--alpha"),
    (["--strategy", "edgevlm:K_call=x"], "K_call"), (["--strategy", "edgevlm:foo=1"], "unknown knob"),
    (["--strategy", "edgevml"], "unknown strategy 'edgevml'"), (["--bootstrap", "-1"], "--bootstrap"),
    (["--max-failed", "2"], "--max-failed"), (["--protocol", "main", "--target-lcr", "0.3"], "do not go together"),
    (["--uplink", "-3"], "uplink"), (["--svlm", "no-such-model"], "unknown model 'no-such-model'"),
    (["--overwrite", "--resume"], "give one"),
])
def test_bad_options_fail_before_anything_runs(flags, says, capsys, tmp_path, no_models):
    code = cli.main([*TINY, "--output-dir", str(tmp_path), *flags])
    err = capsys.readouterr().err
    assert code == 2 and says in err, err
    assert not any(tmp_path.iterdir())  # nothing was written


@pytest.mark.parametrize("flags", [["--limit", "-1"], ["--max-frames", "0"], ["--limit", "x"]])
def test_bad_selection_is_a_usage_error(flags, capsys, no_models):
    with pytest.raises(SystemExit) as e:
        cli.main([*TINY, *flags])
    assert e.value.code == 2 and "expected a positive whole number" in capsys.readouterr().err


def test_engine_config_values_are_checked_like_flags(tmp_path, capsys, no_models):
    cfg = tmp_path / "e.yaml"
    cfg.write_text("tau: fast\n")
    assert cli.main([*TINY, "--engine-config", str(cfg)]) == 2
    assert "e.yaml" in (err := capsys.readouterr().err) and "tau" in err and "expected a number" in err
    cfg.write_text("- not a mapping\n")
    assert cli.main([*TINY, "--engine-config", str(cfg)]) == 2
    assert "expected a mapping" in capsys.readouterr().err


def test_a_model_without_a_declared_edge_latency_asks_for_one(capsys, tmp_path, no_models):
    code = cli.main(["--task", "demo", "--svlm", "qwen2_5_vl:/nowhere", "--lvlm", "tiny-qwen2.5-vl",
                     "--output-dir", str(tmp_path)])
    assert code == 2 and "declares no edge latency" in capsys.readouterr().err


def test_two_pairings_never_collide(tmp_path):
    out = str(tmp_path / "runs")
    a = [*TINY, "--strategy", "svlm_only", "--output-dir", out]
    b = [x if x != "tiny-qwen2.5-vl" or i != TINY.index("--svlm") + 1 else "tiny-vlm-r1" for i, x in enumerate(a)]
    assert b[TINY.index("--svlm") + 1] == "tiny-vlm-r1"
    assert cli.main(a) == 0 and cli.main(b) == 0
    first = tmp_path / "runs" / "demo-small" / "tiny-qwen2.5-vl__tiny-qwen2.5-vl" / "svlm_only" / "results.json"
    second = tmp_path / "runs" / "demo-small" / "tiny-vlm-r1__tiny-qwen2.5-vl" / "svlm_only" / "results.json"
    assert first.is_file() and second.is_file()
    before = first.read_bytes()
    assert cli.main([*b, "--overwrite"]) == 0  # overwriting one pairing leaves the other alone
    assert first.read_bytes() == before
    lb = tmp_path / "lb.json"
    assert cli.main(["leaderboard", out, "--json", str(lb), "--quiet"]) == 0
    rows = json.loads(lb.read_text())["tasks"]["demo-small"]["groups"][0]["rows"]
    assert {r["svlm"] for r in rows} == {"tiny-qwen2.5-vl", "tiny-vlm-r1"}


def test_progress_off_a_terminal_and_quiet(tmp_path, capsys):
    out = str(tmp_path / "runs")
    assert cli.main([*TINY, "--strategy", "svlm_only,edgevlm", "--output-dir", out]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("demo-small: svlm_only+edgevlm: ")]
    assert lines and "/12 (" in lines[0] and "frames/s" in lines[0] and "done in" in lines[-1]
    assert any("recording demo-small with tiny-qwen2.5-vl" in ln for ln in err.splitlines())
    assert cli.main([*TINY, "--strategy", "svlm_only", "--output-dir", out, "--quiet", "--run-name", "q"]) == 0
    assert "frames/s" not in capsys.readouterr().err


def _burn(stop):
    while not stop.is_set():
        sum(i * i for i in range(10000))


def test_scores_do_not_depend_on_machine_load(tmp_path):
    """The same slice replayed idle and with both cores busy: the same results, timings aside
    (the SVLM's edge latency is the model entry's declared figure, not this machine's)."""
    base = [*TINY, "--strategy", "all", "--latency", "fixed:0.8", "--output-dir", str(tmp_path / "runs")]
    assert cli.main([*base, "--run-name", "idle"]) == 0
    stop = mp.Event()
    burners = [mp.Process(target=_burn, args=(stop,)) for _ in range(3)]
    for p in burners:
        p.start()
    try:
        time.sleep(0.5)
        assert cli.main([*base, "--run-name", "loaded"]) == 0
    finally:
        stop.set()
        for p in burners:
            p.join()
    folder = tmp_path / "runs" / "demo-small" / "tiny-qwen2.5-vl__tiny-qwen2.5-vl"
    strip = lambda d: {rid: {k: v for k, v in r.items() if k != "timing"} for rid, r in d["tasks"]["demo-small"]["runs"].items()}
    idle, loaded = (json.loads((folder / n / "results.json").read_text()) for n in ("idle", "loaded"))
    assert strip(idle) == strip(loaded)
    assert idle["provenance"]["edge_latency"]["spec"] == "declared"
