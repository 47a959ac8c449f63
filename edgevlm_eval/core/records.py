"""The one schema of what a run writes and reads back (docs/results.md):

- `FrameLine`: one line of the per-frame log (one frame of one run), with the SVLM's reply
  (`SvlmOut`) and the LVLM trace's reply (`LvlmOut`); written by the simulator, read by resume,
  scoring (collab/accounting.py), bootstrap, compare and the leaderboard.
- the per-frame log files: JSONL with a header (core/jsonl.py), one file per process.
- `RunSummary` / `ResultsDoc`: the results JSON, read by the leaderboard, compare and plots
  through `read_results`, which checks what it reads and names the file and key it rejects.

Scoring is a pure function of frame lines, so results recompute from the log without a model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import DatasetError
from .jsonl import JsonlAppender, read_jsonl
from .metrics import METRICS

FRAMELOG_FORMAT = "edgevlm-eval.framelog/1"
RESULTS_FORMAT = "edgevlm-eval.results/1"
RESULTS_FORMAT_PREFIX = "edgevlm-eval.results/"
LOG_GLOB = "frames*.jsonl"


# ---------------------------------------------------------------------------------------------
# the per-frame line


@dataclass(slots=True)
class SvlmOut:
    """The SVLM's reply to one frame as logged."""

    ok: bool
    error: str | None
    text: str
    labels: list[str]
    unmapped: list[str]
    e_s: float  # edge latency of the answer (seconds)
    conf: float | None  # share of answer tokens with top-1 probability > 0.9 (None: no probabilities)
    visual_tokens: list | None = None  # [before, after focus] when the adapter reports them
    error_kind: str | None = None
    # top-1 probabilities of the answer's tokens, rounded to 4 decimals (None: no probabilities);
    # what LAECIPS' classifier reading (laecips-clf) reads, so resume and the probe see the same values
    answer_probs: list[float] | None = None

    def to_json(self) -> dict:
        d = {"ok": self.ok, "error": self.error, "text": self.text, "labels": self.labels,
             "unmapped": self.unmapped, "e_s": self.e_s, "conf": self.conf}
        if self.visual_tokens is not None:
            d["visual_tokens"] = self.visual_tokens
        if self.error_kind is not None:
            d["error_kind"] = self.error_kind
        if self.answer_probs is not None:
            d["answer_probs"] = self.answer_probs
        return d

    @classmethod
    def from_json(cls, d: dict) -> "SvlmOut":
        ap = d.get("answer_probs")
        return cls(bool(d["ok"]), d.get("error"), str(d.get("text") or ""), list(d.get("labels") or ()),
                   list(d.get("unmapped") or ()), float(d.get("e_s") or 0.0), d.get("conf"), d.get("visual_tokens"),
                   d.get("error_kind"), [float(p) for p in ap] if isinstance(ap, list) else None)


@dataclass(slots=True)
class LvlmOut:
    """The trace's reply for an uploaded frame as logged."""

    ok: bool
    labels: list[str]
    unmapped: list[str]
    error: str | None = None
    error_kind: str | None = None

    def to_json(self) -> dict:
        d = {"ok": self.ok, "labels": self.labels, "unmapped": self.unmapped, "error": self.error}
        if self.error_kind is not None:
            d["error_kind"] = self.error_kind
        return d

    @classmethod
    def from_json(cls, d: dict) -> "LvlmOut":
        return cls(bool(d["ok"]), list(d.get("labels") or ()), list(d.get("unmapped") or ()), d.get("error"),
                   d.get("error_kind"))


