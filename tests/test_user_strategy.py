"""A user's own strategy (examples/strategies/latency_aware.py) through the real command line, from
outside the repository: as `file.py:Class`, `package.module:Class` and an entry point of the group
`edgevlm_eval.strategies`, with its knobs on the command line, beside edgeVLM, with the tiny model
and with a user models.yaml entry; and its behaviour on a constructed trace (docs/adding-a-strategy.md)."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from edgevlm_eval.collab.search import dry_lcr
from edgevlm_eval.collab.simulator import SimConfig, Simulator
from edgevlm_eval.collab.strategies import ENTRY_POINT_GROUP, resolve_strategy, run_of
from edgevlm_eval.collab.strategy import Run
from edgevlm_eval.collab.testing import ScriptedSVLM, replay, toy_streams, toy_task, toy_trace
from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.core.records import read_logs

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "strategies" / "latency_aware.py"
SEL = ["--limit", "2", "--max-frames", "4"]  # demo task: 2 streams x 4 frames at 1 FPS


# ---------------------------------------------------------------------------------------------
# the example's behaviour, with the test doubles


def _example_class():
    return resolve_strategy(f"{EXAMPLE}:LatencyAwareKCall")


def test_k_call_grows_when_replies_are_slow():
    cls = _example_class()
    task = toy_task(fps=1.0)
    streams = toy_streams(task, 1, 14)
    # replies of frames 0..3 take 0.5 s (within tau = 1 s), later ones 3 s
    trace = toy_trace(streams, latency=lambda sid, t: 0.5 if t <= 3 else 3.0, answer="car")
    out = replay(task, streams, trace, ScriptedSVLM(default="pedestrian"),
                 [run_of(cls, K_base=1), run_of("edgevlm", K_call=1)], edge_latency=0.1)
    ex, ev = out["latency_aware"]["s0"], out["edgevlm"]["s0"]
    # By hand (s_T = T, dt = 1, K_base 1, beta 0.3, D = EWMA of reply latencies, K_call = 1 + ceil(D - 1)):
    #  T0 upload (nothing uploaded yet)            T1 D=0.5 K=1, 1-0 <= 1 skip      T2 upload
    #  T3 D=0.5 K=1 skip                            T4 upload (its reply takes 3 s: arrives at 7)
    #  T5 skip                                      T6 upload (arrives at 9)
    #  T7 reply 4: D=.3*3+.7*.5=1.25, K=2, 7-6 skip  T8 8-6=2 <= 2 skip
    #  T9 reply 6: D=1.775, K=2, 9-6=3 > 2 upload    T10, T11 skip
    #  T12 reply 9: D=2.1425, K=3, 12-9=3 skip        T13 13-9=4 > 3 upload
    # The gaps between uploads grow 2, 2, 2, 3, 4 as the slow replies come in.
    assert [ln.frame for ln in ex if ln.upload] == [0, 2, 4, 6, 9, 13]
    assert [ln.why for ln in ex[7:9]] == ["k_call", "k_call"]
    # edgeVLM at the same K_call while replies are in time counts from the newest *arrived* reply, so
    # while a slow reply is in flight it uploads every frame (K_delay 4 is never reached)
    assert [ln.frame for ln in ev if ln.upload] == [0, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    # in-time replies are the output; late ones are reused as history (Context Transfer, CRM: the
    # LVLM entry j_L first): at T8 the reply of frame 4 (arrived at 7) leads the history
    assert [ln.output for ln in ex[:3]] == ["lvlm", "svlm", "lvlm"] and ex[4].output == "svlm"
    assert ex[8].history[0] == [4, "lvlm", 4.0]
    # the call-ratio search's model-free replay gives the simulator's LCR exactly (--target-lcr)
    sim = Simulator(task, streams, trace, None, SimConfig(check_images=False, edge_latency=0.1))
    assert dry_lcr(sim, run_of(cls, K_base=1)) == pytest.approx(6 / 14)


def test_k_call_of_the_example():
    cls = _example_class()
    strat = Run(cls, cls.Knobs(K_base=2, late_max=3)).make(SimConfig(tau=1.0))
    assert strat.k_call({"D": None, "dt": None}) == 2  # no reply yet
    assert strat.k_call({"D": 0.9, "dt": 0.5}) == 2  # in time
    assert strat.k_call({"D": 1.6, "dt": 0.5}) == 4  # 0.6 s late = 2 frames at 2 FPS
    assert strat.k_call({"D": 30.0, "dt": 1.0}) == 5  # at most late_max frames added


def test_knob_values_are_checked():
    cls = _example_class()
    for bad, key in (({"K_base": -1}, "K_base"), ({"beta": 0}, "beta"), ({"late_max": 1.5}, "late_max"),
                     ({"K_delay": 0}, "K_delay")):
        with pytest.raises(ConfigError, match=f"key '{key}'") as e:
            cls.Knobs.from_mapping(bad, "--strategy mine: ")
        assert "--strategy mine: " in str(e.value) and e.value.key == key
    assert cls.Knobs.from_mapping({"K_base": "3", "K_delay": "inf"}).K_delay == float("inf")


# ---------------------------------------------------------------------------------------------
# through the real command line


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The demo task's first 2 streams x 4 frames and a trace of the tiny LVLM, made once."""
    pytest.importorskip("edgevlm_eval.model_adapters.registry")
    from edgevlm_eval.app import cli

    root = tmp_path_factory.mktemp("world")
    cache = root / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEVLM_CACHE_DIR", str(cache))
        trace = root / "trace.jsonl"
        if cli.main(["record", "--task", "demo", "--lvlm", "tiny-qwen2.5-vl", "--out", str(trace), *SEL]) != 0:
            pytest.skip("the tiny model could not record a trace")
    return {"cache": cache, "trace": trace}


