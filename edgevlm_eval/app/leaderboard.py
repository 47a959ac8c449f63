"""The leaderboard: results JSONs (files or folders, searched recursively) in one table.

Rows are (task x pairing x strategy [x setting]) with LCR, LHL and every metric, with its bootstrap
confidence interval when the results file has one. Output: a rich table on the terminal, Markdown
and a machine-readable JSON.

Rows are only ranked together when they are comparable. A reproduced row carries a
**compatibility key**: toolkit version, task version and data, the evaluation settings of the
resolved config (not the per-run knobs, models or output paths), and, per LVLM, the trace it was
replayed on. Rows of one task whose keys differ are not silently merged: the leaderboard stops with
a message naming what differs and in which files, unless `--allow-mixed`, which shows each
compatible group as its own ranking. The paper's reported numbers (`results/paper/`, marked
"reported in the paper") are shown beside the reproduced rows, labelled, never ranked with them.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from edgevlm_eval import __version__
from edgevlm_eval.app.console import console as make_console
from edgevlm_eval.collab.strategies import BUILTIN
from edgevlm_eval.core.bootstrap import bootstrap_run
from edgevlm_eval.core.errors import DatasetError, EdgeVLMError
from edgevlm_eval.core.io import atomic_write_json, atomic_write_text
from edgevlm_eval.core.labels import LabelSpace
from edgevlm_eval.core.metrics import METRICS, metric_label, metric_order
from edgevlm_eval.core.records import (
    RESULTS_FORMAT_PREFIX,
    load_json,
    parse_results,
    read_logs,
    read_results,
)

from .options import ENGINE_OPTIONS

PAPER_SOURCE = "reported in the paper"
REPRODUCED = "reproduced"
PAPER_FORMAT = "edgevlm-eval.paper-results/1"
LEADERBOARD_FORMAT = "edgevlm-eval.leaderboard/1"
DEFAULT_RUNS = "runs"  # the main command's default --output-dir


def _per_run_keys() -> set[str]:
    """Keys of the resolved config that may differ between runs that are still ranked together: the
    strategies and their knobs (row dimensions), the models, where files go, how work is split and
    shown, how the trace was recorded."""

    knobs = {o.dest for o in ENGINE_OPTIONS if o.knob} | {o.knob for o in ENGINE_OPTIONS if o.knob}
    return knobs | {
        "strategy", "strategies", "all_strategies", "runs", "run", "svlm", "lvlm", "models", "models_dir", "output_dir", "resume",
        "no_cache",
        "tasks_dir", "data_root", "world", "batch_size", "quiet", "verbose", "target_lcr", "protocol", "plots",
        "bootstrap", "bootstrap_seed", "trace", "run_name", "overwrite", "rescore", "engine_config", "keep_failed",
        "allow_failed_trace", "max_failed", "concurrency", "record_batch_size", "api_key", "base_url",
    }


CONFIG_KEYS_PER_RUN = _per_run_keys()
# --timings columns: (Row.timing key, header). Paper Table 3's "Total" is the edge latency per frame.
TIMING_COLUMNS = (("edge_ms_mean", "edge mean (ms)"), ("edge_ms_p95", "edge p95 (ms)"),
                  ("svlm_ms_per_frame", "SVLM (ms)"), ("engine_ms_per_frame", "engine (ms)"))


class LeaderboardError(EdgeVLMError):
    """Results that cannot be put in one table as asked (incompatible rows, unreadable files)."""


@dataclass
class Row:
    """One leaderboard row: a task x pairing x strategy (with its setting) in one results file."""

    task: str
    svlm: str
    lvlm: str
    strategy: str
    metrics: dict[str, float | None]
    lcr: float | None = None
    lhl: float | None = None
    params: dict[str, Any] = field(default_factory=dict)  # the strategy's knobs (K_call, theta, delay_s, ...)
    setting: str = ""  # the knobs / LCR band in words
    variant: str = ""  # ablation variant (edgeVLM with some modules off), part of the strategy label
    ci: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    ci_level: float | None = None
    n_frames: int | None = None
    n_invalid: int | None = None
    source: str = REPRODUCED
    origin: str = ""  # the paper's table, or the run id
    file: str = ""
    compat: dict[str, Any] = field(default_factory=dict)
    tau: float | None = None
    trace_path: str | None = None
    primary_metric: str | None = None
    file_label: str = ""  # `file` as shown: relative to the common folder of the files read
    timing: dict[str, float | None] = field(default_factory=dict)  # ms per frame (wall time: not compared)
    label: str = ""  # the strategy's display label, e.g. "ADAS (proxy)"
    colour: str | None = None  # the strategy's colour in figures
    reference: bool = False  # the no-cloud reference run (SVLM only)

    @property
    def name(self) -> str:
        return self.file_label or Path(self.file).name

    @property
    def pairing(self) -> str:
        return f"{self.svlm} / {self.lvlm}"

    @property
    def strategy_label(self) -> str:
        base = self.label or self.strategy
        return f"{base}[{self.variant}]" if self.variant else base

    @property
    def is_paper(self) -> bool:
        return self.source == PAPER_SOURCE

    def to_json(self) -> dict:
        d = asdict(self)
        d["pairing"] = self.pairing
        d["strategy_label"] = self.strategy_label
        d["ci"] = {k: list(v) for k, v in self.ci.items()}
        return d


# ---------------------------------------------------------------------------------------------
# reading


def is_trace_file(path: str | Path) -> bool:
    """An LVLM trace (JSONL whose first line is a trace header), for `plot --kind latency`."""
    p = Path(path)
    if not p.is_file() or p.suffix != ".jsonl":
        return False
    try:
        with open(p, encoding="utf-8") as fh:
            head = json.loads(fh.readline() or "{}")
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return False
    return isinstance(head, dict) and str(head.get("format", "")).startswith("edgevlm-eval.trace/")


def kind_of(doc: Any) -> str | None:
    """'paper', 'results', 'leaderboard' or None (not a file the leaderboard reads)."""
    if not isinstance(doc, dict):
        return None
    fmt = str(doc.get("format", ""))
    if fmt == PAPER_FORMAT or doc.get("source") == PAPER_SOURCE:
        return "paper"
    if fmt == LEADERBOARD_FORMAT or fmt.startswith("edgevlm-eval.run/") or fmt.startswith("edgevlm-eval.compare/"):
        return "leaderboard"  # our own outputs, or a run folder's run.json: not results, not worth a note
    if fmt.startswith(RESULTS_FORMAT_PREFIX):
        return "results"
    return None


def find_files(paths: Sequence[str | Path]) -> list[tuple[Path, bool]]:
    """(file, named explicitly) for every *.json under `paths` (folders searched recursively,
    sorted, hidden folders skipped)."""
    out: list[tuple[Path, bool]] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for f in sorted(p.rglob("*.json")):
                if not any(part.startswith(".") for part in f.relative_to(p).parts):
                    out.append((f, False))
        elif p.is_file():
            out.append((p, True))
        else:
            raise DatasetError("no such results file or folder", path=str(p))
    return out


def load_rows(paths: Sequence[str | Path], *, skipped: list[str] | None = None,
              notes: list[str] | None = None) -> list[Row]:
    """Rows of every results / paper file under `paths`. A file named explicitly that is not a
    readable results file is an error; one found in a folder is skipped with its reason (listed in
    `skipped`), so one damaged file never hides the others."""
    rows: list[Row] = []
    for f, explicit in find_files(paths):
        try:
            doc = load_json(f)
            kind = kind_of(doc)
            if kind == "paper":
                rows += rows_from_paper(doc, f)
            elif kind == "results":
                rows += rows_from_results(doc, f, notes=notes)
            elif kind == "leaderboard":
                continue
            elif explicit:
                raise DatasetError("not an edgevlm-eval results file: expected a JSON object with 'format': "
                                   f"'{RESULTS_FORMAT_PREFIX}N' (or a paper file with 'source': '{PAPER_SOURCE}')",
                                   path=str(f))
            elif skipped is not None:
                skipped.append(f"{f} (not a results file)")
        except DatasetError as e:
            if explicit:
                raise
            if skipped is not None:
                skipped.append(f"{f} ({str(e).splitlines()[0]})")
    label_files(rows)
    return rows


def label_files(rows: Sequence[Row]) -> None:
    """Short, unambiguous file names for tables and messages: every run folder writes a
    `results.json`, so the path relative to the files' common folder (`demo/kc1/results.json`)."""
    files = sorted({str(Path(r.file).resolve()) for r in rows if not r.is_paper})
    if not files:
        return
    import os

    common = os.path.commonpath(files) if len(files) > 1 else str(Path(files[0]).parent)
    if len(files) > 1 and common in files:  # a single file given twice
        common = str(Path(common).parent)
    for r in rows:
        if not r.is_paper:
            r.file_label = os.path.relpath(str(Path(r.file).resolve()), common)


