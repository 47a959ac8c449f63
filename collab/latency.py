"""Latency sources (method.md §2): where each frame's LVLM latency L_t comes from.

A source turns (streams, trace) into one array of L_t per stream, fixed before any strategy runs,
so that every strategy faces exactly the same latencies. Spec strings (CLI `--latency`, YAML):

    measured                       the trace's recorded total (default)
    fixed:D                        L_t = D seconds for every frame (the paper's d = 1..9 s study)
    paper-5g[:seed=N]              the paper's 5G cloud latency, fitted to its Table 1 (LCR and LHL
                                   for K_call 1..9) with Table 3's mean; per stream, correlated,
                                   heavy-tailed (docs/latency.md); `uplink` = 211 Mbps (paper §4.1.3)
    paper-5g-2img[:seed=N]         the same, slower: two images per query (IPN Hand), scaled to the
                                   in-time share inferred from Table 2 (docs/latency.md)
    paper-5g-short[:seed=N]        the same, faster: single image, short answer (ACE), likewise
    (5g: retired. It was a hand-set lognormal, median 1.9 s, sigma 0.5, rho 0.8, not the paper's
     regime: only about 7 % of its replies arrive within tau = 1 s. The same draws come from
     lognormal:median=1.9,sigma=0.5,rho=0.8,seed=N; an old spec names them in the error.)
    lognormal:median=M,sigma=S,rho=R,seed=N
                                   log L_t = log M + x_t, x_t = R x_{t-1} + sqrt(1-R^2) S eps_t per
                                   stream (temporally correlated like the paper's Fig. 4), seeded
    file:PATH.csv                  columns stream,frame,latency_s; overrides the trace's latencies
                                   (frames not in the file keep the trace's)
    network:PATH[,bytes=B][,download=S][,offset=S][,server=trace|S]
                                   upload of the frame's bytes over a Mahimahi uplink trace,
                                   starting at capture time, + server time (the trace's queue +
                                   inference, or a fixed S) + download (the trace's, or S)

Concurrent uploads are not made to share the link: L_t depends on the frame only, never on which
frames a strategy uploads, which is what makes strategies comparable on one trace.
"""

from __future__ import annotations

import csv
import math
import os
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from edgevlm_eval.core.errors import ConfigError, DatasetError
from edgevlm_eval.core.types import Stream

from .trace import Trace, check_latency, file_sha256

MAHIMAHI_PACKET_BYTES = 1500


# ---------------------------------------------------------------------------------------------
# Uplinks: time to upload B bytes starting at time t


class Uplink:
    def upload_s(self, n_bytes: int, start_s: float) -> float:
        raise NotImplementedError

    def describe(self) -> dict:
        return {}


@dataclass
class ConstantUplink(Uplink):
    mbps: float

    def __post_init__(self):
        if not (self.mbps > 0) or math.isinf(self.mbps):
            raise ConfigError(f"uplink bandwidth must be a positive number of Mbps, got {self.mbps}")

    def upload_s(self, n_bytes: int, start_s: float) -> float:
        return n_bytes * 8 / (self.mbps * 1e6)

    def describe(self) -> dict:
        return {"kind": "constant", "mbps": self.mbps}


