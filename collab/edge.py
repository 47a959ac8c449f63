"""Edge latency e_T of the SVLM's answers (docs/method.md §2): where it comes from.

    declared       the SVLM's registry entry states a figure (e.g. Qwen2.5-VL-3B on the paper's edge
                   GPU, 562 ms, Table 3); the run driver resolves it to `FixedEdge` with its basis
    fixed:S        S seconds for every answer
    file:F.csv     per frame: columns stream,frame,e_s (every replayed frame must be in the file)
    measured       timed on the machine that replays: one request at a time, after a warm-up request

Every source but `measured` makes the scores independent of how fast or busy the replaying
machine is. An answer with e_T > tau is invalid (`svlm_late`) unless the run says `--edge-fast`;
LAECIPS uploads at s_T + e_T.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgevlm_eval.core.errors import ConfigError, DatasetError

EDGE_KINDS = ("declared", "fixed:S", "file:F.csv", "measured")


class EdgeLatency:
    spec: str = ""
    measured: bool = False  # the simulator then sends single requests and warms the model up first

    def seconds(self, stream: str, frame: int, reply, wall_s: float) -> float:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"spec": self.spec}


def _check_seconds(v, where: str) -> float:
    try:
        s = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected seconds, got {v!r}", key="--edge-latency") from None
    if not (s >= 0) or math.isinf(s):
        raise ConfigError(f"{where}: expected a finite number of seconds >= 0, got {v!r}", key="--edge-latency")
    return s


@dataclass
class FixedEdge(EdgeLatency):
    s: float
    spec: str = ""
    basis: str = ""

    def __post_init__(self):
        self.s = _check_seconds(self.s, "edge latency")
        self.spec = self.spec or f"fixed:{self.s:g}"

    def seconds(self, stream, frame, reply, wall_s):
        return self.s

    def describe(self):
        d = {"spec": self.spec, "seconds": self.s}
        if self.basis:
            d["basis"] = self.basis
        return d


@dataclass
class FileEdge(EdgeLatency):
    path: str
    table: dict = field(default_factory=dict)

    def __post_init__(self):
        self.spec = f"file:{self.path}"
        try:
            fh = open(self.path, newline="", encoding="utf-8")
        except FileNotFoundError:
            raise DatasetError("edge latency file not found", path=self.path,
                               expected="CSV with header stream,frame,e_s") from None
        with fh:
            rows = csv.reader(fh)
            header = next(rows, None)
            if header is None or [h.strip() for h in header] != ["stream", "frame", "e_s"]:
                raise DatasetError(f"line 1: header {header!r}, expected stream,frame,e_s", path=self.path)
            for i, row in enumerate(rows, start=2):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != 3:
                    raise DatasetError(f"line {i}: expected 3 columns (stream,frame,e_s), got {row!r}", path=self.path)
                try:
                    frame = int(row[1])
                except ValueError:
                    raise DatasetError(f"line {i}: frame {row[1]!r} is not an integer", path=self.path) from None
                try:
                    e = _check_seconds(row[2].strip(), f"{self.path}: line {i}")
                except ConfigError as err:
                    raise DatasetError(str(err), path=self.path) from None
                key = (row[0].strip(), frame)
                if key in self.table:
                    raise DatasetError(f"line {i}: (stream {key[0]!r}, frame {frame}) appears twice", path=self.path)
                self.table[key] = e

    def seconds(self, stream, frame, reply, wall_s):
        try:
            return self.table[(stream, frame)]
        except KeyError:
            raise DatasetError(f"edge latency file has no line for (stream {stream!r}, frame {frame})",
                               path=self.path) from None

    def describe(self):
        return {"spec": self.spec, "file": Path(self.path).name, "frames": len(self.table)}


@dataclass
class MeasuredEdge(EdgeLatency):
    """The wall time of each single SVLM request on this machine (warm-up excluded). Not
    reproducible on another machine, nor on this one under other load: results say so."""

    spec: str = "measured"
    measured: bool = True

    def seconds(self, stream, frame, reply, wall_s):
        return float(wall_s)

    def describe(self):
        import platform

        return {"spec": self.spec, "machine": platform.node() or "?", "platform": platform.platform(),
                "note": "timed on the replaying machine, one request at a time after a warm-up request; "
                        "depends on that machine's speed and load"}


def parse_edge_latency(spec) -> EdgeLatency:
    """fixed:S (or a bare number of seconds), file:F.csv, measured. `declared` is resolved by the
    run driver from the SVLM's registry entry."""
    if isinstance(spec, EdgeLatency):
        return spec
    if spec is None:
        return MeasuredEdge()
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return FixedEdge(spec)
    text = str(spec).strip()
    kind, _, body = text.partition(":")
    if text == "measured":
        return MeasuredEdge()
    if kind == "fixed" and body:
        return FixedEdge(_check_seconds(body, f"--edge-latency {text}"))
    if kind == "file" and body:
        return FileEdge(os.path.expanduser(body))
    try:
        return FixedEdge(_check_seconds(text, f"--edge-latency {text}"))
    except ConfigError:
        pass
    raise ConfigError(f"unknown edge latency {text!r}; known: {', '.join(EDGE_KINDS)}", key="--edge-latency")