def knob_text(v) -> str:
    """A knob value as tables and legends write it (4.0 -> 4)."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def describe_params(params: dict) -> str:
    return ", ".join(f"{k}={knob_text(v)}" for k, v in params.items())


def rows_from_paper(doc: dict, path: Path) -> list[Row]:
    """Rows of a `results/paper/` file (Tables 1, 2, 5; the timing tables have no rows)."""
    pairing = doc.get("pairing") or {}
    tau = (doc.get("setting") or {}).get("tau_s")
    table = str(doc.get("table", ""))
    rows = []
    for i, e in enumerate(doc.get("entries") or []):
        where = f"entries[{i}]"
        for k in ("task", "strategy"):
            if k not in e:
                raise DatasetError(f"{where}: missing '{k}'", path=str(path))
        params = dict(e.get("params") or {})
        bits = []
        if e.get("lcr_band"):
            bits.append(f"LCR band {e['lcr_band']}")
        if params:
            bits.append(describe_params(params) + (" (inferred)" if e.get("params_note") else ""))
        if e.get("modules"):
            bits.append("all frames uploaded")
            params.update({k: bool(v) for k, v in e["modules"].items()})
        label, colour, reference, variant = _paper_label(e["strategy"], params)
        rows.append(Row(
            label=label, colour=colour, reference=reference,
            task=e["task"], svlm=pairing.get("svlm", "?"), lvlm=pairing.get("lvlm", "?"), strategy=e["strategy"],
            metrics=dict(e.get("metrics") or {}), lcr=e.get("lcr"), lhl=e.get("lhl"), params=params,
            setting="; ".join(bits), variant=variant, source=PAPER_SOURCE, origin=f"paper {table}",
            file=str(path), tau=tau, compat={"source": PAPER_SOURCE}))
    return rows


# -- reproduced results (the engine's results JSON, docs/results.md) ----------------------------


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(d, list):
        return {prefix: json.dumps(d, sort_keys=True, default=str)}
    return {prefix: d}


def comparable_config(config: dict | None) -> dict[str, Any]:
    """The evaluation settings of a resolved config as flat dotted keys, without the keys that may
    differ between runs that are still comparable (CONFIG_KEYS_PER_RUN)."""
    flat = _flatten(config or {})
    return {k: v for k, v in sorted(flat.items()) if not set(k.split(".")) & CONFIG_KEYS_PER_RUN}


def _ci_of(entry: dict, metric: str):
    """(lo, hi) of a metric's interval in any of the shapes a results entry may hold."""
    ci = entry.get("ci") or entry.get("bootstrap") or {}
    c = ci.get(metric) if isinstance(ci, dict) else None
    if isinstance(c, dict):
        return (c.get("lo"), c.get("hi")), c.get("level")
    if isinstance(c, (list, tuple)) and len(c) == 2:
        return (c[0], c[1]), ci.get("level")
    return None, None


