"""Converted streams: the JSONL format, and the cache that makes a second run skip conversion.

Format (also what `edgevlm-eval streams --out` writes): a header line
`{"format": "edgevlm-eval.streams/1", "task": ..., "fps": ..., "streams": {id: meta}, ...}`,
then one frame per line (stream, index, timestamp_s, images, query, labels[, boxes, scored, meta]).
The header's `sha256` covers the header (without that key) and every frame line, so a file cut
short or edited after it was written is detected: the cache then converts again, and
`read_streams` refuses such a file with a message saying so (drop the `sha256` key from a file
you edit on purpose).

The cache key covers everything a conversion depends on: the resolved task YAML, the converter's
name and version, its options, the dataset root, and the size and mtime of the annotation files
the converter names. Images are not hashed (a changed image does not change the streams).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Callable, Iterable

from edgevlm_eval.tasks import ConvertContext, get_converter

from edgevlm_eval import __version__
from edgevlm_eval.core.errors import DatasetError, EdgeVLMError
from edgevlm_eval.core.io import WriteError, atomic_write_text
from edgevlm_eval.core.taskconfig import TaskConfig
from edgevlm_eval.core.types import Frame, Stream

FORMAT = "edgevlm-eval.streams/1"
CACHE_ENV = "EDGEVLM_CACHE_DIR"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgevlm-eval")


CHECKSUM_KEY = "sha256"


def _checksum(header: dict, frame_lines: Iterable[str]) -> str:
    h = hashlib.sha256(json.dumps({k: v for k, v in header.items() if k != CHECKSUM_KEY}, sort_keys=True).encode())
    for line in frame_lines:
        h.update(b"\n")
        h.update(line.encode("utf-8"))
    return h.hexdigest()


def write_streams(path: str | Path, task: TaskConfig, streams: list[Stream], extra: dict | None = None):
    """Write the streams file atomically (a failed write raises io.WriteError and leaves any
    previous file as it was)."""
    header = {"format": FORMAT, "task": task.name, "task_version": task.version, "fps": task.fps,
              "images_per_query": task.images_per_query, "labels": task.label_space.names,
              "streams": {s.id: {"n_frames": len(s), **s.meta} for s in streams}, **(extra or {})}
    header.pop(CHECKSUM_KEY, None)
    frame_lines = [json.dumps(f.to_json(), sort_keys=True) for s in streams for f in s.frames]
    header[CHECKSUM_KEY] = _checksum(header, frame_lines)
    atomic_write_text(path, "\n".join([json.dumps(header, sort_keys=True), *frame_lines]) + "\n")


def read_streams(path: str | Path, task_name: str | None = None, *,
                 require_checksum: bool = False) -> tuple[dict, list[Stream]]:
    """(header, streams) of a streams file; a file that is not one, is damaged, fails its
    checksum, or (with `task_name`) belongs to another task raises a DatasetError naming it.
    `require_checksum`: a file without one is refused too (the stream cache always writes one)."""
    path = Path(path)
    try:
        return _read_streams(path, task_name, require_checksum)
    except UnicodeDecodeError:
        raise DatasetError("not a streams file: not UTF-8 text", path=str(path)) from None
    except IsADirectoryError:
        raise DatasetError("not a streams file: a folder", path=str(path)) from None
    except FileNotFoundError:
        raise DatasetError("streams file not found", path=str(path)) from None
    except OSError as e:
        raise DatasetError(f"cannot read the streams file: {e.strerror or e}", path=str(path)) from None


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _record_problem(rec) -> str | None:
    """What is wrong with a frame record's types, or None (Frame.from_json would coerce a string
    of images into its characters and a float index into an int)."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    for key in ("stream", "index", "timestamp_s", "images", "query", "labels"):
        if key not in rec:
            return f"missing key '{key}'"
    checks = [
        ("stream", isinstance(rec["stream"], str), "a string"),
        ("index", isinstance(rec["index"], int) and not isinstance(rec["index"], bool) and rec["index"] >= 0,
         "an integer >= 0"),
        ("timestamp_s", _finite(rec["timestamp_s"]), "a finite number"),
        ("images", isinstance(rec["images"], list) and all(isinstance(p, str) and p for p in rec["images"]),
         "a list of image paths"),
        ("query", isinstance(rec["query"], str), "a string"),
        ("labels", isinstance(rec["labels"], list) and all(isinstance(x, str) for x in rec["labels"]),
         "a list of label names"),
        ("boxes", isinstance(rec.get("boxes", []), list) and all(
            isinstance(b, list) and len(b) == 5 and isinstance(b[0], str) and all(_finite(v) for v in b[1:])
            for b in rec.get("boxes", [])), "a list of [label, x1, y1, x2, y2] with finite numbers"),
        ("scored", isinstance(rec.get("scored", True), bool), "true or false"),
        ("meta", isinstance(rec.get("meta", {}), dict), "an object"),
    ]
    for key, ok, expected in checks:
        if not ok:
            return f"'{key}' must be {expected}, got {rec[key]!r}"
    return None