@pytest.fixture
def demo(world, monkeypatch):
    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(world["cache"]))  # the streams converted once
    return world


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())["tasks"]["demo"]["runs"]


def test_a_strategy_file_outside_the_repo_runs_beside_edgevlm(demo, tmp_path, capsys):
    from edgevlm_eval.app.cli import main

    mine = tmp_path / "elsewhere" / "latency_aware.py"
    mine.parent.mkdir()
    shutil.copy(EXAMPLE, mine)
    out = tmp_path / "runs"
    args = ["--task", "demo", "--svlm", "tiny-qwen2.5-vl", "--trace", str(demo["trace"]), "--latency", "fixed:2",
            "--output-dir", str(out), "--no-plots", *SEL]
    rc = main([*args, "--strategy", "edgevlm", "--strategy", f"{mine}:LatencyAwareKCall:K_base=2,late_max=3"])
    assert rc == 0, capsys.readouterr().err
    folder = out / "demo" / "tiny-qwen2.5-vl__tiny-qwen2.5-vl" / "edgevlm+latency_aware"
    runs = _results(folder)
    r = runs["latency_aware"]
    assert r["label"] == "Latency-aware K_call" and r["display"]["proxy"] is False
    assert r["display"]["lcr_knob"] == "K_base" and r["display"]["setting"] == {"K_base": 2, "K_delay": 4.0, "late_max": 3}
    assert r["spec"] == {"strategy": "latency_aware", "run": "latency_aware", "K_base": 2, "late_max": 3,
                         "beta": 0.3, "K_delay": 4.0}
    # Every reply takes 2 s (1 s late at 1 FPS). Mine, K_base 2: T0 upload; T1 no reply yet, K=2,
    # 1-0 <= 2 skip; T2 reply 0 in, K = 2 + 1 = 3: skip; T3 3-0 <= 3 skip -> 1 upload of 4 frames.
    # (With the default K_base 1: T3 3-0 > 2 uploads, LCR 0.5: the knob was applied.)
    # edgeVLM, K_call 3: T0, T1 upload (no reply yet); T2, T3 newest reply 2 frames old: skip -> 2 of 4.
    assert (r["uploads"], r["lcr"]) == (2, 0.25)
    assert (runs["edgevlm"]["uploads"], runs["edgevlm"]["lcr"]) == (4, 0.5)
    _, lines = read_logs(folder)
    assert sorted((ln.stream, ln.frame) for ln in lines if ln.run == "latency_aware" and ln.upload) == \
        sorted((s, 0) for s in {ln.stream for ln in lines})
    assert "latency_aware" in capsys.readouterr().out  # the printed table has its row
    # --target-lcr tunes its declared knob: K_base 0 gives T0, T1 (K=0: rule off), T3 (K=1, 3-1 > 1) = 0.75
    rc = main([*args, "--strategy", f"{mine}:LatencyAwareKCall", "--target-lcr", "0.75", "--run-name", "tuned"])
    assert rc == 0, capsys.readouterr().err
    tuned = _results(folder.parent / "tuned")["latency_aware"]
    assert tuned["search"]["knobs"]["K_base"] == 0 and tuned["search"]["reached"] is True
    assert tuned["spec"]["K_base"] == 0 and tuned["lcr"] == 0.75


@pytest.mark.parametrize("knobs, words", [
    ("K_base=-1", ["key 'K_base'", "LatencyAwareKCall", "must be an integer >= 0, got -1"]),
    ("K_base=two", ["key 'K_base'", "LatencyAwareKCall", "expected int, got 'two'"]),
    ("K_bsae=2", ["key 'K_bsae'", "unknown knob", "known: K_base, late_max, beta, K_delay"]),
])
def test_a_bad_knob_fails_before_anything_runs(tmp_path, capsys, knobs, words):
    from edgevlm_eval.app.cli import main

    mine = tmp_path / "latency_aware.py"
    shutil.copy(EXAMPLE, mine)
    out = tmp_path / "runs"
    rc = main(["--task", "demo", "--svlm", "tiny-qwen2.5-vl", "--lvlm", "tiny-qwen2.5-vl", "--output-dir", str(out),
               "--strategy", f"edgevlm,{mine}:LatencyAwareKCall:{knobs}", *SEL])
    err = capsys.readouterr().err
    assert rc == 2
    for w in words:
        assert w in err
    assert not out.exists()  # no stream converted, no trace recorded, no run folder