def _model_name(*candidates: Any) -> str:
    """The first name found: a registry name / adapter spec string, or a provenance dict's name."""
    for m in candidates:
        if isinstance(m, dict):
            m = m.get("name") or m.get("spec") or m.get("id")
        if m:
            return str(m)
    return "?"


def _trace_model(trace: dict, results_file: Path) -> str | None:
    """The LVLM of the trace a run replayed: its provenance, else the trace file's header line."""
    if trace.get("model"):
        return str(trace["model"])
    p = trace.get("path")
    for f in ((Path(p), results_file.parent / p) if p else ()):
        try:
            if f.is_file():
                with open(f, encoding="utf-8") as fh:
                    return json.loads(fh.readline() or "{}").get("model")
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
    return None


def _paper_label(strategy: str, params: dict) -> tuple[str, str | None, bool, str]:
    """(label, colour, reference, variant) of a strategy named in a paper file, from its class when
    built in (the variant from the modules the entry switches, as the class names them)."""
    cls = BUILTIN.get(strategy)
    if cls is None:
        return strategy, None, False, ""
    known = {k: v for k, v in params.items() if k in cls.Knobs.names()}
    try:
        variant = cls.variant(cls.Knobs.from_mapping(known))
    except EdgeVLMError:
        variant = ""
    # a strategy whose label names one reading (LAECIPS) shows the paper's own rows apart (paper_label)
    return (getattr(cls, "paper_label", None) or cls.display_label()), cls.colour, cls.reference, variant


