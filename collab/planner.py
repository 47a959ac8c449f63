"""The keyframe policy without any model: LCR, LHL and the clock of a run from latencies alone.

The upload decisions of edgeVLM (and of `parallel` and the ADAS proxy) depend only on the clock and
the latencies, never on an answer, so the LVLM call ratio (LCR) and the history lag (LHL) of a run
can be replayed exactly without a model (paper Table 1 is such a replay). This module is the one
home of that replay: `edgevlm-eval plan` uses it, and so does search.py's `dry_lcr` (the equal-LCR
search). It follows the simulator's rules to the letter (simulator.py, method.md §3); a test checks
that both give the same LCR and LHL:

- clock: at s_T the replies with a_j <= s_T leave the in-flight set; j_star is the newest frame whose
  usable reply has arrived (StreamState.advance_clock);
- decision: collab/keyframe.py's `keyframe_decision(t, j_star, in_flight, K_call, K_delay)`, the
  engine's own rule; an upload is sent at s_T and arrives at s_T + L_T;
- history (edgeVLM's Context Transfer: every arrived usable reply may be reused), CRM on:
  j_L = j_star when s_T - s_{j_star} <= delta, as the farthest entry, then the H - 1 newest other
  frames; without j_L the H newest frames. The lag of frame T is T - (its newest LVLM entry), and
  LHL is its mean over the frames that had one (accounting.py).
What a model would add and the replay assumes away: every SVLM answer is usable (a failed one would
be skipped over in the history window), and an unusable image skips the frame when `skip` says so.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from statistics import fmean, pstdev
from typing import Callable, Sequence

from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.core.types import Frame, Stream

from .keyframe import keyframe_decision
from .strategy import EPS, INF

# As simulator.LOOKBACK: how far past the H newest frames history looks for usable ones (it only
# matters around frames skipped for an unusable image). Kept equal by a test.
LOOKBACK = 8


class StreamClock:
    """What a decision reads of one stream at s_T, kept as simulator.StreamState keeps it: the
    in-flight heap of (a_j, j), j_star, and, for the ADAS proxy, sent times and its EWMA. A
    strategy's `decide(st, t, s_T)` and `on_arrival(st, j, a)` accept it in place of a StreamState."""

    __slots__ = ("heap", "j_star", "sent", "arrival", "mine", "s")

    def __init__(self, n: int, mine=None, s=None):
        self.s = s  # capture times (a decision may read those of frames up to T)
        self.heap: list[tuple[float, int]] = []
        self.j_star = -1
        self.sent = [INF] * n
        self.arrival = [INF] * n
        self.mine = mine  # the strategy's own per-stream state (Strategy.new_stream_state)

    @property
    def in_flight(self) -> int:
        return len(self.heap)


Decide = Callable[[StreamClock, int, float], "tuple[bool, str]"]


def keyframe_decider(K_call: int, K_delay: float) -> Decide:
    """edgeVLM's (and parallel's) decision at s_T: the engine's rule, read from the clock."""

    def decide(c: StreamClock, t: int, s_T: float) -> tuple[bool, str]:
        return keyframe_decision(t, c.j_star, len(c.heap), K_call, K_delay)

    return decide


@dataclass
class StreamReplay:
    """Per frame of one stream: the decision, the clock at s_T and the history lag."""

    upload: list[bool]
    why: list[str]
    in_flight: list[int]  # P_T at s_T (uploads whose reply had not arrived)
    j_star: list[int]  # -1: no usable reply yet
    in_time: list[bool | None]  # uploaded frames: a usable reply within tau (L_T <= tau)
    lag: list[int | None]  # T - newest LVLM entry of its history (frames); None: no LVLM entry
    lag_s: list[float | None]  # the same in seconds, s_T - s_j