def _package(root: Path) -> None:
    """An importable package holding the example, and its dist-info declaring the entry point as
    `pip install` would write it (importlib.metadata finds distributions on sys.path)."""
    pkg = root / "lab_strategies"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shutil.copy(EXAMPLE, pkg / "latency.py")
    dist = root / "lab_strategies-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-strategies\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(f"""\
        [{ENTRY_POINT_GROUP}]
        lab_latency_aware = lab_strategies.latency:LatencyAwareKCall
        """))


@pytest.fixture
def installed(tmp_path, monkeypatch):
    _package(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield
    for m in [m for m in sys.modules if m.startswith("lab_strategies")]:
        del sys.modules[m]


def test_the_class_loads_as_module_and_as_entry_point(installed):
    by_module = resolve_strategy("lab_strategies.latency:LatencyAwareKCall")
    by_entry_point = resolve_strategy("lab_latency_aware")  # the entry point's name, not the class's
    assert by_module is by_entry_point and by_module.name == "latency_aware"
    assert by_module.__module__ == "lab_strategies.latency"
    assert run_of("lab_latency_aware", K_base=4, name="mine-k4").to_json() == {
        "strategy": "latency_aware", "run": "mine-k4", "K_base": 4, "late_max": 8, "beta": 0.3, "K_delay": 4.0}


def test_entry_points_that_cannot_serve_are_refused_by_name(installed, tmp_path, monkeypatch):
    other = tmp_path / "other"
    for dist, line in (("other_one-1.0.dist-info", "lab_latency_aware = other_one.mod:Thing"),
                       ("broken-1.0.dist-info", "broken = no_such_module_here:Thing")):
        (other / dist).mkdir(parents=True)
        (other / dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist.split('-')[0]}\nVersion: 1.0\n")
        (other / dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{line}\n")
    monkeypatch.syspath_prepend(str(other))
    with pytest.raises(ConfigError, match="declare it 2 times.*lab_strategies.latency:LatencyAwareKCall"):
        resolve_strategy("lab_latency_aware")
    assert resolve_strategy("lab_strategies.latency:LatencyAwareKCall").name == "latency_aware"  # the way out
    with pytest.raises(ConfigError, match="'broken': loading its entry point failed: ModuleNotFoundError"):
        resolve_strategy("broken")


def test_user_model_and_entry_point_strategy_end_to_end(demo, installed, tmp_path, monkeypatch, capsys):
    from edgevlm_eval.app.cli import main
    from edgevlm_eval.model_adapters.registry import set_models_path

    models = tmp_path / "my-models"
    models.mkdir()
    (models / "models.yaml").write_text(textwrap.dedent("""\
        models:
          - name: my-tiny
            adapter: qwen2_5_vl
            checkpoint: tiny
            description: the tiny Qwen2.5-VL under our own name
            options: {min_pixels: 3136, max_pixels: 50176, max_new_tokens: 16}
            edge_latency_s: 0.35
            edge_latency_basis: "our edge board, 2025-06"
        """))
    monkeypatch.setenv("EDGEVLM_MODELS_PATH", str(models))
    out = tmp_path / "runs"
    try:
        rc = main(["--task", "demo", "--svlm", "my-tiny", "--lvlm", "my-tiny", "--latency", "fixed:2",
                   "--strategy", "edgevlm,lab_latency_aware:K_base=2,name=mine-k2", "--output-dir", str(out),
                   "--no-plots", *SEL])
    finally:
        set_models_path([])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((out / "demo" / "my-tiny__my-tiny" / "edgevlm+mine-k2" / "results.json").read_text())
    prov = doc["provenance"]
    assert prov["models"]["svlm"]["name"] == "my-tiny" and prov["trace"]["model"] == "my-tiny"
    assert prov["edge_latency"] == {"spec": "declared", "seconds": 0.35, "basis": "our edge board, 2025-06"}
    runs = doc["tasks"]["demo"]["runs"]
    mine = runs["mine-k2"]
    assert mine["label"] == "Latency-aware K_call" and mine["spec"]["K_base"] == 2
    assert mine["timing"]["edge_latency_s"]["mean"] == pytest.approx(0.35)
    assert (mine["lcr"], runs["edgevlm"]["lcr"]) == (0.25, 0.5)  # as worked out in the file test above