def rows_from_results(doc: dict, path: Path, *, notes: list[str] | None = None) -> list[Row]:
    """Rows of one results JSON written by the engine (docs/results.md), read through the one reader."""
    res = parse_results(doc, str(path))
    if notes is not None:
        notes.extend(res.notes)
    prov = res.provenance
    config = prov.get("config") or {}
    models = prov.get("models") or {}
    trace = prov.get("trace") or {}
    if not isinstance(trace, dict):
        trace = {"sha256": trace}
    # The names the user gave (registry names) identify a pairing; without --lvlm the LVLM is the trace's.
    svlm = _model_name(config.get("svlm"), models.get("svlm"))
    lvlm = _model_name(config.get("lvlm"), models.get("lvlm"), _trace_model(trace, path))
    rows = []
    for task, block in res.tasks.items():
        tinfo = res.task_info(task)
        for run_id, s in block.runs.items():
            spec = dict(s.spec)
            spec.pop("strategy", None)
            spec.pop("run", None)
            params = {k: v for k, v in spec.items() if k != "latency"}
            # The latency study: a run-level `latency: fixed:D` (the delay protocol), else a fixed
            # latency for the whole results file (--latency fixed:D).
            lat = spec.get("latency") or config.get("latency")
            if isinstance(lat, str) and lat.startswith("fixed:"):
                params["delay_s"] = float(lat.split(":", 1)[1])
            d = s.display
            metrics = {k: v for k, v in s.metrics.items() if k in METRICS}
            ci, level = {}, None
            for m in [*metrics, "lcr"]:  # the LCR's interval too (same stream resamples as the metrics')
                c, lv = _ci_of(s.raw, m)
                if c:
                    ci[m], level = c, lv or level
            shown = dict(d.get("setting") or {})
            search = s.search or {}
            target = search.get("target")  # protocol main / --target-lcr: the LCR band aimed at
            missed = " (not reached)" if search.get("reached") is False else ""
            setting = "; ".join(x for x in (f"target LCR {target} %{missed}" if target else "", describe_params(shown),
                                            f"fixed delay {params['delay_s']:g} s" if "delay_s" in params else "")
                                if x)
            tm = s.raw.get("timing") or {}
            edge = tm.get("edge_latency_s") or {}
            timing = {"edge_ms_mean": None if edge.get("mean") is None else 1000 * edge["mean"],
                      "edge_ms_p95": None if edge.get("p95") is None else 1000 * edge["p95"],
                      "svlm_ms_per_frame": tm.get("svlm_ms_per_frame"),
                      "engine_ms_per_frame": tm.get("engine_ms_per_frame")}
            rows.append(Row(
                timing=timing, label=s.label, colour=d.get("colour"), reference=bool(d.get("reference")),
                task=task, svlm=svlm, lvlm=lvlm, strategy=s.strategy, metrics=metrics, lcr=s.lcr,
                lhl=s.lhl, params=params, setting=setting, variant=str(d.get("variant") or ""), ci=ci,
                ci_level=level, n_frames=s.scored_frames if s.scored_frames is not None else s.frames,
                n_invalid=(s.raw.get("invalid") or {}).get("scored"),
                source=REPRODUCED, origin=str(run_id), file=str(path),
                compat={"toolkit_version": prov.get("toolkit_version"),
                        "task_version": tinfo.get("version") if isinstance(tinfo, dict) else None,
                        "task_data": (tinfo.get("cache_key") or tinfo.get("data")) if isinstance(tinfo, dict) else None,
                        "edge_latency": prov.get("edge_latency") or None,
                        **{f"config.{k}": v for k, v in comparable_config(config).items()},
                        "trace_sha256": trace.get("sha256")},
                tau=config.get("tau"), trace_path=trace.get("path"),
                primary_metric=tinfo.get("primary_metric") if isinstance(tinfo, dict) else None))
    return rows