def _read_streams(path: Path, task_name: str | None, require_checksum: bool) -> tuple[dict, list[Stream]]:
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
        fps = header.get("fps")
        if not _finite(fps) or fps <= 0:
            raise DatasetError(f"bad header line: 'fps' must be a positive number, got {fps!r}", path=str(path))
        try:
            counts = {s_id: meta["n_frames"] for s_id, meta in header["streams"].items() if "n_frames" in meta}
            if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts.values()):
                raise ValueError("'n_frames' must be integers >= 0")
            for s_id, meta in header["streams"].items():
                meta = dict(meta)
                meta.pop("n_frames", None)
                streams[s_id] = Stream(id=s_id, task=header["task"], fps=float(fps), frames=[], meta=meta)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DatasetError(f"bad header line ({type(e).__name__}: {e})", path=str(path)) from None
        lines = []
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            line = line.rstrip("\n")
            lines.append(line)
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"line {lineno}: bad frame record (not JSON: {e.msg}; a file cut short?)",
                                   path=str(path)) from None
            problem = _record_problem(rec)
            if problem:
                raise DatasetError(f"line {lineno}: bad frame record: {problem}", path=str(path))
            try:
                f = Frame.from_json(rec)
            except (KeyError, ValueError, TypeError) as e:
                raise DatasetError(f"line {lineno}: bad frame record ({e})", path=str(path)) from None
            if f.stream_id not in streams:
                raise DatasetError(f"line {lineno}: stream {f.stream_id!r} is not in the header", path=str(path))
            streams[f.stream_id].frames.append(f)
    # a file cut short (lost lines) must not pass for a whole one
    short = [s_id for s_id, s in streams.items() if s_id in counts and len(s.frames) != counts[s_id]]
    if short:
        raise DatasetError(f"stream {short[0]!r} has {len(streams[short[0]].frames)} frames, the header says "
                           f"{counts[short[0]]}", path=str(path))
    if CHECKSUM_KEY in header:
        if header[CHECKSUM_KEY] != _checksum(header, lines):
            raise DatasetError(f"the file changed after it was written (its {CHECKSUM_KEY} does not match): damaged or "
                               f"edited by hand (remove the '{CHECKSUM_KEY}' key of a file you edit on purpose)",
                               path=str(path))
    elif require_checksum:
        raise DatasetError(f"the header has no '{CHECKSUM_KEY}' (written by an older version, or edited)",
                           path=str(path))
    return header, list(streams.values())