@dataclass(slots=True)
class FrameLine:
    """One frame of one run (docs/results.md, "The per-frame log")."""

    run: str
    stream: str
    frame: int
    t_s: float
    scored: bool
    truth: list[str]
    upload: bool
    why: str
    in_flight: int
    j_star: int | None
    latency_s: float | None
    sent_s: float | None
    arrival_s: float | None
    in_time: bool | None
    svlm: SvlmOut | None
    lvlm: LvlmOut | None
    output: str  # "lvlm" | "svlm" | "invalid"
    pred: list[str] | None
    invalid: str | None
    detail: str | None
    history: list
    j_L: int | None
    lag: int | None
    vfm: dict | None
    engine_s: float | None = None
    svlm_s: float | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.run, self.stream, self.frame)

    @property
    def lvlm_failed(self) -> bool:
        """Uploaded, and the trace holds no usable reply for the frame."""
        return self.upload and self.lvlm is not None and not self.lvlm.ok

    def to_json(self) -> dict:
        d = {f: getattr(self, f) for f in _FRAME_FIELDS}
        d["svlm"] = self.svlm.to_json() if self.svlm is not None else None
        d["lvlm"] = self.lvlm.to_json() if self.lvlm is not None else None
        return d

    @classmethod
    def from_json(cls, d: dict, where: str = "") -> "FrameLine":
        try:
            kw = {f: d.get(f) for f in _FRAME_FIELDS}
            kw["run"], kw["stream"], kw["frame"] = str(d["run"]), str(d["stream"]), int(d["frame"])
            kw["upload"], kw["output"], kw["why"] = bool(d["upload"]), str(d["output"]), str(d.get("why") or "")
            kw["scored"] = bool(d.get("scored", True))
            kw["truth"] = list(d.get("truth") or ())
            kw["history"] = list(d.get("history") or ())
            kw["in_flight"] = int(d.get("in_flight") or 0)
            kw["svlm"] = SvlmOut.from_json(d["svlm"]) if d.get("svlm") else None
            kw["lvlm"] = LvlmOut.from_json(d["lvlm"]) if d.get("lvlm") else None
            if kw["pred"] is not None:
                kw["pred"] = list(kw["pred"])
            return cls(**kw)
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{where}: not a per-frame log line ({type(e).__name__}: {e}); "
                               "expected the keys of docs/results.md") from None


_FRAME_FIELDS = tuple(f.name for f in dataclasses.fields(FrameLine))


def log_name(rank: int = 0, world: int = 1) -> str:
    return "frames.jsonl" if world <= 1 else f"frames-{rank:03d}-of-{world:03d}.jsonl"


def read_framelog(path: str | os.PathLike) -> tuple[dict, list[FrameLine]]:
    """(header, lines) of one per-frame log; a torn last line is dropped."""
    header, raw = read_jsonl(path, FRAMELOG_FORMAT, what="per-frame log")
    return header, [FrameLine.from_json(d, f"{path}: line {d.pop('_line')}") for d in raw]


def read_logs(folder: str | os.PathLike) -> tuple[list[dict], list[FrameLine]]:
    """(headers, lines) of every per-frame log of a run folder (one per process when sharded)."""
    headers, lines = [], []
    for p in sorted(Path(folder).glob(LOG_GLOB)):
        h, ls = read_framelog(p)
        if h:
            headers.append(h)
        lines.extend(ls)
    return headers, lines


def check_unique(lines: Iterable[FrameLine], where: str = "") -> None:
    seen: set = set()
    for ln in lines:
        k = ln.key
        if k in seen:
            raise DatasetError(f"per-frame log{(' ' + where) if where else ''}: run {k[0]!r} stream {k[1]!r} "
                               f"frame {k[2]} is logged twice")
        seen.add(k)


class FrameLogWriter:
    """Appends frame lines; `flush()` after each simulator step makes them durable."""

    def __init__(self, path: str | os.PathLike, header: dict, *, append: bool):
        def check(old: dict):
            if old.get("config_hash") not in (None, header.get("config_hash")):
                raise DatasetError("the per-frame log was written by another configuration (hash "
                                   f"{old.get('config_hash')}, this run {header.get('config_hash')})", path=str(path))

        self._log = JsonlAppender(path, {"format": FRAMELOG_FORMAT, **header}, resume=append, check=check,
                                  what="per-frame log")
        self.path = self._log.path

    def write(self, line: FrameLine) -> None:
        self._log.write(line.to_json())

    def flush(self) -> None:
        self._log.flush()

    def close(self) -> None:
        self._log.close()


# ---------------------------------------------------------------------------------------------
# the results JSON