def add_bootstrap(rows: Sequence[Row], *, n: int, level: float = 0.95, seed: int = 0,
                  notes: list[str] | None = None) -> int:
    """Fill in bootstrap intervals (over streams) for reproduced rows that have none, from the
    per-frame log(s) next to their results file (`frames*.jsonl`, docs/results.md). Returns how
    many rows got intervals; rows whose log is missing are listed in `notes`."""

    logs: dict[str, list[dict]] = {}
    docs: dict[str, dict] = {}
    done = 0
    for r in rows:
        if r.is_paper or r.ci:
            continue
        folder = str(Path(r.file).parent)
        if folder not in logs:
            logs[folder] = read_logs(folder)[1]
        lines = [ln for ln in logs[folder] if ln.run == r.origin]
        if r.file not in docs:
            docs[r.file] = read_results(r.file)
        doc_task = docs[r.file].task_info(r.task)
        labels, metrics = doc_task.get("labels"), [m for m in (doc_task.get("metrics") or r.metrics) if m in r.metrics]
        if not lines or not labels:
            if notes is not None:
                notes.append(f"{r.name} run {r.origin}: no per-frame log lines (or no label list in "
                             "its provenance) to bootstrap from")
            continue
        space = LabelSpace(names=list(labels), multi_label=bool(doc_task.get("multi_label", True)))
        label_set = (docs[r.file].tasks[r.task].runs[r.origin].metrics.get("macro_f1_label_set")
                     if r.task in docs[r.file].tasks and r.origin in docs[r.file].tasks[r.task].runs else None)
        iv = bootstrap_run(lines, r.origin, space, metrics, n=n, level=level, seed=seed, macro_f1_label_set=label_set)
        r.ci = {m: (iv[m].lo, iv[m].hi) for m in [*metrics, "lcr"] if m in iv}
        r.ci_level = level
        done += 1
    return done


# ---------------------------------------------------------------------------------------------
# compatibility


def _differences(rows: Sequence[Row], keys: Sequence[str]) -> list[str]:
    """For each compat field that takes more than one value over `rows`: 'field: value (files); ...'."""
    msgs = []
    for k in keys:
        by_val: dict[str, set[str]] = defaultdict(set)
        for r in rows:
            by_val[json.dumps(r.compat.get(k), sort_keys=True, default=str)].add(r.name)
        if len(by_val) > 1:
            parts = [f"{v} in {', '.join(sorted(fs))}" for v, fs in sorted(by_val.items())]
            msgs.append(f"{k}: " + "; ".join(parts))
    return msgs


def compat_groups(rows: Sequence[Row]) -> tuple[list[list[Row]], list[str]]:
    """Reproduced rows of ONE task split into compatible groups, and what differs between them.

    Toolkit version, task version/data and evaluation config must agree over the task; the trace
    must agree among rows with the same LVLM (a different LVLM is a different trace by design)."""
    rows = [r for r in rows if not r.is_paper]
    if not rows:
        return [], []
    global_keys = sorted({k for r in rows for k in r.compat if not k.startswith("trace")})
    trace_keys = sorted({k for r in rows for k in r.compat if k.startswith("trace")})

    def key(r: Row) -> str:
        g = {k: r.compat.get(k) for k in global_keys}
        return json.dumps(g, sort_keys=True, default=str)

    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    diffs = _differences(rows, global_keys) if len(groups) > 1 else []
    # Within a group, split further by trace per LVLM.
    final: list[list[Row]] = []
    for g in groups.values():
        by_lvlm: dict[str, list[Row]] = defaultdict(list)
        for r in g:
            by_lvlm[r.lvlm].append(r)
        sub: dict[str, list[Row]] = defaultdict(list)
        for lvlm, rs in sorted(by_lvlm.items()):
            traces = {json.dumps({k: r.compat.get(k) for k in trace_keys}, sort_keys=True) for r in rs}
            if len(traces) > 1:
                diffs += [f"(LVLM {lvlm}) " + d for d in _differences(rs, trace_keys)]
                for r in rs:
                    sub[json.dumps({k: r.compat.get(k) for k in trace_keys}, sort_keys=True)].append(r)
            else:
                sub[""].extend(rs)
        if len(sub) == 1:
            final.append(next(iter(sub.values())))
        else:
            # Rows of other LVLMs stay with the first trace group of the mixed LVLM.
            keys = sorted(k for k in sub if k)
            first = sub[keys[0]] + sub.get("", [])
            final.append(first)
            final += [sub[k] for k in keys[1:]]
    return final, diffs


_REMEDY = ("Re-run them with the same settings, select compatible files, or pass --allow-mixed to treat each "
           "compatible group on its own.")


def _incomparable(task: str, groups, diffs) -> str:
    files = sorted({r.name for g in groups for r in g})
    return (f"task {task}: {len(groups)} groups of results that are not comparable (files {', '.join(files)}):"
            "\n    " + "\n    ".join(diffs))


