"""`edgevlm-eval record`, and the main command's own recording: run the LVLM once on every frame
of a task and write an LVLM trace (docs/method.md §2; collab/trace.py for the format).

- Before anything is recorded, one real frame is sent alone (the preflight): a dead key, an
  unknown model, a bad request or an unreachable endpoint stops here, with the cause named, and
  nothing is recorded or scored.
- Batched when the adapter batches (`--record-batch-size`), else concurrent (`--concurrency`).
  Each frame's line is appended and flushed as soon as its reply is in, so a killed recording
  resumes where it stopped.
- A reply that failed for good at the endpoint (retries exhausted on 429/5xx/timeouts) is written
  as a failed frame and asked again by the next run (`--keep-failed` keeps it); a fatal failure
  mid-run (the key revoked, the model gone) stops the recording, keeping what was recorded.
- Latency `measured`: per request, the wall time of that request (HTTP adapters time each request
  themselves); for a batched local adapter, the wall time of its batch (the trace header says
  which; record with --record-batch-size 1 for single requests). Any other source (fixed:D,
  lognormal:..., file:..., network:...) is applied to the finished trace, the measured total kept.
- Token usage (prompt and completion tokens) is kept per frame and summed, with the cost when the
  model's entry states prices.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from edgevlm_eval import __version__
from edgevlm_eval.collab.latency import check_latency_arrays, parse_latency
from edgevlm_eval.collab.trace import (
    FORMAT,
    Trace,
    TraceRecord,
    TraceWriter,
    read_trace,
)
from edgevlm_eval.core.errors import ConfigError, EdgeVLMError, ModelUnavailable
from edgevlm_eval.core.io import atomic_write_text
from edgevlm_eval.core.types import Reply, Request, Stream
from edgevlm_eval.model_adapters import registry  # attribute access: one place to stub it in tests
from edgevlm_eval.model_adapters.check import preflight

from .args import add_models_dir_arg, add_selection_args, add_task_args
from .data import load_from_args
from .options import positive_int
from .progress import Progress
from .results import portable_paths

log = logging.getLogger(__name__)


class RecordingStopped(EdgeVLMError):
    """The LVLM refused mid-recording (fatal error); what was recorded is kept."""


@dataclass
class RecordStats:
    """What one recording did."""

    asked: int = 0  # requests sent (the preflight included)
    failed: int = 0  # of them, replies still failed after retries
    dropped: int = 0  # failed frames of an earlier recording, dropped to be asked again
    prompt_tokens: int = 0
    completion_tokens: int = 0
    measurement: str = ""
    failed_by_kind: dict = field(default_factory=dict)


def _request(f) -> Request:
    return Request(id=f"rec|{f.stream_id}|{f.index}", images=f.images, query=f.query, grounding=True)


def _record_of(frame, reply: Reply, wall_s: float) -> TraceRecord:
    """The trace line of one reply. Latency: the request's own time when the adapter reports one
    per request (no `batch_size` in its timings), else the wall time of the call it came in."""
    tm = reply.timings or {}
    per_request = tm.get("total") is not None and float(tm.get("batch_size") or 1.0) <= 1.0
    wall = float(tm["total"]) if per_request else wall_s
    if not reply.ok and reply.error_kind == "input":
        wall = 0.0  # never sent (its own image was unusable): no cloud time to charge it
    parts = {k: tm.get(k) for k in ("upload", "queue", "download")}
    inference = tm.get("inference", tm.get("total") if per_request else None)
    known = [v for v in (parts["upload"], parts["queue"], inference, parts["download"]) if v is not None]
    total = max(wall, sum(known)) if known else wall
    if inference is None:
        inference = max(0.0, wall - sum(v for v in parts.values() if v is not None))
    try:
        size = sum(Path(p).stat().st_size for p in frame.images)
    except OSError:
        size = None
    return TraceRecord(stream=frame.stream_id, frame=frame.index, answer=reply.text if reply.ok else "",
                       labels=(), rois=tuple(reply.rois or ()), ok=reply.ok, error=reply.error, total_s=float(total),
                       upload_s=parts["upload"], queue_s=parts["queue"], inference_s=float(inference),
                       download_s=parts["download"], image_bytes=size,
                       error_kind=(reply.error_kind or "transient") if not reply.ok else None,
                       prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)


def _cause(reply: Reply, model: str) -> str:
    return (f"the LVLM {model!r} refused the request ({reply.error}). Check the model's key (its entry's "
            "api_key_env variable), base_url and model name (`edgevlm-eval models --check`), then run again")


def record(task, streams: Sequence[Stream], adapter, out: str | Path, *, model: str, latency: str = "measured",
           batch_size: int = 8, concurrency: int = 4, overwrite: bool = False, keep_failed: bool = False,
           progress=None, stats: RecordStats | None = None) -> Path:
    """Record (or finish recording) the trace of `streams` with `adapter` (module docstring)."""
    stats = stats if stats is not None else RecordStats()
    caps = getattr(adapter, "capabilities", None)
    batched = caps is None or caps.batched
    concurrent_http = batched and getattr(adapter, "base_url", None) is not None
    stats.measurement = ("per request: the wall time of each request" if (not batched or concurrent_http) else
                         f"per batch: each request of a batch of up to {batch_size} gets the batch's wall time "
                         "(record with --record-batch-size 1 for single requests)")
    header = {"task": task.name, "task_version": task.version, "model": model, "fps": task.fps,
              "latency": latency, "latency_measurement": stats.measurement, "toolkit_version": __version__,
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "model_info": portable_paths(_describe(adapter)), "streams": len(streams),
              "frames": sum(len(s) for s in streams)}
    out = Path(out)

    def note(rec: TraceRecord):
        stats.asked += 1
        stats.prompt_tokens += rec.prompt_tokens or 0
        stats.completion_tokens += rec.completion_tokens or 0
        if not rec.ok:
            stats.failed += 1
            stats.failed_by_kind[rec.error_kind] = stats.failed_by_kind.get(rec.error_kind, 0) + 1

    with TraceWriter(out, header, resume=not overwrite, keep_failed=keep_failed) as w:
        stats.dropped = w.dropped
        todo = [f for s in streams for f in s.frames if (f.stream_id, f.index) not in w.done]
        if progress:
            progress(sum(len(s) for s in streams) - len(todo))
        # the preflight: real frames one at a time until one reaches the model (a frame whose own
        # image is unusable is recorded as such and the next one is tried)
        while todo:
            f = todo.pop(0)
            t0 = time.perf_counter()
            try:
                reply = preflight(adapter, _request(f), model)
            except ModelUnavailable as e:
                if e.cause != "input":
                    raise
                reply = Reply.invalid(str(e).splitlines()[0], "input")
            rec = _record_of(f, reply, time.perf_counter() - t0)
            w.write(rec)
            note(rec)
            if progress:
                progress(1)
            if reply.ok:
                break

        def take(f, reply: Reply, wall: float):
            if not reply.ok and reply.error_kind == "fatal":
                raise RecordingStopped(f"recording stopped at (stream {f.stream_id!r}, frame {f.index}): "
                                       + _cause(reply, model) + f"; the {len(w.done)} frames recorded so far are "
                                       f"kept in {out} and the next run resumes from there")
            rec = _record_of(f, reply, wall)
            w.write(rec)
            note(rec)
            if progress:
                progress(1)

        if batched and not concurrent_http:
            for i in range(0, len(todo), max(1, batch_size)):
                chunk = todo[i:i + batch_size]
                t0 = time.perf_counter()
                replies = adapter.generate([_request(f) for f in chunk])
                wall = time.perf_counter() - t0
                if len(replies) != len(chunk):
                    raise ConfigError(f"LVLM adapter returned {len(replies)} replies for {len(chunk)} requests")
                for f, r in zip(chunk, replies):
                    take(f, r, wall)
        else:
            def one(f):
                t0 = time.perf_counter()
                r = adapter.generate([_request(f)])[0]
                return f, r, time.perf_counter() - t0

            workers = max(1, concurrency if not concurrent_http else max(concurrency, getattr(adapter, "concurrency", 1)))
            pool = ThreadPoolExecutor(max_workers=workers)
            try:
                for f, r, wall in pool.map(one, todo):
                    take(f, r, wall)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    if latency != "measured":
        apply_latency(out, streams, latency)
    return out


def apply_latency(path: Path, streams: Sequence[Stream], spec: str) -> None:
    """Replace the recorded totals by a latency source's (keeping the measured total). Frames of
    the trace outside `streams` (recorded by an earlier, wider selection) are kept as they are."""

    trace = read_trace(path)
    src = parse_latency(spec)
    arrays = src.latencies(streams, trace)
    check_latency_arrays(arrays, streams, src.spec)
    lines = [json.dumps({"format": FORMAT, **{**trace.header, "latency": src.spec, "latency_source": src.describe()}},
                        sort_keys=True)]
    applied = set()
    for s in streams:
        for t, f in enumerate(s.frames):
            rec = trace.records[(s.id, f.index)]
            d = rec.to_json(trace.header.get("task", ""), trace.model)
            d["latency"]["measured_total_s"] = rec.measured_total_s if rec.measured_total_s is not None else rec.total_s
            d["latency"]["total_s"] = float(arrays[s.id][t])
            lines.append(json.dumps(d, sort_keys=True))
            applied.add((s.id, f.index))
    for key, rec in trace.records.items():
        if key not in applied:
            lines.append(json.dumps(rec.to_json(trace.header.get("task", ""), trace.model), sort_keys=True))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _describe(adapter) -> dict:
    try:
        return adapter.describe()
    except Exception:  # noqa: BLE001 - provenance must not stop a recording
        return {"name": getattr(adapter, "name", type(adapter).__name__)}


def trace_path_for(folder: str | Path, task, streams: Sequence[Stream], lvlm: str, latency: str) -> Path:
    """Where a run keeps the trace it records itself: one file per task, LVLM, latency source and
    set of frames, so a second run (any strategy, any SVLM) reuses it and a different --limit does not."""
    key = json.dumps([task.name, task.version, lvlm, latency, [[s.id, len(s)] for s in streams]], sort_keys=True)
    slug = "".join(c if c.isalnum() or c in "-._" else "_" for c in lvlm)[:60]
    return Path(folder) / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsonl"


def record_with_progress(task, streams: Sequence[Stream], lvlm: str, out: str | Path, *, latency: str = "measured",
                         batch_size: int = 8, concurrency: int = 4, overwrite: bool = False,
                         keep_failed: bool = False, reporter=None) -> RecordStats:
    """Load the LVLM adapter and record `streams` into `out`, reporting progress."""

    stats = RecordStats()
    adapter = registry.load_adapter(lvlm)
    n = sum(len(s) for s in streams)
    try:
        with Progress(n, f"recording {task.name} with {lvlm}", reporter=reporter) as prog:
            record(task, streams, adapter, out, model=lvlm, latency=latency, batch_size=batch_size,
                   concurrency=concurrency, overwrite=overwrite, keep_failed=keep_failed, stats=stats,
                   progress=prog.advance)
    finally:
        adapter.close()
    return stats


# ---------------------------------------------------------------------------------------------
# the main command's trace


@dataclass
class TraceInfo:
    path: Path
    trace: Trace
    failed: int  # failed frames among the frames replayed
    frames: int
    failed_by_kind: dict
    stats: RecordStats | None = None  # when this run recorded


def check_failed(trace: Trace, streams: Sequence[Stream], max_failed: float, allow: bool) -> tuple[int, int, dict]:
    """(failed, frames, by kind) of the replayed frames; refuses (EdgeVLMError) a trace with more
    than `max_failed` of its frames failed unless `allow`."""
    keys = [(s.id, f.index) for s in streams for f in s.frames]
    bad = trace.failed(keys)
    kinds: dict = {}
    for r in bad:
        kinds[r.error_kind or "unknown"] = kinds.get(r.error_kind or "unknown", 0) + 1
    n = len(keys)
    if n and len(bad) / n > max_failed and not allow:
        first = bad[0]
        raise EdgeVLMError(
            f"the LVLM trace {trace.path} has {len(bad)} failed frames of {n} ({100 * len(bad) / n:.1f} %), more than "
            f"--max-failed {100 * max_failed:g} %; first: (stream {first.stream!r}, frame {first.frame}): {first.error}. "
            "Scores on it would mostly measure the failures: run again to re-ask them (the default), or pass "
            "--allow-failed-trace to score it anyway (the run then exits non-zero)")
    return len(bad), n, kinds


def ensure_trace(cfg, task, streams: Sequence[Stream], *, rank: int = 0, world: int = 1, barrier=None,
                 reporter=None) -> TraceInfo:
    """The trace the run replays: --trace as given, else the one this output folder keeps for the
    LVLM, recorded (or completed, failed frames re-asked) when needed."""
    streams = sorted(streams, key=lambda s: s.id)
    stats = None
    if cfg.trace:
        path = Path(cfg.trace)
    else:
        if not cfg.lvlm:
            raise ConfigError("these strategies replay the LVLM's replies: give --lvlm L (its trace is recorded once "
                              "into the output folder) or --trace F.jsonl from `edgevlm-eval record`", key="--lvlm")
        path = trace_path_for(Path(cfg.output_dir) / task.name / "traces", task, streams, cfg.lvlm, "measured")
        if rank == 0:
            todo = True
            if path.exists():
                try:
                    tr = read_trace(path)
                    tr.check_covers(streams, None)
                    todo = not cfg.keep_failed and any(r.retry for r in tr.failed([(s.id, f.index) for s in streams
                                                                                    for f in s.frames]))
                except EdgeVLMError:  # partial or damaged: record() resumes it
                    todo = True
            if todo:
                log.warning("recording the LVLM trace of %s on %d frames -> %s (once: later runs replay it)",
                            cfg.lvlm, sum(len(s) for s in streams), path)
                stats = record_with_progress(task, streams, cfg.lvlm, path, batch_size=cfg.record_batch_size,
                                             concurrency=cfg.concurrency, keep_failed=cfg.keep_failed,
                                             reporter=reporter)
                if stats.dropped:
                    log.warning("re-asked %d frames whose LVLM reply had failed: %d still failed", stats.dropped,
                                stats.failed)
        if barrier is not None:
            barrier()
    trace = read_trace(path)
    trace.check_covers(streams, task.name)
    trace.reparse(task.label_space)
    failed, n, kinds = check_failed(trace, streams, cfg.max_failed, cfg.allow_failed_trace)
    return TraceInfo(path, trace, failed, n, kinds, stats)


# ---------------------------------------------------------------------------------------------
# `edgevlm-eval record`


def add_arguments(p: argparse.ArgumentParser) -> None:

    add_task_args(p)
    add_selection_args(p)
    p.add_argument("--lvlm", required=True, metavar="L", help="cloud model: registry name or adapter:path")
    add_models_dir_arg(p)
    p.add_argument("--out", required=True, metavar="F.jsonl", help="trace file to write (resumed if it exists)")
    p.add_argument("--latency", default="measured", metavar="SPEC",
                   help="measured (default) | fixed:D | lognormal:... | file:F.csv | network:MAHIMAHI[,...]")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=8,
                   help="requests per call (batched local adapters; 1 = single requests)")
    p.add_argument("--concurrency", type=int, default=4, help="parallel requests (adapters that do not batch)")
    p.add_argument("--overwrite", action="store_true", help="start the trace again instead of resuming it")
    p.add_argument("--keep-failed", dest="keep_failed", action="store_true",
                   help="do not re-ask frames whose reply failed in an earlier recording")


def main(args) -> int:

    parse_latency(args.latency)  # a typo fails here, before anything is converted or asked
    positive_int(args.batch_size, "--batch-size")
    positive_int(args.concurrency, "--concurrency")

    registry.set_models_path(args.models_dir)
    registry.resolve(args.lvlm)
    task, streams, _ = load_from_args(args)
    stats = record_with_progress(task, streams, args.lvlm, args.out, latency=args.latency, batch_size=args.batch_size,
                                 concurrency=args.concurrency, overwrite=args.overwrite, keep_failed=args.keep_failed)
    n = sum(len(s) for s in streams)
    trace = read_trace(args.out)
    failed = len(trace.failed([(s.id, f.index) for s in streams for f in s.frames]))
    print(f"trace: {args.out} ({n} frames of {len(streams)} streams; {stats.asked} requests sent now, "
          f"{failed} frames failed; tokens {stats.prompt_tokens} in / {stats.completion_tokens} out)")
    if failed:
        print(f"{failed} frames failed: run the same command again to re-ask them", flush=True)
        return 3
    return 0
