import copy
import json
import re
from pathlib import Path

import pytest

from edgevlm_eval.app import cli
from edgevlm_eval.core.errors import DatasetError
from edgevlm_eval.app.leaderboard import (PAPER_SOURCE, LeaderboardError, add_bootstrap, build, load_rows, to_markdown)

REPO = Path(__file__).resolve().parents[1]
PAPER_DIR = REPO / "results" / "paper"
METHOD_MD = REPO.parent / "shared" / "spec" / "method.md"


# ---------------------------------------------------------------------------------------------
# the paper's reported numbers (results/paper)


def _paper(name: str) -> dict:
    return json.loads((PAPER_DIR / name).read_text(encoding="utf-8"))


def _entry(doc, **match):
    hits = [e for e in doc["entries"] if all(e.get(k) == v for k, v in match.items())]
    assert len(hits) == 1, (match, len(hits))
    return hits[0]


def test_paper_files_are_marked_and_units_consistent():
    files = sorted(PAPER_DIR.glob("*.json"))
    assert {f.name for f in files} >= {"table1_kcall_sweep.json", "table2_main.json", "table5_ablation.json",
                                       "tables3_4_efficiency.json"}
    for f in files:
        doc = json.loads(f.read_text(encoding="utf-8"))
        assert doc["source"] == PAPER_SOURCE
        assert doc["pairing"]["svlm"] == "qwen2.5-vl-3b" and doc["pairing"]["lvlm"] == "qwen2.5-vl-72b"
        for e in doc.get("entries", []):
            assert e["lcr"] == pytest.approx(e["lcr_percent"] / 100)
            for m, v in e.get("metrics_percent", {}).items():
                assert e["metrics"][m] == pytest.approx(v / 100) and 0 <= e["metrics"][m] <= 1


def test_paper_numbers_match_method_md_reference_figures():
    """method.md §6 (nuScenes, Qwen2.5-VL-3B / 72B), typed here independently of the JSON."""
    t2 = _paper("table2_main.json")
    assert _entry(t2, task="nuscenes", strategy="svlm_only")["metrics_percent"]["micro_f1"] == 55.36
    assert _entry(t2, task="nuscenes", strategy="lvlm_only")["metrics_percent"]["micro_f1"] == 43.84
    e = _entry(t2, task="nuscenes", strategy="edgevlm", lcr_band="20-30%")
    assert (e["lcr_percent"], e["metrics_percent"]["micro_f1"], e["metrics"]["micro_f1"]) == (27.3, 64.49, 0.6449)
    assert _entry(t2, task="nuscenes", strategy="edgevlm", lcr_band="100%")["metrics_percent"]["micro_f1"] == 71.15
    t5 = _paper("table5_ablation.json")
    assert [e["metrics_percent"]["micro_f1"] for e in t5["entries"]] == [64.36, 70.47, 70.77, 71.15]
    t1 = _paper("table1_kcall_sweep.json")
    assert [e["params"]["K_call"] for e in t1["entries"]] == list(range(1, 10))
    assert [e["lcr_percent"] for e in t1["entries"]] == [69.1, 38.9, 27.3, 23.5, 19.0, 18.4, 17.8, 14.4, 13.0]
    assert (t1["entries"][0]["lhl"], t1["entries"][-1]["lhl"]) == (1.89, 5.66)
    assert all(e["lhl_unit"] == "frames" and e["params"]["K_delay"] == 4 for e in t1["entries"])
    assert any("LHL(s)" in n and "frames" in n for n in t1["notes"])  # the header/text discrepancy is recorded
    t34 = _paper("tables3_4_efficiency.json")
    stages = {(r["strategy"], r["stage"]): r["time_ms"] for r in t34["table3"]}
    assert stages[("edgevlm", "total")] == 562.40
    assert round(stages[("edgevlm", "crm_overhead")], 1) == 19.9 and round(stages[("edgevlm", "vfm_overhead")], 1) == 31.3


def test_paper_numbers_against_method_md_text():
    """The same figures parsed from method.md itself, where the project's shared folder is present."""
    if not METHOD_MD.is_file():
        pytest.skip("../shared/spec/method.md not present")
    text = METHOD_MD.read_text(encoding="utf-8")
    sec = text[text.index("Reference figures"):]
    lcrs = [float(x) for x in re.search(r"gives LCR ([\d., ]+) %", sec).group(1).replace(" ", "").split(",")]
    t1 = _paper("table1_kcall_sweep.json")
    assert lcrs == [e["lcr_percent"] for e in t1["entries"]]
    abl = [float(x) for x in re.search(r"ablation ([\d.]+) -> ([\d.]+) -> ([\d.]+) -> ([\d.]+)", sec).groups()]
    assert abl == [e["metrics_percent"]["micro_f1"] for e in _paper("table5_ablation.json")["entries"]]