def comparable_groups(rows: Sequence[Row], task: str, *, allow_mixed: bool) -> tuple[list[list[Row]], list[str]]:
    """compat_groups of one task's rows; several groups are an error (naming what differs) unless
    `allow_mixed`. The one check behind the leaderboard's ranking and the plots' figures."""
    groups, diffs = compat_groups(rows)
    if len(groups) > 1 and not allow_mixed:
        raise LeaderboardError("refusing to put results that are not comparable side by side:\n  "
                               + _incomparable(task, groups, diffs) + "\n" + _REMEDY)
    return groups, diffs


# ---------------------------------------------------------------------------------------------
# the table


@dataclass
class Group:
    task: str
    rows: list[Row]
    label: str = ""  # "" when the task has a single group; "A", "B", ... otherwise
    ranked: bool = True  # paper rows are listed, not ranked


@dataclass
class Leaderboard:
    groups: list[Group]
    metrics: dict[str, list[str]]  # task -> metric columns
    primary: dict[str, str | None]  # task -> ranking metric
    differences: dict[str, list[str]]  # task -> what differs between its groups (with --allow-mixed)
    skipped: list[str] = field(default_factory=list)
    timings: bool = False  # show the timing columns

    def to_json(self) -> dict:
        tasks: dict[str, Any] = {}
        for g in self.groups:
            t = tasks.setdefault(g.task, {"metrics": self.metrics[g.task], "ranking_metric": self.primary[g.task],
                                          "differences": self.differences.get(g.task, []), "groups": []})
            t["groups"].append({
                "label": g.label, "source": PAPER_SOURCE if not g.ranked else REPRODUCED,
                "compatibility": g.rows[0].compat if g.rows and g.ranked else None,
                "rows": [{"rank": (i + 1) if g.ranked else None, **r.to_json()} for i, r in enumerate(g.rows)],
            })
        return {"format": LEADERBOARD_FORMAT, "toolkit_version": __version__, "metric_unit": "fraction in [0, 1]",
                "tasks": tasks, "skipped_files": self.skipped}


def _metric_columns(rows: Sequence[Row]) -> list[str]:
    return metric_order({m for r in rows for m, v in r.metrics.items() if v is not None})


def _sort_key(metric: str | None):
    def key(r: Row):
        v = r.metrics.get(metric) if metric else None
        return (v is None, -(v or 0.0), r.lcr if r.lcr is not None else math.inf, r.pairing, r.strategy_label,
                r.setting)
    return key


def build(rows: Sequence[Row], *, allow_mixed: bool = False, include_paper: bool = True,
          tasks: Sequence[str] | None = None, metric: str | None = None) -> Leaderboard:
    """Group, check and rank rows. Raises LeaderboardError when a task's reproduced rows are not
    comparable and `allow_mixed` is off."""
    if tasks:
        rows = [r for r in rows if r.task in set(tasks)]
    if not include_paper:
        rows = [r for r in rows if not r.is_paper]
    by_task: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_task[r.task].append(r)
    groups: list[Group] = []
    metrics: dict[str, list[str]] = {}
    primary: dict[str, str | None] = {}
    differences: dict[str, list[str]] = {}
    problems = []
    for task in sorted(by_task):
        trows = by_task[task]
        metrics[task] = _metric_columns(trows)
        prim = metric or next((r.primary_metric for r in trows if r.primary_metric and not r.is_paper), None) \
            or (metrics[task][0] if metrics[task] else None)
        primary[task] = prim
        cgroups, diffs = comparable_groups(trows, task, allow_mixed=True)
        if len(cgroups) > 1:
            if not allow_mixed:
                problems.append(_incomparable(task, cgroups, diffs))
            differences[task] = diffs
        for i, g in enumerate(cgroups):
            groups.append(Group(task, sorted(g, key=_sort_key(prim)), label=chr(ord("A") + i) if len(cgroups) > 1 else ""))
        paper = [r for r in trows if r.is_paper]
        if paper:
            # In the paper's own order (file order within a table).
            groups.append(Group(task, sorted(paper, key=lambda r: r.origin), label="paper", ranked=False))
    if problems:
        raise LeaderboardError("refusing to rank results that differ in toolkit version, task data, evaluation "
                               "config or LVLM trace as one leaderboard:\n  " + "\n  ".join(problems) + "\n" + _REMEDY)
    return Leaderboard(groups, metrics, primary, differences)


# ---------------------------------------------------------------------------------------------
# rendering


