"""The results JSON (docs/results.md): provenance first, then per task and run (a strategy with its
knobs) the metrics, LCR, LHL, invalid and unmapped counts and a timing summary.

Keys are stable; the file is written atomically. Secrets never reach it: config keys that look
like credentials, and any value equal to a secret-looking environment variable, are redacted.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any, Mapping

from edgevlm_eval import __version__, model_adapters, tasks
from edgevlm_eval.collab.accounting import summarise
from edgevlm_eval.collab.protocols import table
from edgevlm_eval.collab.search import Target
from edgevlm_eval.core.bootstrap import METHOD, bootstrap_run, intervals_to_json
from edgevlm_eval.core.io import atomic_write_json
from edgevlm_eval.core.metrics import metric_label
from edgevlm_eval.core.records import RESULTS_FORMAT, check_unique
from edgevlm_eval.core.taskconfig import TaskConfig

from .console import console

REDACTED = "***REDACTED***"
# A key is secret when its name ENDS with one of these words (api_key, HF_TOKEN, client_secret), so
# that knobs like token_focus, dvlm_tokens or api_key_env (the name of a variable) stay readable.
_SECRET_KEY = re.compile(r"(?:^|[_\-.])(?:api[_-]?key|apikey|token|secret|password|passwd|credentials?|"
                         r"authorization)$", re.I)


def _secret_env_values() -> set[str]:
    return {v for k, v in os.environ.items() if _SECRET_KEY.search(k) and v and len(v) >= 4}


def redact(obj: Any, _secrets: set[str] | None = None) -> Any:
    """A copy of `obj` with secret-looking keys and values equal to secret env vars redacted."""
    secrets = _secret_env_values() if _secrets is None else _secrets
    if isinstance(obj, Mapping):
        return {k: (REDACTED if _SECRET_KEY.search(str(k)) and v not in (None, "", False) else redact(v, secrets))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v, secrets) for v in obj]
    if isinstance(obj, str):
        for s in secrets:
            if s in obj:
                obj = obj.replace(s, REDACTED)
        return obj
    return obj


def git_hash(path: str | os.PathLike | None = None) -> str | None:
    """The commit of the toolkit's own checkout (None when installed from a wheel)."""
    here = Path(path) if path else Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    h = out.stdout.strip()
    if out.returncode != 0 or not h:
        return None
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return h + ("-dirty" if dirty else "")