def test_paper_numbers_against_the_paper_text():
    """Every number of Tables 1, 2 and 5, parsed from the paper's text where the shared folder has it."""
    papers = sorted((REPO.parent / "shared" / "seeds").glob("*.txt")) if (REPO.parent / "shared").is_dir() else []
    text = next((p.read_text(encoding="utf-8") for p in papers if "Context Transfer" in p.read_text(encoding="utf-8")),
                None)
    if text is None:
        pytest.skip("the paper's text (../shared/seeds) is not present")
    table2 = text[text.index("Method\tnuScenes"):text.index("Table 2. Performance")]
    printed = [[float(x) for x in ln.split("\t")[1:]] for ln in table2.splitlines()
               if re.search(r"\t[0-9]", ln) and "Micro" not in ln]
    rows: dict = {}
    for e in _paper("table2_main.json")["entries"]:  # rebuild the printed rows: per dataset metrics then LCR
        rows.setdefault((e["strategy"], e["lcr_band"]), []).extend([*e["metrics_percent"].values(), e["lcr_percent"]])
    assert printed == list(rows.values())  # same values, in the paper's row order
    m = re.search(r"LCR\(%\)\t(.*)\nLHL\(s\)\t(.*)\n", text)
    t1 = _paper("table1_kcall_sweep.json")["entries"]
    assert [float(x) for x in m.group(1).split("\t")] == [e["lcr_percent"] for e in t1]
    assert [float(x) for x in m.group(2).split("\t")] == [e["lhl"] for e in t1]
    abl = [[float(x) for x in ln.split("\t")[3:]] for ln in text.splitlines() if re.match(r"^[✗✓]\t[✗✓]\t", ln)]
    assert abl == [list(e["metrics_percent"].values()) for e in _paper("table5_ablation.json")["entries"]]


def test_paper_tables_are_internally_consistent():
    t2 = _paper("table2_main.json")
    assert len(t2["entries"]) == 13 * 4  # 13 rows x 4 datasets
    for e in t2["entries"]:  # each banded row's LCR lies in its band
        if e["lcr_band"] and e["lcr_band"] != "100%":
            lo, hi = (float(x) for x in e["lcr_band"].rstrip("%").split("-"))
            assert lo <= e["lcr_percent"] <= hi, e
        if e["task"] in ("ipn_hand", "ace"):
            assert set(e["metrics"]) == {"accuracy"}
        else:
            assert set(e["metrics"]) == {"micro_f1", "macro_f1", "exact_match"}
    full = _entry(t2, task="nuscenes", strategy="edgevlm", lcr_band="100%")["metrics_percent"]
    assert _paper("table5_ablation.json")["entries"][-1]["metrics_percent"] == full
    # Table 1's K_call = 3 is Table 2's edgeVLM LCR on nuScenes in the 20-30 % band
    assert _paper("table1_kcall_sweep.json")["entries"][2]["lcr_percent"] == 27.3
    t3 = {(r["strategy"], r["stage"]): r["time_ms"] for r in _paper("tables3_4_efficiency.json")["table3"]}
    assert t3[("edgevlm", "crm_overhead")] + t3[("edgevlm", "vfm_overhead")] + t3[("edgevlm", "inference")] == \
        pytest.approx(t3[("edgevlm", "total")])


# ---------------------------------------------------------------------------------------------
# hand-written results files (the engine's schema, docs/results.md)


def _display(spec: dict) -> dict:
    """How the engine describes a run in results.json (label, proxy, setting, variant...)."""
    from edgevlm_eval.collab.strategies import run_of

    return run_of(spec["strategy"], **{k: v for k, v in spec.items() if k not in ("strategy", "run", "latency")}).display()