class MahimahiUplink(Uplink):
    """A Mahimahi packet-delivery trace: each line is the millisecond timestamp of one
    1500-byte delivery opportunity; the trace repeats with period = its last timestamp (as
    mahimahi's link shell replays it)."""

    def __init__(self, path: str | os.PathLike, offset_s: float = 0.0):
        self.path = str(path)
        self.offset_s = float(offset_s)
        ts = []
        try:
            fh = open(path, encoding="utf-8")
        except FileNotFoundError:
            raise DatasetError("Mahimahi trace not found", path=str(path),
                               expected="one integer millisecond timestamp per line") from None
        with fh:
            for i, line in enumerate(fh, start=1):
                s = line.strip()
                if not s:
                    continue
                try:
                    v = int(s)
                except ValueError:
                    raise DatasetError(f"line {i}: {s!r} is not an integer millisecond timestamp",
                                       path=str(path)) from None
                if v < 0 or (ts and v < ts[-1]):
                    raise DatasetError(f"line {i}: timestamp {v} is negative or goes backwards", path=str(path))
                ts.append(v)
        if not ts or ts[-1] <= 0:
            raise DatasetError("Mahimahi trace has no delivery opportunities after time 0", path=str(path))
        self.ts = np.asarray(ts, dtype=np.float64)
        self.period_ms = float(ts[-1])
        self.sha256 = file_sha256(path)

    def upload_s(self, n_bytes: int, start_s: float) -> float:
        n = max(1, math.ceil(n_bytes / MAHIMAHI_PACKET_BYTES))
        t0 = (start_s + self.offset_s) * 1000.0
        m = len(self.ts)
        cycle = math.floor(t0 / self.period_ms)
        r = t0 - cycle * self.period_ms
        if r == 0 and cycle > 0:  # the previous period's last opportunity sits exactly at t0
            cycle, r = cycle - 1, self.period_ms
        # the first opportunity at or after t0 carries the first packet
        first = cycle * m + int(np.searchsorted(self.ts, r, side="left"))
        last = first + n - 1
        t_end = (last // m) * self.period_ms + self.ts[last % m]
        return max(0.0, (t_end - t0) / 1000.0)

    def mean_mbps(self) -> float:
        return len(self.ts) * MAHIMAHI_PACKET_BYTES * 8 / (self.period_ms / 1000.0) / 1e6

    def describe(self) -> dict:
        return {"kind": "mahimahi", "file": Path(self.path).name, "sha256": self.sha256,
                "period_s": self.period_ms / 1000.0, "mean_mbps": round(self.mean_mbps(), 4),
                "offset_s": self.offset_s}


def parse_uplink(spec: str | None) -> Uplink | None:
    """`--uplink`: a number (Mbps) or the path of a Mahimahi trace."""
    if spec is None:
        return None
    try:
        return ConstantUplink(float(spec))
    except ValueError:
        return MahimahiUplink(spec)


# ---------------------------------------------------------------------------------------------
# Latency sources


class LatencySource:
    spec: str = ""

    def latencies(self, streams: Sequence[Stream], trace: Trace | None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"spec": self.spec}


def _trace_record(trace: Trace | None, stream: str, frame: int, what: str):
    if trace is None:
        raise ConfigError(f"the '{what}' latency source needs an LVLM trace (--trace)")
    try:
        return trace.get(stream, frame)
    except KeyError:
        raise DatasetError(f"trace has no (stream {stream!r}, frame {frame})", path=trace.path) from None


class MeasuredLatency(LatencySource):
    spec = "measured"

    def latencies(self, streams, trace):
        return {s.id: np.array([_trace_record(trace, s.id, f.index, "measured").total_s for f in s.frames],
                               dtype=np.float64) for s in streams}


@dataclass
class FixedLatency(LatencySource):
    d: float

    def __post_init__(self):
        self.d = check_latency(self.d, "--latency fixed:D", "D")
        self.spec = f"fixed:{self.d:g}"

    def latencies(self, streams, trace):
        return {s.id: np.full(len(s), self.d, dtype=np.float64) for s in streams}

    def describe(self):
        return {"spec": self.spec, "d_s": self.d}


@dataclass
class LogNormalLatency(LatencySource):
    median: float = 1.0
    sigma: float = 0.5
    rho: float = 0.8
    seed: int = 0

    def __post_init__(self):
        if not self.median > 0 or not self.sigma >= 0 or not -1 < self.rho < 1:
            raise ConfigError("lognormal latency needs median > 0, sigma >= 0, -1 < rho < 1 "
                              f"(got median={self.median}, sigma={self.sigma}, rho={self.rho})", key="--latency")
        self.spec = f"lognormal:median={self.median:g},sigma={self.sigma:g},rho={self.rho:g},seed={self.seed}"

    def latencies(self, streams, trace):
        out = {}
        for s in streams:
            # One generator per stream, keyed by the stream id (not its position), so --limit and
            # sharding leave every stream's latencies unchanged.
            rng = np.random.default_rng([self.seed, zlib.crc32(s.id.encode())])
            eps = rng.standard_normal(len(s))
            x = np.empty(len(s))
            k = math.sqrt(1 - self.rho ** 2) * self.sigma
            prev = 0.0
            for t in range(len(s)):
                # stationary AR(1): every x_t has standard deviation sigma
                prev = self.sigma * eps[t] if t == 0 else self.rho * prev + k * eps[t]
                x[t] = prev
            out[s.id] = self.median * np.exp(x)
        return out

    def with_seed(self, seed: int) -> "LogNormalLatency":
        return replace(self, seed=int(seed))

    def describe(self):
        return {"spec": self.spec, "median_s": self.median, "sigma": self.sigma, "rho": self.rho, "seed": self.seed}


def _ar1(z: np.ndarray, sigma: float, rho: float) -> np.ndarray:
    """Stationary AR(1) along the last axis from standard normals z: every x_t has sd sigma and
    corr(x_t, x_{t+1}) = rho."""
    x = np.empty_like(z)
    k = math.sqrt(1 - rho * rho) * sigma
    x[..., 0] = sigma * z[..., 0]
    for t in range(1, z.shape[-1]):
        x[..., t] = rho * x[..., t - 1] + k * z[..., t]
    return x


@dataclass(frozen=True)
class BurstParams:
    """A log-normal AR(1) body interrupted by bursts (docs/latency.md):

        L_t = median * exp(x_t) * (burst_t ? burst_factor * exp(burst_sigma * w_t) : 1)

    x is a stationary AR(1) with sd `sigma` and lag-1 correlation `rho` (neighbouring frames alike,
    paper Fig. 4); burst_t is a two-state Markov chain: a burst starts with probability `burst_in`
    per frame and goes on with probability `burst_stay`, so bursts last 1 / (1 - burst_stay)
    frames on average and cover burst_in / (burst_in + 1 - burst_stay) of the frames; w_t is
    i.i.d. standard normal. `scale` multiplies everything (the per-task variants)."""

    median: float
    sigma: float
    rho: float
    burst_in: float
    burst_stay: float
    burst_factor: float
    burst_sigma: float
    scale: float = 1.0

    def __post_init__(self):
        ok = (self.median > 0 and self.sigma >= 0 and -1 < self.rho < 1 and 0 <= self.burst_in <= 1
              and 0 <= self.burst_stay < 1 and self.burst_factor > 0 and self.burst_sigma >= 0 and self.scale > 0)
        if not ok or not all(math.isfinite(v) for v in (self.median, self.sigma, self.burst_factor,
                                                        self.burst_sigma, self.scale)):
            raise ConfigError(f"bad burst latency parameters {self}", key="--latency")

    @property
    def burst_share(self) -> float:
        """Stationary share of frames in a burst."""
        d = self.burst_in + 1 - self.burst_stay
        return self.burst_in / d if d > 0 else 0.0

    def mean_s(self) -> float:
        """E[L_t] of the stationary process (closed form)."""
        body = self.median * math.exp(self.sigma ** 2 / 2)
        pi = self.burst_share
        return self.scale * body * (1 - pi + pi * self.burst_factor * math.exp(self.burst_sigma ** 2 / 2))

    def transform(self, z: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Latencies from the standard draws (rows: streams of one length; columns: frames):
        z and w standard normal, u uniform on [0, 1). The fit script calls this on fixed draws."""
        x = _ar1(z, self.sigma, self.rho)
        b = np.empty(u.shape, dtype=bool)
        b[..., 0] = u[..., 0] < self.burst_share  # start in the stationary distribution
        for t in range(1, u.shape[-1]):
            b[..., t] = np.where(b[..., t - 1], u[..., t] < self.burst_stay, u[..., t] < self.burst_in)
        mult = np.where(b, self.burst_factor * np.exp(self.burst_sigma * w), 1.0)
        return self.scale * self.median * np.exp(x) * mult

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("median", "sigma", "rho", "burst_in", "burst_stay", "burst_factor",
                                              "burst_sigma", "scale")}


def stream_draws(seed: int, stream_id: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The standard draws (z, u, w) of one stream: one generator per stream keyed by its id (not its
    position), so --limit and sharding leave every stream's latencies unchanged."""
    rng = np.random.default_rng([seed, zlib.crc32(stream_id.encode())])
    return rng.standard_normal(n), rng.random(n), rng.standard_normal(n)


# The paper's 5G cloud latency (paper §3.4 Fig. 4, §4.1.3, Table 1), fitted by
# scripts/fit_paper_latency.py; the fit, its residuals and the variants' basis are in
# results/latency/paper_5g_fit.json and docs/latency.md. A test keeps these equal to the committed fit.
PAPER_5G = BurstParams(median=0.8503, sigma=0.2811, rho=0.98, burst_in=0.0444, burst_stay=0.0184,
                       burst_factor=30.0, burst_sigma=0.3649)
PAPER_VARIANTS: dict[str, float] = {  # name -> scale of the whole latency (docs/latency.md: how chosen)
    "paper-5g": 1.0,
    "paper-5g-2img": 1.297,  # IPN Hand: in-time share 0.353 inferred from Table 2
    "paper-5g-short": 0.727,  # ACE: in-time share 0.918 inferred from Table 2
}
PAPER_UPLINK_MBPS = 211.0  # paper §4.1.3: average 5G uplink


@dataclass
class PaperLatency(LatencySource):
    """`paper-5g[:seed=N]` and its per-task variants: BurstParams, seeded per stream. `uplink` is the
    paper's 5G uplink (211 Mbps on average, a ConstantUplink), for strategies that time an upload
    themselves (Distributed VLM's feature upload)."""

    variant: str = "paper-5g"
    seed: int = 0
    params: BurstParams | None = None

    def __post_init__(self):
        if self.variant not in PAPER_VARIANTS:
            raise ConfigError(f"unknown paper latency variant {self.variant!r}; known: {', '.join(PAPER_VARIANTS)}",
                              key="--latency")
        if self.params is None:
            self.params = replace(PAPER_5G, scale=PAPER_VARIANTS[self.variant])
        self.uplink = ConstantUplink(PAPER_UPLINK_MBPS)
        self.spec = f"{self.variant}:seed={self.seed}"

    def with_seed(self, seed: int) -> "PaperLatency":
        return PaperLatency(self.variant, int(seed), self.params)

    def latencies(self, streams, trace):
        out = {}
        for s in streams:
            z, u, w = stream_draws(self.seed, s.id, len(s))
            out[s.id] = self.params.transform(z[None], u[None], w[None])[0] if len(s) else np.empty(0)
        return out

    def describe(self):
        return {"spec": self.spec, "variant": self.variant, "seed": self.seed, **self.params.to_json(),
                "mean_s": round(self.params.mean_s(), 6), "uplink": self.uplink.describe()}


class FileLatency(LatencySource):
    """CSV `stream,frame,latency_s` (header required); overrides the trace frame by frame."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self.spec = f"file:{path}"
        self.table: dict[tuple[str, int], float] = {}
        try:
            fh = open(path, newline="", encoding="utf-8")
        except FileNotFoundError:
            raise DatasetError("latency file not found", path=str(path),
                               expected="CSV with header stream,frame,latency_s") from None
        with fh:
            rows = csv.reader(fh)
            header = next(rows, None)
            if header is None or [h.strip() for h in header] != ["stream", "frame", "latency_s"]:
                raise DatasetError(f"line 1: header {header!r}, expected stream,frame,latency_s", path=str(path))
            for i, row in enumerate(rows, start=2):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != 3:
                    raise DatasetError(f"line {i}: expected 3 columns (stream,frame,latency_s), got {len(row)}: "
                                       f"{row!r}", path=str(path))
                stream = row[0].strip()
                try:
                    frame = int(row[1])
                except ValueError:
                    raise DatasetError(f"line {i}: frame {row[1]!r} is not an integer", path=str(path)) from None
                lat = check_latency(row[2].strip(), f"{path}: line {i}", "latency_s")
                if (stream, frame) in self.table:
                    raise DatasetError(f"line {i}: (stream {stream!r}, frame {frame}) appears twice", path=str(path))
                self.table[(stream, frame)] = lat
        self.sha256 = file_sha256(path)
        self.used_file = self.used_trace = 0

    def latencies(self, streams, trace):
        out = {}
        self.used_file = self.used_trace = 0
        for s in streams:
            arr = np.empty(len(s))
            for t, f in enumerate(s.frames):
                v = self.table.get((s.id, f.index))
                if v is None:
                    v = _trace_record(trace, s.id, f.index, "file (for frames the file lacks)").total_s
                    self.used_trace += 1
                else:
                    self.used_file += 1
                arr[t] = v
            out[s.id] = arr
        return out

    def describe(self):
        return {"spec": self.spec, "file": Path(self.path).name, "sha256": self.sha256,
                "frames_from_file": self.used_file, "frames_from_trace": self.used_trace}


class NetworkLatency(LatencySource):
    """L_t = upload(bytes of frame t, from s_t) + server time + download."""

    def __init__(self, path: str, *, n_bytes: int | None = None, download_s: float | None = None,
                 offset_s: float = 0.0, server_s: float | None = None):
        self.uplink = MahimahiUplink(path, offset_s)
        self.n_bytes, self.download_s, self.server_s = n_bytes, download_s, server_s
        self.spec = "network:" + str(path) + "".join(
            f",{k}={v}" for k, v in (("bytes", n_bytes), ("download", download_s), ("offset", offset_s or None),
                                     ("server", server_s)) if v is not None)

    def frame_bytes(self, frame, rec) -> int:
        if self.n_bytes is not None:
            return self.n_bytes
        if rec is not None and rec.image_bytes:
            return int(rec.image_bytes)
        try:
            return sum(os.path.getsize(p) for p in frame.images)
        except OSError as e:
            raise DatasetError(f"network latency: cannot size the images of (stream {frame.stream_id!r}, "
                               f"frame {frame.index}) ({e}); give bytes=N") from None

    def latencies(self, streams, trace):
        out = {}
        for s in streams:
            arr = np.empty(len(s))
            for t, f in enumerate(s.frames):
                rec = trace.records.get((s.id, f.index)) if trace is not None else None
                if self.server_s is not None:
                    server = self.server_s
                elif rec is not None:
                    server = rec.server_s
                else:
                    raise ConfigError("network latency needs server=S or an LVLM trace for the server time")
                down = self.download_s if self.download_s is not None else (rec.download_s or 0.0 if rec else 0.0)
                arr[t] = self.uplink.upload_s(self.frame_bytes(f, rec), f.timestamp_s) + server + down
            out[s.id] = arr
        return out

    def describe(self):
        return {"spec": self.spec, "uplink": self.uplink.describe(), "bytes": self.n_bytes,
                "download_s": self.download_s, "server_s": self.server_s}


def _kv(body: str, spec: str) -> dict[str, str]:
    out = {}
    for part in filter(None, body.split(",")):
        if "=" not in part:
            raise ConfigError(f"expected key=value, got {part!r} in {spec!r}", key="--latency")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


LATENCY_KINDS = ("measured", "fixed", "lognormal", "file", "network")


def parse_latency(spec: str | None) -> LatencySource:
    """A latency source from its spec string (module docstring)."""
    spec = (spec or "measured").strip()
    kind, _, body = spec.partition(":")
    try:
        if kind == "measured" and not body:
            return MeasuredLatency()
        if kind == "fixed":
            return FixedLatency(float(body))
        if kind == "lognormal":
            kv = _kv(body, spec)
            unknown = set(kv) - {"median", "sigma", "rho", "seed"}
            if unknown:
                raise ConfigError(f"unknown lognormal parameter(s) {sorted(unknown)}; known: median, sigma, rho, seed",
                                  key="--latency")
            return LogNormalLatency(float(kv.get("median", 1.0)), float(kv.get("sigma", 0.5)),
                                    float(kv.get("rho", 0.8)), int(kv.get("seed", 0)))
        if kind == "5g":
            kv = _kv(body, spec)
            raise ConfigError("the 5g preset was retired: it was not the paper's regime (only about 7 % of its replies "
                              "arrive within 1 s). Use paper-5g (fitted to the paper's Table 1 and Table 3, "
                              "docs/latency.md), or for the same draws as before "
                              f"lognormal:median=1.9,sigma=0.5,rho=0.8,seed={kv.get('seed', 0)}", key="--latency")
        if kind in PAPER_VARIANTS:
            kv = _kv(body, spec)
            if set(kv) - {"seed"}:
                raise ConfigError(f"{kind} takes only seed=N (got {sorted(kv)})", key="--latency")
            return PaperLatency(kind, int(kv.get("seed", 0)))
        if kind == "file" and body:
            return FileLatency(body)
        if kind == "network" and body:
            path, _, rest = body.partition(",")
            kv = _kv(rest, spec)
            unknown = set(kv) - {"bytes", "download", "offset", "server"}
            if unknown:
                raise ConfigError(f"unknown network parameter(s) {sorted(unknown)}; known: bytes, download, offset, "
                                  "server", key="--latency")
            server = kv.get("server")
            return NetworkLatency(path, n_bytes=int(kv["bytes"]) if "bytes" in kv else None,
                                  download_s=float(kv["download"]) if "download" in kv else None,
                                  offset_s=float(kv.get("offset", 0.0)),
                                  server_s=None if server in (None, "trace") else float(server))
    except ValueError as e:
        raise ConfigError(f"bad latency spec {spec!r}: {e}", key="--latency") from None
    raise ConfigError(f"unknown latency source {spec!r}; known: measured, fixed:D, paper-5g[:seed=N], "
                      "paper-5g-2img[:seed=N], paper-5g-short[:seed=N], "
                      "lognormal:median=M,sigma=S,rho=R,seed=N, file:PATH.csv, network:PATH[,bytes=B,...]",
                      key="--latency")


def check_latency_arrays(arrays: dict[str, np.ndarray], streams: Sequence[Stream], source: str) -> None:
    """Reject a NaN or negative latency with its (stream, frame) whatever produced it."""
    for s in streams:
        arr = arrays[s.id]
        bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
        if bad.size:
            t = int(bad[0])
            raise DatasetError(f"latency source {source}: (stream {s.id!r}, frame {s.frames[t].index}) has latency "
                               f"{arr[t]}; expected a finite number of seconds >= 0")
