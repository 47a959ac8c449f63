"""`edgevlm-eval record`: run the LVLM once on every frame of a task and write an LVLM trace
(method.md §2, trace.py for the format).

Batched when the adapter batches (`--batch-size`), else concurrent (`--concurrency` threads).
Each frame's line is appended and flushed as soon as its reply is in, so a killed recording
resumes where it stopped (`--overwrite` starts again). Latency: `measured` (default) keeps the
wall time of each request (and the parts the adapter reports); any other source (fixed:D,
lognormal:..., file:..., network:...) is applied to the finished trace, the measured total kept
as `latency.measured_total_s`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from edgevlm_eval import __version__
from edgevlm_eval.app.cli import positive_int
from edgevlm_eval.app.results import portable_paths
from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.core.io import atomic_write_text
from edgevlm_eval.core.types import Reply, Request, Stream

from edgevlm_eval.collab.trace import FORMAT, TraceRecord, TraceWriter, read_trace


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, metavar="T", help="task name or path to a task YAML")
    p.add_argument("--lvlm", required=True, metavar="L", help="cloud model: registry name or adapter:path")
    p.add_argument("--out", required=True, metavar="F.jsonl", help="trace file to write (resumed if it exists)")
    p.add_argument("--latency", default="measured", metavar="SPEC",
                   help="measured (default) | fixed:D | lognormal:... | file:F.csv | network:MAHIMAHI[,...]")
    p.add_argument("--data-root", dest="data_root", metavar="R", help="dataset root folder")
    p.add_argument("--tasks-dir", dest="tasks_dir", action="append", default=[], metavar="D")
    p.add_argument("--no-cache", dest="no_cache", action="store_true")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N streams")
    p.add_argument("--max-frames", dest="max_frames", type=positive_int, metavar="N",
                   help="only the first N frames per stream")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=8, help="requests per call (batched adapters)")
    p.add_argument("--concurrency", type=int, default=4, help="parallel requests (adapters that do not batch)")
    p.add_argument("--overwrite", action="store_true", help="start the trace again instead of resuming it")


def _load(args):
    from edgevlm_eval.app.cli import load_task_and_streams

    return load_task_and_streams(args)


def _record_of(frame, reply: Reply, wall_s: float) -> TraceRecord:
    tm = reply.timings or {}
    parts = {k: tm.get(k) for k in ("upload", "queue", "download")}
    inference = tm.get("inference", tm.get("total"))
    known = [v for v in (parts["upload"], parts["queue"], inference, parts["download"]) if v is not None]
    total = max(wall_s, sum(known)) if known else wall_s
    if inference is None:
        inference = max(0.0, wall_s - sum(v for v in parts.values() if v is not None))
    size = 0
    try:
        size = sum(Path(p).stat().st_size for p in frame.images)
    except OSError:
        size = None
    return TraceRecord(stream=frame.stream_id, frame=frame.index, answer=reply.text if reply.ok else "",
                       labels=(), rois=tuple(reply.rois or ()), ok=reply.ok, error=reply.error, total_s=float(total),
                       upload_s=parts["upload"], queue_s=parts["queue"], inference_s=float(inference),
                       download_s=parts["download"], image_bytes=size)


def record(task, streams: Sequence[Stream], adapter, out: str | Path, *, model: str, latency: str = "measured",
           batch_size: int = 8, concurrency: int = 4, overwrite: bool = False, progress=None) -> Path:
    """Record (or finish recording) the trace of `streams` with `adapter`."""
    header = {"task": task.name, "task_version": task.version, "model": model, "fps": task.fps,
              "latency": latency, "toolkit_version": __version__,
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "model_info": portable_paths(_describe(adapter)), "streams": len(streams), "frames": sum(len(s) for s in streams)}
    out = Path(out)
    todo_frames = []
    with TraceWriter(out, header, resume=not overwrite) as w:
        todo_frames = [f for s in streams for f in s.frames if (f.stream_id, f.index) not in w.done]
        if progress:
            progress(sum(len(s) for s in streams) - len(todo_frames))
        req_of = lambda f: Request(id=f"rec|{f.stream_id}|{f.index}", images=f.images, query=f.query, grounding=True)
        caps = getattr(adapter, "capabilities", None)
        if caps is None or caps.batched:
            for i in range(0, len(todo_frames), max(1, batch_size)):
                chunk = todo_frames[i:i + batch_size]
                t0 = time.perf_counter()
                replies = adapter.generate([req_of(f) for f in chunk])
                wall = time.perf_counter() - t0
                if len(replies) != len(chunk):
                    raise ConfigError(f"LVLM adapter returned {len(replies)} replies for {len(chunk)} requests")
                for f, r in zip(chunk, replies):
                    w.write(_record_of(f, r, wall))
                if progress:
                    progress(len(chunk))
        else:
            def one(f):
                t0 = time.perf_counter()
                r = adapter.generate([req_of(f)])[0]
                return f, r, time.perf_counter() - t0

            with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
                for f, r, wall in pool.map(one, todo_frames):
                    w.write(_record_of(f, r, wall))
                    if progress:
                        progress(1)
    if latency != "measured":
        apply_latency(out, streams, latency)
    return out


def apply_latency(path: Path, streams: Sequence[Stream], spec: str) -> None:
    """Replace the recorded totals by a latency source's (keeping the measured total)."""
    from edgevlm_eval.collab.latency import check_latency_arrays, parse_latency

    trace = read_trace(path)
    src = parse_latency(spec)
    arrays = src.latencies(streams, trace)
    check_latency_arrays(arrays, streams, src.spec)
    lines = [json.dumps({"format": FORMAT, **{**trace.header, "latency": src.spec, "latency_source": src.describe()}},
                        sort_keys=True)]
    for s in streams:
        for t, f in enumerate(s.frames):
            rec = trace.records[(s.id, f.index)]
            d = rec.to_json(trace.header.get("task", ""), trace.model)
            d["latency"]["measured_total_s"] = rec.measured_total_s if rec.measured_total_s is not None else rec.total_s
            d["latency"]["total_s"] = float(arrays[s.id][t])
            lines.append(json.dumps(d, sort_keys=True))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _describe(adapter) -> dict:
    try:
        return adapter.describe()
    except Exception:
        return {"name": getattr(adapter, "name", type(adapter).__name__)}