def results_doc(runs: dict, *, version="0.1.0", tau=1.0, trace_sha="aaa", svlm="tiny-a", lvlm="tiny-b",
                task="demo", cache_key="k1") -> dict:
    return {
        "format": "edgevlm-eval.results/1",
        "provenance": {
            "toolkit_version": version, "git_hash": "abc", "date": "2026-01-01T00:00:00+00:00",
            "config": {"task": task, "svlm": svlm, "lvlm": lvlm, "tau": tau, "history": 2,
                       "output_dir": f"runs/{svlm}", "strategies": list(runs)},
            "seeds": {"demo": 0}, "models": {"svlm": {"name": svlm}, "lvlm": {"name": lvlm}},
            "trace": {"path": "trace.jsonl", "sha256": trace_sha}, "latency": {"spec": "measured"},
            "tasks": {task: {"version": 1, "fps": 1, "labels": ["car", "truck"], "metrics": ["micro_f1", "exact_match"],
                             "primary_metric": "micro_f1", "multi_label": True, "cache_key": cache_key}},
        },
        "tasks": {task: {"streams": 2, "frames": 8, "runs": {
            rid: {"spec": spec, "label": _display(spec)["label"], "display": _display(spec),
                  "frames": 8, "scored_frames": 8, "metrics": {**m, "n": 8, "n_invalid": 1},
                  "lcr": lcr, "uploads": int(lcr * 8), "lhl": lhl,
                  "invalid": {"total": 1, "scored": 1, "by_reason": {"late": 1}}}
            for rid, (spec, m, lcr, lhl) in runs.items()}}},
    }


RUNS_A = {
    "svlm_only": ({"strategy": "svlm_only", "run": "svlm_only"}, {"micro_f1": 0.5, "exact_match": 0.25}, 0.0, None),
    "edgevlm": ({"strategy": "edgevlm", "run": "edgevlm", "K_call": 3, "K_delay": 4, "crm": True, "ggvr": True,
                 "grvr": True}, {"micro_f1": 0.75, "exact_match": 0.5}, 0.25, 2.0),
}
RUNS_B = {
    "lvlm_only": ({"strategy": "lvlm_only", "run": "lvlm_only"}, {"micro_f1": 0.625, "exact_match": 0.375}, 1.0, None),
    "adas": ({"strategy": "adas", "run": "adas", "kappa": 1.0}, {"micro_f1": 0.7, "exact_match": 0.5}, 0.5, None),
}


