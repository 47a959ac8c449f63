"""LVLM traces (method.md §2): the LVLM's reply and latency for every frame, recorded once.

Format (JSONL): a header line
    {"format": "edgevlm-eval.trace/1", "task": ..., "task_version": ..., "model": ..., ...provenance}
then one line per frame
    {"task", "stream", "frame", "model", "answer", "labels", "rois": [[label, x1, y1, x2, y2], ...],
     "ok", "error", "latency": {"upload_s", "queue_s", "inference_s", "download_s", "total_s"},
     "image_bytes"}
`latency.total_s` is the capture-to-reply time L_t; the parts are null when unknown. Lines may
come in any order (recording is concurrent); a (stream, frame) may appear only once.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from edgevlm_eval.core.errors import DatasetError
from edgevlm_eval.core.grounding import map_to_space
from edgevlm_eval.core.io import atomic_write_text
from edgevlm_eval.core.jsonl import JsonlAppender, read_jsonl
from edgevlm_eval.core.types import Box, Stream

FORMAT = "edgevlm-eval.trace/1"
LATENCY_PARTS = ("upload_s", "queue_s", "inference_s", "download_s", "total_s")


@dataclass(slots=True)
class TraceRecord:
    """One frame's LVLM reply. `labels` are re-parsed from `answer` with the task's current
    label space when a trace is loaded for replay (one home for the answer -> label mapping)."""

    stream: str
    frame: int
    answer: str
    labels: tuple[str, ...] = ()
    rois: tuple[Box, ...] = ()
    ok: bool = True
    error: str | None = None
    total_s: float = 0.0
    upload_s: float | None = None
    queue_s: float | None = None
    inference_s: float | None = None
    download_s: float | None = None
    image_bytes: int | None = None
    unmapped: tuple[str, ...] = ()
    measured_total_s: float | None = None  # the recorded total, when a latency source replaced total_s
    error_kind: str | None = None  # fatal | transient | input (core/types.py ERROR_KINDS) when not ok
    prompt_tokens: int | None = None  # usage the API reported for the request
    completion_tokens: int | None = None

    @property
    def retry(self) -> bool:
        """A failed reply worth asking again (the endpoint failed; the input was fine)."""
        return not self.ok and self.error_kind != "input"

    @property
    def server_s(self) -> float:
        """Time spent at the server (queue + inference); the total when the parts are unknown."""
        if self.queue_s is None and self.inference_s is None:
            rest = self.total_s - (self.upload_s or 0.0) - (self.download_s or 0.0)
            return max(0.0, rest)
        return (self.queue_s or 0.0) + (self.inference_s or 0.0)

    def to_json(self, task: str, model: str) -> dict:
        return {
            "task": task, "stream": self.stream, "frame": self.frame, "model": model,
            "answer": self.answer, "labels": list(self.labels), "rois": [b.to_list() for b in self.rois],
            "ok": self.ok, "error": self.error,
            "latency": {k: getattr(self, k) for k in LATENCY_PARTS} | (
                {"measured_total_s": self.measured_total_s} if self.measured_total_s is not None else {}),
            "image_bytes": self.image_bytes,
            **({"error_kind": self.error_kind} if self.error_kind else {}),
            **({"usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}}
               if self.prompt_tokens is not None or self.completion_tokens is not None else {}),
        }


def check_latency(value, where: str, name: str = "latency") -> float:
    """A latency in seconds: a finite number >= 0, else a DatasetError naming `where`."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: {name} must be a number of seconds, got {value!r}") from None
    if math.isnan(v) or math.isinf(v):
        raise DatasetError(f"{where}: {name} is {v}; expected a finite number of seconds >= 0")
    if v < 0:
        raise DatasetError(f"{where}: {name} is negative ({v}); expected seconds >= 0")
    return v