def fmt_pct(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{100.0 * v:.{digits}f}"


def fmt_metric(r: Row, m: str) -> str:
    """A metric (or `lcr`) in percent, with its interval when the row has one."""
    v, digits = (r.lcr, 1) if m == "lcr" else (r.metrics.get(m), 2)
    s = fmt_pct(v, digits)
    lo, hi = r.ci.get(m) or (None, None)
    if v is not None and lo is not None and hi is not None:
        s += f" [{fmt_pct(lo, digits)}, {fmt_pct(hi, digits)}]"
    return s


def _columns(lb: Leaderboard, task: str, *, compact: bool = False) -> list[tuple[str, Any]]:
    """(header, cell(group, index, row)) for a task's table. `compact` (the terminal) drops
    columns that say the same on every row."""
    def source(g: Group, i: int, r: Row) -> str:
        if r.is_paper:
            return "paper " + r.origin.removeprefix("paper ")
        return f"group {g.label}" if g.label else "reproduced"

    cols: list[tuple[str, Any]] = [
        ("#", lambda g, i, r: str(i + 1) if g.ranked else ""),
        ("source", source),
        ("pairing (SVLM / LVLM)", lambda g, i, r: r.pairing),
        ("strategy", lambda g, i, r: r.strategy_label),
        ("run", lambda g, i, r: "" if r.is_paper else r.origin),
        ("setting", lambda g, i, r: r.setting),
        ("LCR (%)", lambda g, i, r: fmt_metric(r, "lcr")),
    ]
    for m in lb.metrics[task]:
        cols.append((f"{metric_label(m)} (%)", lambda g, i, r, m=m: fmt_metric(r, m)))
    if lb.timings:
        for key, head in TIMING_COLUMNS:
            cols.append((head, lambda g, i, r, key=key: "-" if r.timing.get(key) is None else f"{r.timing[key]:.1f}"))
    cols += [("LHL (frames)", lambda g, i, r: "-" if r.lhl is None else f"{r.lhl:.2f}"),
             ("file", lambda g, i, r: "" if r.is_paper else r.name)]
    if compact:
        rows = [(g, i, r) for g in lb.groups if g.task == task for i, r in enumerate(g.rows)]
        keep = []
        for h, fn in cols:
            vals = {fn(*x) for x in rows}
            if h in ("pairing (SVLM / LVLM)", "file", "LHL (frames)", "setting") and len(vals) <= 1:
                continue
            if h == "run" and all(fn(*x) in ("", x[2].strategy) for x in rows):
                continue
            keep.append((h, fn))
        cols = keep
    return cols


def _numeric(h: str) -> bool:
    return h in ("#", "LHL (frames)") or h.endswith(("(%)", "(ms)"))


def _task_notes(lb: Leaderboard, task: str) -> list[str]:
    notes = [f"Ranked by {lb.primary[task]} within each group of comparable runs; values in %, "
             "[lo, hi] = bootstrap confidence interval over streams when the run computed one."]
    if lb.differences.get(task):
        notes.append("Groups differ in: " + " | ".join(lb.differences[task]))
    if any(g.task == task and not g.ranked for g in lb.groups):
        notes.append("Rows labelled 'paper' are the numbers reported in the paper (results/paper/), not reproduced; "
                     "the paper's LHL is in frames (its Table 1 header says seconds; 1 frame = 1 s at 1 FPS).")
    return notes


def to_markdown(lb: Leaderboard) -> str:
    out = ["# Leaderboard", "", f"Generated by edgevlm-eval {__version__}.", ""]
    for task in sorted({g.task for g in lb.groups}):
        out += [f"## {task}", ""]
        out += [f"- {n}" for n in _task_notes(lb, task)] + [""]
        cols = _columns(lb, task)
        out.append("| " + " | ".join(h for h, _ in cols) + " |")
        out.append("|" + "|".join("---:" if _numeric(h) else "---" for h, _ in cols) + "|")
        for g in (g for g in lb.groups if g.task == task):
            for i, r in enumerate(g.rows):
                out.append("| " + " | ".join(fn(g, i, r).replace("|", "\\|") for _, fn in cols) + " |")
        out.append("")
    if lb.skipped:
        out += ["Files skipped (not results): " + ", ".join(lb.skipped), ""]
    return "\n".join(out)


def print_table(lb: Leaderboard, console=None) -> None:
    from rich.markup import escape
    from rich.table import Table

    con = console or make_console()
    for task in sorted({g.task for g in lb.groups}):
        cols = _columns(lb, task, compact=True)
        pairings = sorted({r.pairing for g in lb.groups if g.task == task for r in g.rows})
        title = f"edgevlm-eval leaderboard: {task}" + (f" ({pairings[0]})" if len(pairings) == 1 else "")
        table = Table(title=escape(title), caption=escape("\n".join(_task_notes(lb, task))), caption_justify="left")
        for h, _ in cols:
            table.add_column(h, overflow="fold", justify="right" if _numeric(h) else "left",
                             no_wrap=_numeric(h) and h != "#" and not h.startswith(("LCR", "LHL")))
        first = True
        for g in (g for g in lb.groups if g.task == task):
            if not first:
                table.add_section()
            first = False
            for i, r in enumerate(g.rows):
                # Cells are plain text: "[lo, hi]" and "edgevlm[CRM]" must not be read as markup.
                table.add_row(*(escape(fn(g, i, r)) for _, fn in cols), style="dim" if r.is_paper else None)
        con.print(table)


# ---------------------------------------------------------------------------------------------
# CLI: edgevlm-eval leaderboard [RESULTS ...]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", default=[DEFAULT_RUNS], metavar="RESULTS",
                   help=f"results JSON files or folders, searched recursively (default: ./{DEFAULT_RUNS}, where the "
                        "main command writes its runs; results/paper holds the paper's reported numbers)")
    p.add_argument("--task", dest="tasks", action="append", metavar="T", help="only this task (repeatable)")
    p.add_argument("--metric", metavar="M", help="rank by this metric (default: the task's primary metric)")
    p.add_argument("--allow-mixed", dest="allow_mixed", action="store_true",
                   help="show results that are not comparable (toolkit version, task data, config or trace "
                        "differ) as separate rankings instead of stopping")
    p.add_argument("--no-paper", dest="no_paper", action="store_true", help="leave out the paper's numbers")
    p.add_argument("--markdown", metavar="F.md", help="write the table as Markdown")
    p.add_argument("--json", dest="json_out", metavar="F.json", help="write the table as JSON")
    p.add_argument("--out", metavar="DIR", help="write DIR/leaderboard.md and DIR/leaderboard.json")
    p.add_argument("--quiet", action="store_true", help="do not print the table")
    p.add_argument("--timings", action="store_true",
                   help="add timing columns: edge (SVLM) latency per frame, mean and p95, SVLM and engine time "
                        "per frame, in ms (wall time of the machine that ran it; never used for ranking)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="for reproduced rows without confidence intervals, compute them from the per-frame "
                        "log next to the results file with N resamples of the streams (default 0: off)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of --bootstrap (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of --bootstrap (default 0)")