def replay_stream(s: Sequence[float], L: Sequence[float], decide: Decide, *, tau: float = 1.0, delta: float = 10.0,
                  H: int = 2, crm: bool = True, history: bool = True, ok: Sequence[bool] | None = None,
                  skip: Sequence[bool] | None = None,
                  on_arrival: Callable[[StreamClock, int, float], None] | None = None,
                  sent_at: Callable[[float, float], float] | None = None, mine=None) -> StreamReplay:
    """Replay one stream: capture times `s`, latencies `L` (seconds, one per frame).

    `ok[j]`: frame j's LVLM reply is usable (default: all are); an unusable one never becomes j_star
    or history. `skip[t]`: frame t's image is unusable, so it is neither decided nor used as history
    (the simulator's image_error). `on_arrival` / `sent_at`: a strategy's hooks (ADAS, LAECIPS-like
    send times); by default uploads are sent at s_T. `history=False` skips the lag (LCR only).
    """
    n = len(s)
    if len(L) != n:
        raise ValueError(f"{len(L)} latencies for {n} frames")
    c = StreamClock(n, mine, list(s))
    heap, arrival = c.heap, c.arrival
    upload, why_, inflight, jstars, in_time, lag, lag_s = [], [], [], [], [], [], []
    use_hist = history and H > 0
    for t in range(n):
        s_T = s[t]
        now = s_T + EPS
        while heap and heap[0][0] <= now:  # StreamState.advance_clock
            a, j = heapq.heappop(heap)
            if (ok is None or ok[j]) and j > c.j_star:
                c.j_star = j
            if on_arrival is not None:
                on_arrival(c, j, a)
        inflight.append(len(heap))
        jstars.append(c.j_star)
        if skip is not None and skip[t]:
            upload.append(False)
            why_.append("image_error")
            in_time.append(None)
            lag.append(None)
            lag_s.append(None)
            continue
        u, why = decide(c, t, s_T)
        upload.append(u)
        why_.append(why)
        if u:
            sent = s_T if sent_at is None else sent_at(s_T, 0.0)
            a = sent + L[t]
            c.sent[t] = sent
            arrival[t] = a
            heapq.heappush(heap, (a, t))
            in_time.append(a - s_T <= tau + EPS and (ok is None or ok[t]))  # a usable reply within tau
        else:
            in_time.append(None)
        if not use_hist:
            lag.append(None)
            lag_s.append(None)
            continue
        # simulator._history: j_L first, then the newest other frames with a usable answer
        jL = c.j_star if crm and c.j_star >= 0 and s_T - s[c.j_star] <= delta + EPS else -1
        newest = jL
        need = H - 1 if jL >= 0 else H
        j, stop, got = t - 1, max(-1, t - H - LOOKBACK - 1), 0
        while j > stop and got < need:
            if j != jL and (skip is None or not skip[j]):
                got += 1
                if j > newest and arrival[j] <= now and (ok is None or ok[j]):
                    newest = j
            j -= 1
        if newest >= 0:
            lag.append(t - newest)
            lag_s.append(s_T - s[newest])
        else:
            lag.append(None)
            lag_s.append(None)
    return StreamReplay(upload, why_, inflight, jstars, in_time, lag, lag_s)


# ---------------------------------------------------------------------------------------------
# Totals over streams, and over latency seeds


@dataclass
class PlanTotals:
    """One run (one K_call, K_delay, one latency draw) over all streams, as accounting.py counts."""

    frames: int = 0
    uploads: int = 0
    in_time: int = 0  # uploads answered usable within tau
    lag_n: int = 0  # frames whose history held an LVLM entry
    lag_sum: float = 0.0
    lag_s_sum: float = 0.0
    in_flight_sum: int = 0  # P_T summed over the decided frames
    decided: int = 0

    def add(self, r: StreamReplay) -> None:
        self.frames += len(r.upload)
        for u, w, p, it, g, gs in zip(r.upload, r.why, r.in_flight, r.in_time, r.lag, r.lag_s):
            if u:
                self.uploads += 1
                self.in_time += it
            if w != "image_error":
                self.decided += 1
                self.in_flight_sum += p
            if g is not None:
                self.lag_n += 1
                self.lag_sum += g
                self.lag_s_sum += gs

    @property
    def lcr(self) -> float | None:
        return self.uploads / self.frames if self.frames else None

    @property
    def lhl_frames(self) -> float | None:
        return self.lag_sum / self.lag_n if self.lag_n else None

    @property
    def lhl_s(self) -> float | None:
        return self.lag_s_sum / self.lag_n if self.lag_n else None

    @property
    def in_time_share(self) -> float | None:
        return self.in_time / self.uploads if self.uploads else None

    @property
    def in_flight_mean(self) -> float | None:
        return self.in_flight_sum / self.decided if self.decided else None


PLAN_FIELDS = ("lcr", "lhl_s", "lhl_frames", "in_time_share", "in_flight_mean")