def _write(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_two_results_files_expected_rows_and_ranking(tmp_path):
    a = _write(tmp_path / "runs" / "a" / "results.json", results_doc(RUNS_A))
    b = _write(tmp_path / "runs" / "b" / "results.json", results_doc(RUNS_B))
    rows = load_rows([tmp_path / "runs"])
    assert sorted((r.task, r.pairing, r.strategy, r.lcr) for r in rows) == [
        ("demo", "tiny-a / tiny-b", "adas", 0.5), ("demo", "tiny-a / tiny-b", "edgevlm", 0.25),
        ("demo", "tiny-a / tiny-b", "lvlm_only", 1.0), ("demo", "tiny-a / tiny-b", "svlm_only", 0.0)]
    edge = next(r for r in rows if r.strategy == "edgevlm")
    assert edge.metrics == {"micro_f1": 0.75, "exact_match": 0.5} and edge.lhl == 2.0 and edge.n_invalid == 1
    assert edge.params == {"K_call": 3, "K_delay": 4, "crm": True, "ggvr": True, "grvr": True}
    assert Path(edge.file) == a
    lb = build(rows)
    assert len(lb.groups) == 1 and lb.primary["demo"] == "micro_f1"
    assert [r.strategy for r in lb.groups[0].rows] == ["edgevlm", "adas", "lvlm_only", "svlm_only"]
    assert lb.metrics["demo"] == ["micro_f1", "exact_match"]
    md = to_markdown(lb)
    assert "| 1 | reproduced | tiny-a / tiny-b | edgeVLM | edgevlm | K_call=3, K_delay=4 | " \
           "25.0 | 75.00 | 50.00 | 2.00 | a/results.json |" in md
    assert "| 4 | reproduced | tiny-a / tiny-b | SVLM only | svlm_only |  | 0.0 | 50.00 | 25.00 | - | a/results.json |" in md
    js = lb.to_json()
    ranked = js["tasks"]["demo"]["groups"][0]["rows"]
    assert [(x["rank"], x["strategy"], x["metrics"]["micro_f1"]) for x in ranked][:2] == \
        [(1, "edgevlm", 0.75), (2, "adas", 0.7)]
    assert str(b) in {x["file"] for x in ranked}


def test_row_settings_from_the_engine_schema(tmp_path):
    runs = {
        "adas@20-30": ({"strategy": "adas", "run": "adas@20-30", "kappa": 0.8, "adas_beta": 0.3},
                       {"micro_f1": 0.6, "exact_match": 0.3}, 0.25, None),
        "edgevlm+CRM": ({"strategy": "edgevlm", "run": "edgevlm+CRM", "K_call": 0, "K_delay": "inf", "crm": True,
                         "ggvr": False, "grvr": False, "alpha": 0.5, "mu": 1.0}, {"micro_f1": 0.7}, 1.0, 1.2),
        "parallel@d=3": ({"strategy": "parallel", "run": "parallel@d=3", "K_call": 3, "K_delay": 4.0,
                          "latency": "fixed:3"}, {"micro_f1": 0.65}, 0.3, None),
    }
    doc = results_doc(runs)
    doc["tasks"]["demo"]["runs"]["adas@20-30"].update({"search": {"target": "20-30"}})
    rows = {r.origin: r for r in load_rows([_write(tmp_path / "r.json", doc)])}
    assert rows["adas@20-30"].strategy_label == "ADAS (proxy)"  # a proxy says so wherever it appears
    assert rows["adas@20-30"].setting == "target LCR 20-30 %; kappa=0.8"  # default adas_beta not shown
    doc["tasks"]["demo"]["runs"]["adas@20-30"]["search"]["reached"] = False  # the knob could not hit the band
    rows = {r.origin: r for r in load_rows([_write(tmp_path / "r2.json", doc)])}
    assert rows["adas@20-30"].setting == "target LCR 20-30 % (not reached); kappa=0.8"
    e = rows["edgevlm+CRM"]
    assert (e.strategy_label, e.setting) == ("edgeVLM[CRM]", "K_call=0, K_delay=inf, alpha=0.5")
    par = rows["parallel@d=3"]
    assert par.params["delay_s"] == 3.0 and par.setting == "K_call=3, K_delay=4; fixed delay 3 s"
    assert {r.pairing for r in rows.values()} == {"tiny-a / tiny-b"}


def test_incompatible_results_are_refused_with_what_differs(tmp_path):
    _write(tmp_path / "a.json", results_doc(RUNS_A))
    _write(tmp_path / "b.json", results_doc(RUNS_B, version="0.2.0", tau=2.0))
    rows = load_rows([tmp_path])
    with pytest.raises(LeaderboardError) as ei:
        build(rows)
    msg = str(ei.value)
    assert "task demo" in msg and "a.json" in msg and "b.json" in msg and "--allow-mixed" in msg
    assert re.search(r'toolkit_version: "0\.1\.0" in a\.json; "0\.2\.0" in b\.json', msg), msg
    assert re.search(r"config\.tau: 1\.0 in a\.json; 2\.0 in b\.json", msg), msg
    assert "config.output_dir" not in msg and "config.strategies" not in msg  # per-run keys are not differences
    lb = build(rows, allow_mixed=True)
    assert [(g.label, sorted(r.strategy for r in g.rows)) for g in lb.groups] == [
        ("A", ["edgevlm", "svlm_only"]), ("B", ["adas", "lvlm_only"])]
    assert any(d.startswith("toolkit_version") for d in lb.differences["demo"])
    md = to_markdown(lb)
    assert "| 1 | group A |" in md and "| 1 | group B |" in md
    assert re.search(r"Groups differ in: .*toolkit_version", md)


def test_trace_must_agree_per_lvlm_only(tmp_path):
    _write(tmp_path / "a.json", results_doc(RUNS_A, trace_sha="t1"))
    _write(tmp_path / "b.json", results_doc(RUNS_B, trace_sha="t2"))
    with pytest.raises(LeaderboardError, match=r"\(LVLM tiny-b\) trace_sha256: \"t1\" in a.json; \"t2\" in b.json"):
        build(load_rows([tmp_path]))
    # another LVLM has its own trace by design: the pairings are ranked together
    _write(tmp_path / "b.json", results_doc(RUNS_B, trace_sha="t2", lvlm="tiny-c", svlm="tiny-a"))
    lb = build(load_rows([tmp_path]))
    assert len(lb.groups) == 1 and {r.pairing for r in lb.groups[0].rows} == {"tiny-a / tiny-b", "tiny-a / tiny-c"}


def test_paper_rows_beside_reproduced_labelled_not_ranked(tmp_path):
    _write(tmp_path / "runs" / "a.json", results_doc(RUNS_A, task="nuscenes"))
    out = tmp_path / "lb"
    rc = cli.main(["leaderboard", str(tmp_path / "runs"), str(PAPER_DIR), "--task", "nuscenes", "--out", str(out),
                   "--quiet"])
    assert rc == 0
    js = json.loads((out / "leaderboard.json").read_text())
    groups = js["tasks"]["nuscenes"]["groups"]
    assert [g["source"] for g in groups] == ["reproduced", PAPER_SOURCE]
    assert [r["rank"] for r in groups[0]["rows"]] == [1, 2]
    paper = groups[1]["rows"]
    assert all(r["rank"] is None and r["source"] == PAPER_SOURCE for r in paper)
    # Table 1 (9) + Table 2 (13) + Table 5 (4) rows for nuScenes
    assert len(paper) == 26
    abl = [r for r in paper if r["origin"] == "paper Table 5"]
    assert [r["strategy_label"] for r in abl] == ["Parallel", "edgeVLM[CRM]", "edgeVLM[CRM+GGVR]", "edgeVLM"]
    md = (out / "leaderboard.md").read_text()
    assert "| paper Table 2 | qwen2.5-vl-3b / qwen2.5-vl-72b | edgeVLM |  | LCR band 20-30%; K_call=3, K_delay=4 " \
           "(inferred) | 27.3 | 64.49 | 48.00 | 21.99 | - |  |" in md
    # the leaderboard's own JSON output is not read back as results
    assert len(load_rows([tmp_path])) == len(load_rows([tmp_path / "runs"]))


def test_not_results_files(tmp_path):
    _write(tmp_path / "other.json", {"hello": 1})
    skipped: list[str] = []
    assert load_rows([tmp_path], skipped=skipped) == [] and skipped == [f"{tmp_path / 'other.json'} (not a results file)"]
    with pytest.raises(DatasetError, match="not an edgevlm-eval results file"):
        load_rows([tmp_path / "other.json"])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_rows([tmp_path / "bad.json"])
    with pytest.raises(DatasetError, match="no such results file"):
        load_rows([tmp_path / "missing"])
    doc = results_doc(RUNS_A)
    doc["tasks"]["demo"]["runs"]["edgevlm"]["metrics"] = [0.5]
    with pytest.raises(DatasetError, match=r"tasks\.demo\.runs\.edgevlm\.metrics: expected an object"):
        load_rows([_write(tmp_path / "broken.json", doc)])


def test_hand_edited_and_damaged_files(tmp_path, capsys):
    """A value that is not a fraction is refused, not ranked at 750 %; a damaged file found in a folder is
    skipped with its reason and the others are still read; a newer results format is read with a note."""
    runs = tmp_path / "runs"
    _write(runs / "good" / "results.json", results_doc(RUNS_A))
    bad = results_doc(RUNS_B)
    bad["tasks"]["demo"]["runs"]["adas"]["metrics"]["micro_f1"] = 7.5
    _write(runs / "edited" / "results.json", bad)
    text = results_doc(RUNS_B)
    text["tasks"]["demo"]["runs"]["adas"]["metrics"]["micro_f1"] = "0.7"
    _write(runs / "text" / "results.json", text)
    (runs / "torn").mkdir()
    (runs / "torn" / "results.json").write_text('{"format": "edgevlm-eval.results/1", "provenance": {')
    with pytest.raises(DatasetError, match=r"metrics\.micro_f1: expected a fraction in \[0, 1\] or null, got 7\.5"):
        load_rows([runs / "edited" / "results.json"])  # named explicitly: an error
    skipped: list[str] = []
    rows = load_rows([runs], skipped=skipped)
    assert {r.origin for r in rows} == {"svlm_only", "edgevlm"}  # the good file's rows
    assert len(skipped) == 3 and any("got 7.5" in s for s in skipped) and any("got '0.7'" in s for s in skipped)
    assert any("not valid JSON" in s for s in skipped)
    assert cli.main(["leaderboard", str(runs), "--quiet"]) == 0
    err = capsys.readouterr().out
    assert "skipped" in err and "edited" in err
    future = results_doc(RUNS_A)
    future["format"] = "edgevlm-eval.results/2"
    notes: list[str] = []
    rows = load_rows([_write(tmp_path / "f" / "results.json", future)], notes=notes)
    assert len(rows) == 2 and "format edgevlm-eval.results/2" in notes[0]


def test_cli_refuses_mixed_with_exit_code(tmp_path, capsys):
    _write(tmp_path / "a.json", results_doc(RUNS_A))
    _write(tmp_path / "b.json", results_doc(RUNS_B, cache_key="other-data"))
    assert cli.main(["leaderboard", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "task_data" in err and "other-data" in err
    assert cli.main(["leaderboard", str(tmp_path), "--quiet", "--allow-mixed"]) == 0


def test_confidence_intervals_shown_and_bootstrapped_from_frame_log(tmp_path):
    doc = results_doc({"edgevlm": RUNS_A["edgevlm"]})
    doc["tasks"]["demo"]["runs"]["edgevlm"]["ci"] = {"micro_f1": {"lo": 0.7, "hi": 0.8, "level": 0.95},
                                                     "lcr": {"lo": 0.2, "hi": 0.3125, "level": 0.95}}
    _write(tmp_path / "withci" / "results.json", doc)
    rows = load_rows([tmp_path / "withci"])
    assert rows[0].ci == {"micro_f1": (0.7, 0.8), "lcr": (0.2, 0.3125)}
    md = to_markdown(build(rows))
    assert "75.00 [70.00, 80.00]" in md and "| 25.0 [20.0, 31.2] |" in md
    # a run folder with its per-frame log: 2 streams; stream x right on both frames, y wrong on both
    run = tmp_path / "withlog"
    _write(run / "results.json", results_doc({"edgevlm": copy.deepcopy(RUNS_A["edgevlm"])}))
    lines = [{"format": "edgevlm-eval.framelog/1"}]
    for sid, pred in (("x", ["car"]), ("y", ["truck"])):
        for f in range(2):
            lines.append({"run": "edgevlm", "stream": sid, "frame": f, "scored": True, "upload": f == 0,
                          "truth": ["car"], "pred": pred, "output": "svlm"})
    (run / "frames.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    rows = load_rows([run])
    notes: list[str] = []
    assert add_bootstrap(rows, n=200, seed=0, notes=notes) == 1 and notes == []
    # resamples: {x,x} -> micro F1 1, {y,y} -> 0, {x,y} -> 0.5; exact match the same
    assert rows[0].ci["micro_f1"] == (pytest.approx(0.0), pytest.approx(1.0))
    assert rows[0].ci["lcr"] == (pytest.approx(0.5), pytest.approx(0.5))  # each stream uploads 1 of 2 frames
    assert rows[0].ci_level == 0.95


def test_lvlm_name_falls_back_to_the_trace(tmp_path):
    doc = results_doc(RUNS_A)
    doc["provenance"]["config"]["lvlm"] = None  # replayed on a trace, no --lvlm
    doc["provenance"]["models"]["lvlm"] = None
    doc["provenance"]["trace"] = {"path": "trace.jsonl", "sha256": "aaa"}
    f = _write(tmp_path / "r.json", doc)
    assert {r.lvlm for r in load_rows([f])} == {"?"}  # no trace file to ask
    (tmp_path / "trace.jsonl").write_text(json.dumps({"format": "edgevlm-eval.trace/1", "model": "qwen2.5-vl-72b"})
                                          + "\n")
    assert {r.pairing for r in load_rows([f])} == {"tiny-a / qwen2.5-vl-72b"}  # path relative to the results file


def test_timing_columns(tmp_path):
    doc = results_doc({"edgevlm": RUNS_A["edgevlm"]})
    doc["tasks"]["demo"]["runs"]["edgevlm"]["timing"] = {
        "edge_latency_s": {"mean": 0.5624, "p50": 0.55, "p95": 0.61, "max": 0.9, "n": 8},
        "engine_ms_per_frame": 0.25, "svlm_ms_per_frame": 511.2, "engine_share": 0.0005}
    lb = build(load_rows([_write(tmp_path / "r.json", doc)]))
    assert "edge mean (ms)" not in to_markdown(lb)
    lb.timings = True
    md = to_markdown(lb)
    assert "| edge mean (ms) | edge p95 (ms) | SVLM (ms) | engine (ms) |" in md
    assert "| 562.4 | 610.0 | 511.2 | 0.2 |" in md


def test_strategy_all_and_a_protocol_rank_together(tmp_path):
    # README runs `--strategy all`, then `--protocol ablation` and `--protocol main` into ./runs and then
    # `edgevlm-eval leaderboard`: which strategies a run chose is a row dimension, not a difference.
    a = results_doc(RUNS_A)
    a["provenance"]["config"].update({"all_strategies": True, "protocol": None})
    b = results_doc(RUNS_B)
    b["provenance"]["config"].update({"all_strategies": False, "protocol": "main"})
    _write(tmp_path / "all" / "results.json", a)
    _write(tmp_path / "main" / "results.json", b)
    lb = build(load_rows([tmp_path]))
    assert len(lb.groups) == 1 and len(lb.groups[0].rows) == 4
