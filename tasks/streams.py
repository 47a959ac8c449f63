"""Converted streams: the JSONL format, and the cache that makes a second run skip conversion.

Format (also what `edgevlm-eval streams --out` writes): a header line
`{"format": "edgevlm-eval.streams/1", "task": ..., "fps": ..., "streams": {id: meta}, ...}`,
then one frame per line (stream, index, timestamp_s, images, query, labels[, boxes, scored, meta]).

The cache key covers everything a conversion depends on: the resolved task YAML, the converter's
name and version, its options, the dataset root, and the size and mtime of the annotation files
the converter names. Images are not hashed (a changed image does not change the streams).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable

from edgevlm_eval import __version__
from edgevlm_eval.core.taskconfig import TaskConfig
from edgevlm_eval.core.errors import DatasetError
from edgevlm_eval.core.io import atomic_write_text
from edgevlm_eval.core.types import Frame, Stream

FORMAT = "edgevlm-eval.streams/1"
CACHE_ENV = "EDGEVLM_CACHE_DIR"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgevlm-eval")


def write_streams(path: str | Path, task: TaskConfig, streams: list[Stream], extra: dict | None = None):
    header = {"format": FORMAT, "task": task.name, "task_version": task.version, "fps": task.fps,
              "images_per_query": task.images_per_query, "labels": task.label_space.names,
              "streams": {s.id: {"n_frames": len(s), **s.meta} for s in streams}, **(extra or {})}
    lines = [json.dumps(header, sort_keys=True)]
    lines += [json.dumps(f.to_json(), sort_keys=True) for s in streams for f in s.frames]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_streams(path: str | Path, task_name: str | None = None) -> tuple[dict, list[Stream]]:
    """(header, streams) of a streams file; a file that is not one, is damaged, or (with
    `task_name`) belongs to another task raises a DatasetError naming it."""
    path = Path(path)
    try:
        return _read_streams(path, task_name)
    except UnicodeDecodeError:
        raise DatasetError("not a streams file: not UTF-8 text", path=str(path)) from None


def _read_streams(path: Path, task_name: str | None) -> tuple[dict, list[Stream]]:
    streams: dict[str, Stream] = {}
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
        try:
            header = json.loads(first)
        except json.JSONDecodeError:
            raise DatasetError("not a streams file: the first line is not JSON", path=str(path)) from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            found = header.get("format") if isinstance(header, dict) else type(header).__name__
            raise DatasetError(f"not a streams file: format {found!r}, expected {FORMAT!r}", path=str(path))
        if task_name is not None and header.get("task") != task_name:
            raise DatasetError(f"streams of task {header.get('task')!r}, not {task_name!r}", path=str(path))
        try:
            counts = {s_id: int(meta["n_frames"]) for s_id, meta in header["streams"].items() if "n_frames" in meta}
            for s_id, meta in header["streams"].items():
                meta = dict(meta)
                meta.pop("n_frames", None)
                streams[s_id] = Stream(id=s_id, task=header["task"], fps=header["fps"], frames=[], meta=meta)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DatasetError(f"bad header line ({type(e).__name__}: {e})", path=str(path)) from None
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            try:
                f = Frame.from_json(json.loads(line))
            except (json.JSONDecodeError, KeyError, ValueError, TypeError) as e:
                raise DatasetError(f"line {lineno}: bad frame record ({e})", path=str(path)) from None
            if f.stream_id not in streams:
                raise DatasetError(f"line {lineno}: stream {f.stream_id!r} is not in the header", path=str(path))
            streams[f.stream_id].frames.append(f)
    # a file cut short (lost lines) must not pass for a whole one
    short = [s_id for s_id, s in streams.items() if s_id in counts and len(s.frames) != counts[s_id]]
    if short:
        raise DatasetError(f"stream {short[0]!r} has {len(streams[short[0]].frames)} frames, the header says "
                           f"{counts[short[0]]}", path=str(path))
    return header, list(streams.values())


def _fingerprint(paths: Iterable[Path]) -> list:
    out = []
    for p in sorted(set(Path(p) for p in paths)):
        try:
            st = p.stat()
            out.append([str(p), st.st_size, st.st_mtime_ns])
        except FileNotFoundError:
            out.append([str(p), None, None])
    return out


def cache_key(task: TaskConfig, root: Path | None, converter, options: dict, inputs: Iterable[Path]) -> str:
    payload = {
        "format": FORMAT,
        # the calibration split does not change the evaluated streams (the calibration task's own
        # key holds its overrides, merged into the other keys)
        "task": {k: v for k, v in task.raw.items()
                 if k not in ("description", "tags", "metrics", "primary_metric", "calibration")},
        "converter": [converter.name, converter.version],
        "options": options,
        "root": str(root.resolve()) if root else None,
        "inputs": _fingerprint(inputs),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_streams(task: TaskConfig, data_root: str | None = None, *, use_cache: bool = True,
                 progress: Callable[[int], None] | None = None) -> tuple[list[Stream], dict]:
    """Convert the task's dataset (or read it from the cache). Returns (streams, info), where
    info says whether the cache was hit and where the cached file is."""
    from edgevlm_eval.tasks import ConvertContext, get_converter

    converter = get_converter(task.converter)
    options = converter.resolved_options(task)
    root = task.resolve_root(data_root)
    base = cache_dir() / "streams"
    probe = ConvertContext(task=task, root=root, work_dir=base, options=options)
    key = cache_key(task, root, converter, options, converter.inputs(probe))
    path = base / f"{task.name}-{key}.jsonl"
    work = base / f"{task.name}-{key}.files"
    info = {"cache_file": str(path), "cache_key": key, "cache_hit": False, "root": str(root) if root else None}
    if use_cache and path.exists():
        try:
            header, streams = read_streams(path)
            if _images_present(streams):
                info["cache_hit"] = True
                return streams, info
        except (DatasetError, OSError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    ctx = ConvertContext(task=task, root=root, work_dir=work, progress=progress, options=options)
    work.mkdir(parents=True, exist_ok=True)
    streams = converter.convert(ctx)
    streams.sort(key=lambda s: s.id)
    _check_streams(task, streams)
    if use_cache:
        write_streams(path, task, streams, {"cache_key": key, "toolkit_version": __version__})
    return streams, info


def _images_present(streams: list[Stream]) -> bool:
    """Cheap check that generated files still exist: first and last frame of every stream."""
    for s in streams:
        for f in (s.frames[:1] + s.frames[-1:]):
            if not all(Path(p).exists() for p in f.images):
                return False
    return True


def _check_streams(task: TaskConfig, streams: list[Stream]):
    ids = [s.id for s in streams]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"task '{task.name}': converter produced duplicate stream ids")
    for s in streams:
        idx = [f.index for f in s.frames]
        if idx != list(range(len(idx))):
            raise DatasetError(f"task '{task.name}': stream {s.id} frame indices are not 0..n-1")
        ts = [f.timestamp_s for f in s.frames]
        if any(b <= a for a, b in zip(ts, ts[1:])):
            raise DatasetError(f"task '{task.name}': stream {s.id} timestamps are not increasing")
        for f in s.frames:
            if len(f.images) != task.images_per_query:
                raise DatasetError(f"task '{task.name}': stream {s.id} frame {f.index} has {len(f.images)} "
                                   f"images, the task sends {task.images_per_query} per query")
