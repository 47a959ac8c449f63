"""The per-frame log: append-only JSONL, one line per frame per run (strategy), flushed after
every lockstep step (docs/results.md has the schema).

The first line of a file is a header `{"format": "edgevlm-eval.framelog/1", "config_hash": ...}`.
A run killed mid-write leaves at most a truncated last line; `read_framelog` tolerates it (and
`FrameLogWriter` cuts it off before appending), so a resumed run logs no frame twice. Scoring is a
pure function of these lines (`edgevlm_eval.collab.accounting.summarise`), hence `rescore`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

from edgevlm_eval.core.errors import DatasetError

FORMAT = "edgevlm-eval.framelog/1"
LOG_GLOB = "frames*.jsonl"


def log_name(rank: int = 0, world: int = 1) -> str:
    return "frames.jsonl" if world <= 1 else f"frames-{rank:03d}-of-{world:03d}.jsonl"


def read_framelog(path: str | os.PathLike) -> tuple[dict, list[dict]]:
    """(header, frame lines). A truncated last line (a kill mid-write) is dropped; any other bad
    line is an error naming the file and line."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    lines = text.split("\n")
    if not lines[0].strip():
        return {}, []
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        if len(lines) == 1:  # killed while writing the header
            return {}, []
        raise DatasetError("line 1: the per-frame log header is not JSON", path=str(path)) from None
    if header.get("format") != FORMAT:
        raise DatasetError(f"line 1: not a per-frame log (format {header.get('format')!r}, expected {FORMAT!r})",
                           path=str(path))
    out = []
    last = len(lines) - 1
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i - 1 == last:  # no newline after it: the write was cut off
                break
            raise DatasetError(f"line {i}: not JSON", path=str(path)) from None
    return header, out


def read_logs(folder: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """(headers, lines) of every per-frame log in a run folder (one per process when sharded)."""
    headers, lines = [], []
    for p in sorted(Path(folder).glob(LOG_GLOB)):
        h, ls = read_framelog(p)
        if h:
            headers.append(h)
        lines.extend(ls)
    return headers, lines


def frame_key(line: dict) -> tuple[str, str, int]:
    return (line["run"], line["stream"], int(line["frame"]))


def check_unique(lines: Iterable[dict], where: str = "") -> None:
    seen: set = set()
    for ln in lines:
        k = frame_key(ln)
        if k in seen:
            raise DatasetError(f"per-frame log{(' ' + where) if where else ''}: run {k[0]!r} stream {k[1]!r} "
                               f"frame {k[2]} is logged twice")
        seen.add(k)


class FrameLogWriter:
    """Appends frame lines; `flush()` after each simulator step makes them durable."""

    def __init__(self, path: str | os.PathLike, header: dict, *, append: bool):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if append and self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb+") as fh:  # cut a line left half-written by a kill
                data = fh.read()
                if not data.endswith(b"\n"):
                    fh.truncate(data.rfind(b"\n") + 1)
            if self.path.stat().st_size == 0:
                append = False
        self.fh = open(self.path, "a" if append else "w", encoding="utf-8")
        if not append or self.fh.tell() == 0:
            self.fh.write(json.dumps({"format": FORMAT, **header}, sort_keys=True) + "\n")
            self.fh.flush()
        self._dumps = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False).encode

    def write(self, line: dict) -> None:
        self.fh.write(self._dumps(line) + "\n")

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.flush()
            self.fh.close()


def iter_run_lines(lines: Iterable[dict], run: str) -> Iterator[dict]:
    return (ln for ln in lines if ln.get("run") == run)