@dataclass
class PlanRow:
    """One K_call (and K_delay): each field the mean over the latency seeds, `spread` their
    standard deviation (population, 0 for one seed)."""

    K_call: int
    K_delay: float
    seeds: list[int]
    lcr: float | None
    lhl_s: float | None
    lhl_frames: float | None
    in_time_share: float | None
    in_flight_mean: float | None
    frames: int  # per seed
    spread: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"K_call": self.K_call, "K_delay": "inf" if self.K_delay == INF else self.K_delay,
                "lcr": self.lcr, "lhl_s": self.lhl_s, "lhl_frames": self.lhl_frames,
                "in_time_share": self.in_time_share, "in_flight_mean": self.in_flight_mean,
                "frames": self.frames, "seeds": self.seeds, "spread": self.spread}


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return fmean(xs) if xs else None


def plan_table(times: Sequence[Sequence[float]], draws: Sequence[tuple[int, Sequence[Sequence[float]]]],
               K_calls: Sequence[int], K_delay: float, *, tau: float = 1.0, delta: float = 10.0, H: int = 2,
               crm: bool = True, ok: Sequence[Sequence[bool]] | None = None) -> list[PlanRow]:
    """One PlanRow per K_call. `times[i]`: stream i's capture times; `draws`: (seed, latencies per
    stream) per latency draw; `ok[i][j]`: frame j's LVLM reply is usable (default all)."""
    rows = []
    for K_call in K_calls:
        decide = keyframe_decider(K_call, K_delay)
        per_seed = []
        for _, lat in draws:
            tot = PlanTotals()
            for i, s in enumerate(times):
                tot.add(replay_stream(s, lat[i], decide, tau=tau, delta=delta, H=H, crm=crm,
                                      ok=ok[i] if ok is not None else None))
            per_seed.append(tot)
        vals = {f: [getattr(t, f) for t in per_seed] for f in PLAN_FIELDS}
        spread = {f: (pstdev(v) if len(v) > 1 and None not in v else 0.0) for f, v in vals.items()}
        rows.append(PlanRow(K_call, K_delay, [sd for sd, _ in draws], *(_mean(vals[f]) for f in PLAN_FIELDS),
                            frames=per_seed[0].frames if per_seed else 0, spread=spread))
    return rows


def synthetic_streams(n_streams: int, n_frames: int, fps: float, task: str = "plan") -> list[Stream]:
    """n_streams streams "s0", "s1", ... of n_frames frames at fps (frame t at t / fps): the shape of
    a dataset without its data (the paper's nuScenes: 156 x 20 at 1 FPS). The ids key a seeded
    latency source's per-stream generators."""
    for name, v in (("--streams", n_streams), ("--frames", n_frames)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ConfigError(f"must be an integer >= 1, got {v!r}", key=name)
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ConfigError(f"must be a finite number of frames per second > 0, got {fps!r}", key="--fps")
    out = []
    for k in range(int(n_streams)):
        sid = f"s{k}"
        frames = [Frame(stream_id=sid, index=t, timestamp_s=t / fps, images=(), query="", labels=())
                  for t in range(int(n_frames))]
        out.append(Stream(id=sid, task=task, fps=float(fps), frames=frames))
    return out


def parse_k_calls(text: str) -> list[int]:
    """`--K-call`: a range "1-9", a list "1,3,5", or one value; each an integer >= 0 (0 = rule off)."""
    s = str(text).strip()
    out: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in s.split(","))):
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                a, b = int(lo), int(hi)
                if a > b:
                    raise ConfigError(f"range {part!r} runs backwards", key="--K-call")
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise ConfigError(f"expected a range like 1-9, a list like 1,3,5 or one integer, got {text!r}",
                          key="--K-call") from None
    if not out:
        raise ConfigError(f"no value in {text!r}", key="--K-call")
    bad = [k for k in out if k < 0]
    if bad:
        raise ConfigError(f"K_call must be >= 0 (0 = rule off), got {bad[0]}", key="--K-call")
    return list(dict.fromkeys(out))


def parse_k_delay(text: str | float) -> float:
    """`--K-delay`: an integer >= 1, or inf (rule off)."""
    s = str(text).strip().lower()
    if s in ("inf", "off", "none"):
        return INF
    try:
        v = float(s)
    except ValueError:
        v = math.nan
    if not (v >= 0) or v != int(v):
        raise ConfigError(f"expected an integer >= 0 or inf, got {text!r}", key="--K-delay")
    return int(v)