def _fraction(v: Any, where: str, path: str) -> float | None:
    """A metric or ratio value: None or a finite number in [0, 1]."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or not 0.0 <= float(v) <= 1.0:
        raise DatasetError(f"{where}: expected a fraction in [0, 1] or null, got {v!r}", path=path)
    return float(v)


@dataclass
class RunSummary:
    """One run (a strategy with its knobs) of a results file."""

    run_id: str
    spec: dict  # {"strategy", "run", **knobs[, "latency"]}
    metrics: dict  # name -> fraction or None, plus details (macro_f1_labels, n, per_class_f1, ...)
    frames: int | None = None
    scored_frames: int | None = None
    lcr: float | None = None
    lhl: float | None = None
    display: dict = field(default_factory=dict)  # label, proxy, source, colour, reference, variant, setting
    search: dict | None = None
    ci: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)  # everything else, as written

    @property
    def strategy(self) -> str:
        return str(self.spec.get("strategy") or self.run_id)

    @property
    def label(self) -> str:
        return str(self.display.get("label") or self.raw.get("label") or self.strategy)

    def metric_values(self, names: Sequence[str]) -> dict[str, float | None]:
        return {m: self.metrics.get(m) for m in names}

    @classmethod
    def from_json(cls, run_id: str, d: Any, where: str, path: str) -> "RunSummary":
        if not isinstance(d, dict):
            raise DatasetError(f"{where}: expected an object, got {type(d).__name__}", path=path)
        metrics = d.get("metrics")
        if not isinstance(metrics, dict):
            raise DatasetError(f"{where}.metrics: expected an object {{name: fraction}}", path=path)

        for m, v in metrics.items():
            if m in METRICS:
                _fraction(v, f"{where}.metrics.{m}", path)
        spec = d.get("spec") if isinstance(d.get("spec"), dict) else {"strategy": run_id, "run": run_id}
        return cls(run_id=run_id, spec=dict(spec), metrics=dict(metrics), frames=d.get("frames"),
                   scored_frames=d.get("scored_frames"), lcr=_fraction(d.get("lcr"), f"{where}.lcr", path),
                   lhl=d.get("lhl"), display=dict(d.get("display") or {}), search=d.get("search"),
                   ci=dict(d.get("ci") or {}), raw=d)


@dataclass
class TaskResults:
    streams: int | None
    frames: int | None
    runs: dict[str, RunSummary]


@dataclass
class ResultsDoc:
    format: str
    provenance: dict
    tasks: dict[str, TaskResults]
    protocol: dict | None = None
    path: str = ""
    notes: list[str] = field(default_factory=list)  # what the reader noticed (a newer format, ...)

    def task_info(self, task: str) -> dict:
        return ((self.provenance.get("tasks") or {}).get(task)) or {}


def parse_results(doc: Any, path: str) -> ResultsDoc:
    """A results JSON object, checked (docs/results.md)."""
    if not isinstance(doc, dict):
        raise DatasetError("not an edgevlm-eval results file: expected a JSON object", path=path)
    fmt = str(doc.get("format", ""))
    if not fmt.startswith(RESULTS_FORMAT_PREFIX):
        raise DatasetError(f"not an edgevlm-eval results file: 'format' is {fmt or None!r}, expected "
                           f"{RESULTS_FORMAT!r}", path=path)
    notes = []
    if fmt != RESULTS_FORMAT:
        notes.append(f"{path}: written in format {fmt}, this toolkit reads {RESULTS_FORMAT}; "
                     "keys it does not know are ignored")
    prov = doc.get("provenance")
    blocks = doc.get("tasks")
    if not isinstance(prov, dict) or not isinstance(blocks, dict):
        raise DatasetError("expected 'provenance' and 'tasks' objects (docs/results.md)", path=path)
    if not isinstance(prov.get("config", {}), dict):
        raise DatasetError("'provenance.config' must be an object", path=path)
    tasks = {}
    for name, block in blocks.items():
        if not isinstance(block, dict) or not isinstance(block.get("runs"), dict):
            raise DatasetError(f"tasks.{name}: expected an object with 'runs' {{run id: {{...}}}}", path=path)
        runs = {rid: RunSummary.from_json(rid, s, f"tasks.{name}.runs.{rid}", path) for rid, s in block["runs"].items()}
        tasks[name] = TaskResults(block.get("streams"), block.get("frames"), runs)
    return ResultsDoc(fmt, prov, tasks, doc.get("protocol"), path, notes)


def load_json(path: str | os.PathLike) -> Any:
    """A JSON file, or a DatasetError naming the file and what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as e:
        raise DatasetError(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})", path=str(path)) from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"not UTF-8 text ({e.reason})", path=str(path)) from None
    except OSError as e:
        raise DatasetError(f"cannot read the file ({e.strerror})", path=str(path)) from None


def read_results(path: str | os.PathLike) -> ResultsDoc:
    """The one reader of results.json files."""
    return parse_results(load_json(path), str(path))