def _version(mod: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:
        return None


def _toolkit_dirs() -> list[tuple[str, str]]:

    return [(str(Path(model_adapters.__file__).resolve().parent), "<edgevlm_eval>/model_adapters"),
            (str(Path(tasks.__file__).resolve().parent), "<edgevlm_eval>/tasks")]


def portable_paths(obj: Any, _dirs: list[tuple[str, str]] | None = None) -> Any:
    """A copy of `obj` where paths inside the installed toolkit (the shipped demo checkpoints, task
    files) read `<edgevlm_eval>/...`: results and traces then say the same on every machine and
    carry no install path."""
    dirs = _toolkit_dirs() if _dirs is None else _dirs
    if isinstance(obj, Mapping):
        return {k: portable_paths(v, dirs) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable_paths(v, dirs) for v in obj]
    if isinstance(obj, str):
        for real, shown in dirs:
            if obj == real or obj.startswith(real + os.sep):
                return shown + obj[len(real):].replace(os.sep, "/")
    return obj


def provenance(*, config: Mapping, task=None, stream_info: Mapping | None = None, models: Mapping | None = None,
               trace: Mapping | None = None, seeds: Mapping | None = None, latency: Mapping | None = None,
               extra: Mapping | None = None) -> dict:
    p = {
        "toolkit_version": __version__,
        "git_hash": git_hash(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "config": redact(dict(config)),
        "seeds": dict(seeds or {}),
        "models": portable_paths(redact(dict(models or {}))),
        "trace": portable_paths(dict(trace or {})),
        "latency": dict(latency or {}),
    }
    if task is not None:
        info = {"version": task.version, "source": Path(task.source).name if task.source else None,
                "fps": task.fps, "labels": list(task.label_space.names), "metrics": list(task.metrics),
                "primary_metric": task.primary_metric, "multi_label": task.label_space.multi_label}
        if stream_info:
            info["cache_key"] = stream_info.get("cache_key")
        p["tasks"] = {task.name: info}
    if extra:
        p.update(redact(dict(extra)))
    return p


def build_results(prov: dict, task_name: str, runs: Mapping[str, dict], *, meta_runs: Mapping[str, dict] | None = None,
                  n_streams: int | None = None, n_frames: int | None = None, protocol: dict | None = None,
                  status: dict | None = None) -> dict:
    """The whole document. `runs`: run id -> accounting summary; `meta_runs`: run id -> run.json's
    entry (spec and display)."""
    block: dict = {"streams": n_streams, "frames": n_frames, "runs": {}}
    for rid, summ in runs.items():
        meta = (meta_runs or {}).get(rid) or {}
        entry = {"spec": meta.get("spec") or {"strategy": rid, "run": rid}}
        display = meta.get("display") or {}
        if display:
            entry["label"] = display.get("label")
            entry["display"] = display
        entry.update(summ)
        block["runs"][rid] = entry
    doc = {"format": RESULTS_FORMAT, "provenance": prov, "tasks": {task_name: block}}
    if protocol:
        doc["protocol"] = protocol
    if status is not None:
        doc["status"] = status
    return doc


def write_results(path: str | os.PathLike, doc: dict) -> None:
    atomic_write_json(path, doc)


def run_status(runs: Mapping[str, dict], trace_failed: dict | None) -> dict:
    """Whether the run is compromised: failed LVLM frames in the trace it replayed, SVLM replies
    that failed, a failed trace scored by --allow-failed-trace. The exit code follows it."""
    reasons = []
    tf = trace_failed or {}
    if tf.get("frames"):
        reasons.append(f"{tf['frames']} of {tf.get('of')} frames of the LVLM trace have no usable reply "
                       f"({', '.join(f'{k}: {v}' for k, v in sorted((tf.get('by_kind') or {}).items()))})")
    for rid, s in runs.items():
        f = s.get("failed") or {}
        if f.get("svlm"):
            reasons.append(f"run {rid}: {f['svlm']} SVLM replies failed")
    return {"compromised": bool(reasons), "reasons": reasons}


def results_from_folder(folder, task: TaskConfig, *, extra: dict | None = None, svlm_info: dict | None = None,
                        metric_options: dict | None = None) -> dict:
    """results.json from run.json + the per-frame logs (the pure scoring path)."""

    meta = folder.read_run_json()
    lines = folder.lines()
    check_unique(lines, str(folder.path))
    opts = dict(metric_options if metric_options is not None else meta.get("metric_options") or {})
    opts = {k: v for k, v in opts.items() if v is not None}
    opts.setdefault("macro_f1_label_set", task.macro_f1_label_set)  # the task's convention unless the run said
    summaries = summarise(lines, task, **opts)
    meta_runs = {r["spec"]["run"]: r for r in meta["runs"]}
    runs = {rid: summaries[rid] for rid in meta_runs if rid in summaries}
    config = meta["config"]
    n_boot = int(config.get("bootstrap") or 0)
    off_target = []
    for rid, s in runs.items():
        if rid in meta.get("search", {}):
            target = Target.from_label(meta["search"][rid]["target"])
            s["search"] = {**meta["search"][rid], "reached": target.reached(s["lcr"])}
            if not s["search"]["reached"]:
                off_target.append(f"{rid}: LCR {100 * s['lcr']:.1f} % is outside its target "
                                  f"{s['search']['target']} %, the nearest its knob reaches on these frames "
                                  "(compare it with that in mind)")
        if n_boot > 0:
            seed = int(config.get("bootstrap_seed") or 0)
            s["ci"] = intervals_to_json(bootstrap_run(lines, rid, task.label_space, task.metrics, n=n_boot, seed=seed,
                                                      **opts))
            s["ci_method"] = METHOD
    trace = dict(meta.get("trace") or {})
    lvlm = config.get("lvlm") or trace.get("model")
    if trace.get("model_info"):
        lvlm = {**trace["model_info"], "spec": trace.get("model")}
    # what the run itself reported (run.json keeps it), so that a rescore writes it again
    kept = {"latency_sources": meta.get("latency") or {}, **({"world": meta["world"]} if "world" in meta else {})}
    extra = {**kept, **(extra or {})}
    prov = provenance(config=config, task=task, stream_info=meta.get("stream_info"),
                      models={"svlm": svlm_info or meta.get("svlm_info") or config.get("svlm"), "lvlm": lvlm},
                      trace=trace, seeds=_seeds(config), latency=meta.get("latency") or {}, extra=extra)
    prov["config_hash"] = meta["config_hash"]
    if meta.get("edge_latency"):
        prov["edge_latency"] = meta["edge_latency"]
    prov["metric_options"] = opts
    notes = [*meta.get("notes", []), *off_target]
    if notes:
        prov["notes"] = notes
    rows = [{"run": r["spec"]["run"], "group": r["group"], "label": r["label"],
             "reference": bool((r.get("display") or {}).get("reference"))} for r in meta["runs"]]
    proto = table(meta["protocol"], rows, runs, task.metrics, notes) \
        if meta["protocol"] != "strategies" else None
    n_frames = len({(ln.stream, ln.frame) for ln in lines})
    doc = build_results(prov, task.name, runs, meta_runs=meta_runs, n_streams=len({ln.stream for ln in lines}),
                        n_frames=n_frames, protocol=proto, status=run_status(runs, trace.get("failed")))
    write_results(folder.results_json, doc)
    return doc


def _seeds(config: dict) -> dict:
    out = {}
    lat = str(config.get("latency") or "")
    if "seed=" in lat:
        out["latency"] = int(lat.split("seed=")[1].split(",")[0])
    if config.get("bootstrap"):
        out["bootstrap"] = int(config.get("bootstrap_seed") or 0)
    return out


# ---------------------------------------------------------------------------------------------
# the console report


def summary_table(task: TaskConfig, runs: dict) -> tuple[list[str], list[list]]:

    failed = any((s.get("failed") or {}).get("lvlm") or (s.get("failed") or {}).get("svlm") for s in runs.values())
    cols = ["run", *(f"{metric_label(m)} %" for m in task.metrics), "LCR %", "LHL (frames)", "invalid",
            *(["failed (LVLM/SVLM)"] if failed else []), "VFM applied"]
    rows = []
    for rid, s in runs.items():
        ms = [None if s["metrics"].get(m) is None else 100 * s["metrics"][m] for m in task.metrics]
        v = s["vfm"]
        name = rid + (" (proxy)" if (s.get("display") or {}).get("proxy") else "")
        f = s.get("failed") or {}
        rows.append([name, *ms, None if s["lcr"] is None else 100 * s["lcr"], s["lhl"], s["invalid"]["total"],
                     *([f"{f.get('lvlm', 0)}/{f.get('svlm', 0)}"] if failed else []),
                     f"{v['applied']}/{v['requested']}" if v["requested"] else "-"])
    return cols, rows


def print_table(title: str, columns: list[str], rows: list[list]) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(title))
    for c in columns:
        t.add_column(escape(str(c)), overflow="fold")
    for r in rows:
        t.add_row(*[escape("" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))) for v in r])
    console().print(t)


def print_report(doc: dict, task: TaskConfig) -> None:
    log = logging.getLogger("edgevlm_eval.results")
    for tname, block in doc["tasks"].items():
        cols, rows = summary_table(task, block["runs"])
        print_table(f"{tname}: {len(block['runs'])} runs, {block['frames']} frames", cols, rows)
    proto = doc.get("protocol")
    if proto:
        print_table(f"protocol {proto['name']}", [metric_label(c) for c in proto["columns"]], proto["rows"])
    for n in doc["provenance"].get("notes", []):
        print("note:", n)
    status = doc.get("status") or {}
    for r in status.get("reasons", []):
        log.warning("compromised: %s", r)