@dataclass
class Trace:
    header: dict
    records: dict[tuple[str, int], TraceRecord] = field(default_factory=dict)
    path: str = ""

    @property
    def model(self) -> str:
        return str(self.header.get("model", ""))

    def get(self, stream: str, frame: int) -> TraceRecord:
        return self.records[(stream, frame)]

    def check_covers(self, streams: Sequence[Stream], task_name: str | None = None) -> None:
        """Every frame of `streams` must be in the trace (extra frames are fine: --limit)."""
        if task_name and self.header.get("task") not in (None, task_name):
            raise DatasetError(f"trace is for task '{self.header.get('task')}', not '{task_name}'", path=self.path)
        missing = [(s.id, f.index) for s in streams for f in s.frames if (s.id, f.index) not in self.records]
        if missing:
            shown = ", ".join(f"(stream {s!r}, frame {i})" for s, i in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DatasetError(f"trace does not cover the task's frames: missing {shown}{more} "
                               f"({len(missing)} missing in all); record them with `edgevlm-eval record`",
                               path=self.path)

    def reparse(self, space) -> None:
        """Labels from the answers with the task's label space (and the unmapped words); ROI labels
        (the model's own words) mapped into the space too, largest ROI per label, unmappable dropped.
        Done at replay, so a trace recorded elsewhere (or with another synonym table) reads the same."""

        for r in self.records.values():
            if r.ok:
                p = space.parse(r.answer)
                r.labels, r.unmapped = p.labels, p.unmapped
                r.rois = map_to_space(r.rois, space)
            else:
                r.labels, r.unmapped = (), ()

    def failed(self, keys=None) -> list[TraceRecord]:
        """Records (of `keys`, default all) whose reply is unusable."""
        recs = self.records.values() if keys is None else (self.records[k] for k in keys if k in self.records)
        return [r for r in recs if not r.ok]

    def sha256(self) -> str:
        return file_sha256(self.path) if self.path else ""


def file_sha256(path: str | os.PathLike) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _record_from_json(d: dict, where: str) -> TraceRecord:
    try:
        stream, frame = str(d["stream"]), int(d["frame"])
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{where}: a frame line needs 'stream' and an integer 'frame' ({e})") from None
    lat = d.get("latency") or {}
    if not isinstance(lat, dict) or lat.get("total_s") is None:
        raise DatasetError(f"{where} (stream {stream!r}, frame {frame}): missing latency.total_s")
    parts = {}
    for k in LATENCY_PARTS:
        v = lat.get(k)
        parts[k] = None if v is None else check_latency(v, f"{where} (stream {stream!r}, frame {frame})",
                                                         f"latency.{k}")
    try:
        rois = tuple(Box.from_list(b) for b in d.get("rois") or ())
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{where} (stream {stream!r}, frame {frame}): bad rois, expected "
                           f"[[label, x1, y1, x2, y2], ...] ({e})") from None
    mt = lat.get("measured_total_s")
    usage = d.get("usage") or {}
    return TraceRecord(stream=stream, frame=frame, answer=str(d.get("answer") or ""),
                       labels=tuple(d.get("labels") or ()), rois=rois, ok=bool(d.get("ok", True)),
                       error=d.get("error"), image_bytes=d.get("image_bytes"),
                       measured_total_s=None if mt is None else float(mt), error_kind=d.get("error_kind"),
                       prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"),
                       **parts)


def read_trace(path: str | os.PathLike) -> Trace:
    """Read a trace; a duplicated (stream, frame) or a bad line is an error naming it. A torn last
    line (a recording killed mid-write) is ignored: that frame is recorded again on resume."""
    path = Path(path)
    header, raw = read_jsonl(path, FORMAT, what="LVLM trace")
    if not header:
        raise DatasetError("empty LVLM trace (no header line: a recording was stopped before its first line)",
                           path=str(path))
    trace = Trace(header=header, path=str(path))
    seen_at: dict[tuple[str, int], int] = {}
    for d in raw:
        i = d.pop("_line")
        r = _record_from_json(d, f"{path}: line {i}")
        key = (r.stream, r.frame)
        if key in seen_at:
            raise DatasetError(f"line {i}: (stream {r.stream!r}, frame {r.frame}) is already in the trace "
                               f"at line {seen_at[key]}; a trace holds each frame once", path=str(path))
        seen_at[key] = i
        trace.records[key] = r
    return trace


class TraceWriter:
    """Append frame lines to a trace, flushed line by line, so a killed recording resumes.

    Resuming drops the frames whose reply failed at the endpoint (`TraceRecord.retry`), so they
    are asked again, unless `keep_failed`; `done` holds the frames not to ask again."""

    def __init__(self, path: str | os.PathLike, header: dict, *, resume: bool = True, keep_failed: bool = False):
        self.path = Path(path)
        self.done: set[tuple[str, int]] = set()
        self.dropped = 0
        header = {"format": FORMAT, **header}

        def check(old: dict):
            for k in ("task", "model"):
                if old.get(k) != header.get(k):
                    raise DatasetError(f"cannot resume: the existing trace has {k} {old.get(k)!r}, "
                                       f"this recording {header.get(k)!r}", path=str(self.path))

        if resume and self.path.exists() and self.path.stat().st_size > 0:
            hdr, raw = read_jsonl(self.path, FORMAT, what="LVLM trace")
            if hdr:
                check(hdr)
                recs = [(d, _record_from_json({k: v for k, v in d.items() if k != "_line"}, str(self.path)))
                        for d in raw]
                keep = [(d, r) for d, r in recs if keep_failed or not r.retry]
                self.dropped = len(recs) - len(keep)
                if self.dropped:  # rewrite without the failed frames, so that they are asked again
                    text = json.dumps(hdr, sort_keys=True) + "\n" + "".join(
                        json.dumps({k: v for k, v in d.items() if k != "_line"}, sort_keys=True) + "\n"
                        for d, _ in keep)
                    atomic_write_text(self.path, text)
                self.done = {(r.stream, r.frame) for _, r in keep}
        self._log = JsonlAppender(self.path, header, resume=resume, check=check, what="LVLM trace")
        self.task = header.get("task", "")
        self.model = header.get("model", "")

    def write(self, rec: TraceRecord):
        self._log.write_sorted(rec.to_json(self.task, self.model))
        self._log.flush()
        self.done.add((rec.stream, rec.frame))

    def close(self):
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_trace(path: str | os.PathLike, header: dict, records: Iterable[TraceRecord]) -> None:
    """A whole trace at once (tests, conversions)."""
    with TraceWriter(path, header, resume=False) as w:
        for r in records:
            w.write(r)