def _fingerprint(paths: Iterable[Path]) -> list:
    out = []
    for p in sorted(set(Path(p) for p in paths)):
        try:
            st = p.stat()
            out.append([str(p), st.st_size, st.st_mtime_ns])
        except OSError:  # missing or unreadable: convert() reports it with its context
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
    info says whether the cache was hit and where the cached file is, and, when the cache could
    not serve or keep them: `cache_rebuilt` (why the cached file was not used: damaged, edited,
    images gone; it was converted again) and `cache_warning` (why the new streams could not be
    cached: the conversion is still returned, nothing computed is lost)."""

    converter = get_converter(task.converter)
    options = converter.resolved_options(task)
    root = task.resolve_root(data_root)
    base = cache_dir() / "streams"
    probe = ConvertContext(task=task, root=root, work_dir=base, options=options)
    key = cache_key(task, root, converter, options, converter.inputs(probe))
    path = base / f"{task.name}-{key}.jsonl"
    work = base / f"{task.name}-{key}.files"
    info = {"cache_file": str(path), "cache_key": key, "cache_hit": False, "root": str(root) if root else None}
    if use_cache and (path.exists() or path.is_symlink()):
        try:
            header, streams = read_streams(path, task.name, require_checksum=True)
            if header.get("cache_key") != key:
                raise DatasetError(f"its cache_key {header.get('cache_key')!r} is not the one in its name",
                                   path=str(path))
            _check_streams(task, streams)
            if _images_present(streams):
                info["cache_hit"] = True
                return streams, info
            info["cache_rebuilt"] = f"{path}: generated images are missing"
        except DatasetError as e:
            info["cache_rebuilt"] = f"{path}: {str(e).splitlines()[0]}"
    ctx = ConvertContext(task=task, root=root, work_dir=work, progress=progress, options=options)
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # only a converter that generates files needs it, and its own write then names the cause
    try:
        streams = converter.convert(ctx)
    except EdgeVLMError:
        raise
    except UnicodeDecodeError as e:
        raise DatasetError(f"task '{task.name}': the {converter.name} converter read a file that is not UTF-8 text "
                           f"({e.reason} at byte {e.start})", path=str(root) if root else None,
                           expected=converter.layout or None) from None
    except OSError as e:
        raise DatasetError(f"task '{task.name}': the {converter.name} converter could not read a file: "
                           f"{e.strerror or e}", path=e.filename or (str(root) if root else None),
                           expected=converter.layout or None) from None
    streams = sorted(streams, key=lambda s: s.id)
    _check_streams(task, streams)
    if not any(len(s) for s in streams):
        raise DatasetError(f"task '{task.name}': the {converter.name} converter found no frames to evaluate "
                           "(empty annotation files, or every frame skipped?)", path=str(root) if root else None,
                           expected=converter.layout or None)
    if use_cache:
        try:
            write_streams(path, task, streams, {"cache_key": key, "toolkit_version": __version__})
        except WriteError as e:
            info["cache_warning"] = f"{e} (the streams were converted but are not cached)"
    return streams, info


def _images_present(streams: list[Stream]) -> bool:
    """Cheap check that generated files still exist: first and last frame of every stream."""
    for s in streams:
        for f in (s.frames[:1] + s.frames[-1:]):
            if not all(Path(p).exists() for p in f.images):
                return False
    return True


def _check_streams(task: TaskConfig, streams: list[Stream]):
    """What every converter must give (docs/adding-a-task.md): unique stream ids, frames 0..n-1 at
    increasing finite times, the task's number of images, labels and boxes of the label space."""
    ids = [s.id for s in streams]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"task '{task.name}': converter produced duplicate stream ids")
    space = task.label_space
    allowed = set(space.names) | ({space.none_label} if space.none_label else set())
    for s in streams:
        idx = [f.index for f in s.frames]
        if idx != list(range(len(idx))):
            raise DatasetError(f"task '{task.name}': stream {s.id} frame indices are not 0..n-1")
        ts = [f.timestamp_s for f in s.frames]
        if not all(_finite(t) for t in ts):
            raise DatasetError(f"task '{task.name}': stream {s.id} has a timestamp that is not a finite number")
        if any(b <= a for a, b in zip(ts, ts[1:])):
            raise DatasetError(f"task '{task.name}': stream {s.id} timestamps are not increasing")
        for f in s.frames:
            where = f"task '{task.name}': stream {s.id} frame {f.index}"
            if not all(isinstance(p, str) and p for p in f.images):
                raise DatasetError(f"{where}: image paths must be non-empty strings, got {list(f.images)}")
            if len(f.images) != task.images_per_query:
                raise DatasetError(f"{where} has {len(f.images)} images, the task sends {task.images_per_query} "
                                   "per query")
            bad = [lab for lab in f.labels if lab not in allowed]
            if bad:
                raise DatasetError(f"{where}: labels {bad} are not in the task's label space {space.names}")
            if not space.multi_label and len(f.labels) != 1:
                raise DatasetError(f"{where}: a single-label task needs exactly one label per frame, got "
                                   f"{list(f.labels)}")
            for b in f.boxes:
                if b.label not in allowed or not all(_finite(v) for v in (b.x1, b.y1, b.x2, b.y2)) \
                        or b.x2 < b.x1 or b.y2 < b.y1:
                    raise DatasetError(f"{where}: bad box {b.to_list()} (a label of the space and finite "
                                       "x1 <= x2, y1 <= y2)")