def main(args) -> int:
    from rich.markup import escape

    skipped: list[str] = []
    notes: list[str] = []
    con = make_console()
    if args.paths == [DEFAULT_RUNS] and not Path(DEFAULT_RUNS).exists():
        con.print(f"[yellow]no ./{DEFAULT_RUNS} folder here (where the main command writes runs); give results files "
                  "or folders, e.g. `edgevlm-eval leaderboard results/`[/yellow]")
        return 1
    rows = load_rows(args.paths, skipped=skipped, notes=notes)
    for n in notes:
        con.print(f"[yellow]note: {escape(n)}[/yellow]")
    for s in skipped:
        if "(not a results file)" not in s:
            con.print(f"[yellow]skipped {escape(s)}[/yellow]")
    if args.bootstrap < 0 or not 0.0 < args.level < 1.0:
        raise EdgeVLMError(f"--bootstrap must be >= 0 and --level in (0, 1), e.g. 0.95 "
                           f"(got {args.bootstrap}, {args.level})")
    if args.bootstrap:
        bnotes: list[str] = []
        add_bootstrap(rows, n=args.bootstrap, level=args.level, seed=args.seed, notes=bnotes)
        for note in bnotes:
            con.print(f"[yellow]bootstrap skipped: {escape(note)}[/yellow]")
    lb = build(rows, allow_mixed=args.allow_mixed, include_paper=not args.no_paper, tasks=args.tasks,
               metric=args.metric)
    lb.skipped = skipped
    lb.timings = args.timings
    if not lb.groups:
        con.print(f"[yellow]no results found in {', '.join(map(str, args.paths))}[/yellow]")
        return 1
    if not args.quiet:
        print_table(lb, con)
    md_path, json_path = args.markdown, args.json_out
    if args.out:
        md_path = md_path or str(Path(args.out) / "leaderboard.md")
        json_path = json_path or str(Path(args.out) / "leaderboard.json")
    if md_path:
        atomic_write_text(md_path, to_markdown(lb))
        con.print(f"wrote {md_path}")
    if json_path:
        atomic_write_json(json_path, lb.to_json())
        con.print(f"wrote {json_path}")
    return 0
