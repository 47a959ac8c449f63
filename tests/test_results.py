"""The results JSON: provenance first, redaction, stable keys, atomic write."""

from __future__ import annotations

import json

from edgevlm_eval.collab.accounting import summarise_run
from edgevlm_eval.collab.testing import toy_task
from edgevlm_eval.app.results import REDACTED, build_results, provenance, redact, write_results
from edgevlm_eval.core.records import RESULTS_FORMAT as FORMAT, FrameLine


def _line(frame, pred, upload=False, lag=None, output="svlm", invalid=None, scored=True):
    return FrameLine.from_json({
        "run": "r", "stream": "s", "frame": frame, "scored": scored, "truth": ["car", "truck"], "upload": upload,
        "why": "keyframe" if upload else "k_call", "in_time": True if upload else None, "pred": pred,
        "output": output, "invalid": invalid, "lag": lag, "svlm": {"ok": True, "e_s": 0.5, "unmapped": []},
        "lvlm": {"ok": True, "labels": ["car", "truck"], "unmapped": []} if upload else None,
        "vfm": None, "engine_s": 0.001, "svlm_s": 0.019})


def test_accounting_by_hand():
    lines = [_line(0, ["car", "truck"], upload=True, output="lvlm"),
             _line(1, ["car"], lag=1),
             _line(2, None, lag=2, output="invalid", invalid="svlm_late"),
             _line(3, ["pedestrian"], lag=3, scored=False)]
    s = summarise_run(lines, toy_task())
    assert s["lcr"] == 0.25 and s["uploads"] == 1
    assert s["lhl"] == 2.0 and s["lhl_n"] == 3  # (1 + 2 + 3) / 3, unscored frames count for LHL
    # scored frames 0-2: TP 3, FP 0, FN 3 -> micro-F1 = 6 / 9
    assert s["metrics"]["micro_f1"] == 6 / 9 and s["metrics"]["n"] == 3 and s["metrics"]["n_invalid"] == 1
    assert s["metrics"]["exact_match"] == 1 / 3
    assert s["invalid"] == {"total": 1, "scored": 1, "by_reason": {"svlm_late": 1}}
    assert s["output_sources"] == {"lvlm": 1, "svlm": 2, "invalid": 1}
    assert s["timing"]["engine_share"] == 0.05 and s["timing"]["edge_latency_s"]["mean"] == 0.5


def test_results_document(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVICE_TOKEN", "tok-abcdef")
    cfg = {"tau": 1.0, "api_key": "sk-1", "lvlm": "openai-compatible?base_url=http://x&key=tok-abcdef",
           "nested": {"password": "p"}}
    prov = provenance(config=cfg, task=toy_task(), stream_info={"cache_key": "ck"},
                      trace={"path": "t.jsonl", "sha256": "ab"}, seeds={"latency": 3})
    assert list(prov)[:8] == ["toolkit_version", "git_hash", "date", "python", "platform", "torch", "transformers",
                              "config"]
    assert prov["config"]["api_key"] == REDACTED and prov["config"]["nested"]["password"] == REDACTED
    assert "tok-abcdef" not in json.dumps(prov)
    assert prov["tasks"]["toy"]["cache_key"] == "ck" and prov["torch"].startswith("2.")
    doc = build_results(prov, "toy", {"edgevlm": {"metrics": {}, "lcr": 0.3}},
                        meta_runs={"edgevlm": {"spec": {"strategy": "edgevlm", "run": "edgevlm"}}}, n_streams=2,
                        n_frames=10)
    assert list(doc) == ["format", "provenance", "tasks"] and doc["format"] == FORMAT
    assert list(doc["tasks"]["toy"]["runs"]["edgevlm"])[:2] == ["spec", "metrics"]
    write_results(tmp_path / "r" / "results.json", doc)
    assert json.loads((tmp_path / "r" / "results.json").read_text())["tasks"]["toy"]["frames"] == 10
    assert not list((tmp_path / "r").glob(".*.tmp"))  # atomic write leaves no temporary file


def test_redact_keeps_harmless_values():
    harmless = {"K_call": 3, "token_focus": True, "dvlm_tokens": 5, "max_new_tokens": 8, "api_key_env": "OPENAI_API_KEY"}
    assert redact(harmless, set()) == harmless
    assert redact({"api_key": None, "HF_TOKEN": "x", "client_secret": "y"}, set()) == {
        "api_key": None, "HF_TOKEN": REDACTED, "client_secret": REDACTED}


def test_paths_inside_the_toolkit_are_portable():
    from pathlib import Path

    from edgevlm_eval import model_adapters
    from edgevlm_eval.app.results import portable_paths

    shipped = str(Path(model_adapters.__file__).resolve().parent / "checkpoints" / "demo-svlm")
    doc = {"svlm": {"checkpoint": shipped, "other": "/data/ckpt"}, "list": [shipped]}
    out = portable_paths(doc)
    assert out["svlm"]["checkpoint"] == "<edgevlm_eval>/model_adapters/checkpoints/demo-svlm"
    assert out["svlm"]["other"] == "/data/ckpt"  # a user's own path is theirs to keep
    assert out["list"] == ["<edgevlm_eval>/model_adapters/checkpoints/demo-svlm"]