def trace_path_for(folder: str | Path, task, streams: Sequence[Stream], lvlm: str, latency: str) -> Path:
    """Where a run keeps the trace it records itself: one file per task, LVLM, latency source and
    set of frames, so a second run (any strategy) reuses it and a different --limit does not."""
    key = json.dumps([task.name, task.version, lvlm, latency, [[s.id, len(s)] for s in streams]], sort_keys=True)
    slug = "".join(c if c.isalnum() or c in "-._" else "_" for c in lvlm)[:60]
    return Path(folder) / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsonl"


def record_with_progress(task, streams: Sequence[Stream], lvlm: str, out: str | Path, *, latency: str = "measured",
                         batch_size: int = 8, concurrency: int = 4, overwrite: bool = False) -> Path:
    """Load the LVLM adapter and record `streams` into `out` with a progress bar."""
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgevlm_eval.model_adapters.registry import load_adapter

    adapter = load_adapter(lvlm)
    n = sum(len(s) for s in streams)
    prog = Progress(TextColumn("recording {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=True, disable=not sys.stderr.isatty())
    tid = prog.add_task(f"{task.name} with {lvlm}", total=n)
    try:
        with prog:
            return record(task, streams, adapter, out, model=lvlm, latency=latency, batch_size=batch_size,
                          concurrency=concurrency, overwrite=overwrite, progress=lambda k: prog.advance(tid, k))
    finally:
        adapter.close()


def main(args) -> int:
    task, streams, _ = _load(args)
    record_with_progress(task, streams, args.lvlm, args.out, latency=args.latency, batch_size=args.batch_size,
                         concurrency=args.concurrency, overwrite=args.overwrite)
    n = sum(len(s) for s in streams)
    print(f"trace: {args.out} ({n} frames of {len(streams)} streams)")
    return 0
