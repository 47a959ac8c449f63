"""The virtual-clock simulator (docs/method.md §2-3; docs/architecture.md, "How a run flows").

Every run (a strategy with its knobs) replays every stream against the same LVLM trace and the
same latencies. Frame k of every stream of every run is one step: the strategies decide at s_T,
the requests of the step go to the SVLM as one batched call, then each frame's output is fixed
and its line is appended to the per-frame log. Nothing here depends on wall time except the
optional measured edge latency, so a replay is exact and reproducible.

Resume: a frame already in the log is not recomputed; its logged SVLM reply is fed through the
same bookkeeping, which rebuilds the state (in-flight requests, arrivals, answers) exactly, and
the decision recomputed from that state is checked against the logged one.
"""

from __future__ import annotations

import heapq
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from edgevlm_eval.core.errors import DatasetError
from edgevlm_eval.core.images import check_image
from edgevlm_eval.core.records import FrameLine, LvlmOut, SvlmOut
from edgevlm_eval.core.taskconfig import TaskConfig
from edgevlm_eval.core.types import (
    Focus,
    HistoryEntry,
    Reply,
    Request,
    Stream,
    largest_per_label,
)

from .edge import EdgeLatency, parse_edge_latency
from .latency import LatencySource, Uplink, check_latency_arrays, parse_latency
from .strategy import EPS, INF, Run, Strategy, SvlmResult
from .trace import Trace, TraceRecord

# How far back history assembly looks for frames with a usable answer (skipping frames whose
# image was unusable or whose SVLM reply failed), beyond the H it needs.
LOOKBACK = 8


@dataclass
class SimConfig:
    """Run-wide settings (method.md defaults)."""

    tau: float = 1.0  # deadline after capture (paper: 1 s)
    delta: float = 10.0  # CRM staleness bound in seconds (paper names it, gives no value)
    H: int = 2  # history frames (paper: 2)
    edge_latency: EdgeLatency | float | str | None = 0.0  # e_T source (collab/edge.py); a number = fixed seconds
    edge_fast: bool = False  # assume the edge meets tau: e_t never invalidates an answer
    check_images: bool = True  # decode each frame image once; unusable -> invalid frame
    batch_size: int | None = None  # max SVLM requests per call (None: the whole step)
    latency: str = "measured"
    uplink: Uplink | None = None

    def __post_init__(self):
        self.edge = parse_edge_latency(self.edge_latency)
        if self.edge.measured:
            self.batch_size = 1  # a real edge serves one request at a time: time exactly that

    def to_json(self) -> dict:
        return {"tau": self.tau, "delta": self.delta, "H": self.H, "edge_latency": self.edge.spec,
                "edge_fast": self.edge_fast, "check_images": self.check_images, "batch_size": self.batch_size,
                "latency": self.latency, "uplink": self.uplink.describe() if self.uplink else None}


class _Parsed:
    """Memo of answer text -> (labels, unmapped): answers repeat, parsing is the costly part."""

    def __init__(self, space, limit: int = 200_000):
        self.space, self.memo, self.limit = space, {}, limit

    def __call__(self, text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        r = self.memo.get(text)
        if r is None:
            p = self.space.parse(text)
            r = (p.labels, p.unmapped)
            if len(self.memo) < self.limit:
                self.memo[text] = r
        return r


def _entry(images, text, kind, query, frame_index, source, age_s) -> HistoryEntry:
    """A HistoryEntry without the frozen-dataclass __init__ (half the cost; built per frame per
    history slot, and `kind` is always valid here)."""
    e = object.__new__(HistoryEntry)
    e.__dict__.update(images=images, text=text, kind=kind, query=query, frame_index=frame_index, source=source,
                      age_s=age_s)
    return e


def confidence(token_probs: Sequence[float] | None, answer_probs: Sequence[float] | None = None) -> float | None:
    """LAECIPS confidence h: the share of the answer's tokens whose top-1 probability exceeds 0.9.
    `answer_probs` (Reply.answer_token_probs: no <think> reasoning, no box coordinates) when the
    adapter placed the answer, else every generated token (`token_probs`)."""
    probs = answer_probs if answer_probs is not None else token_probs
    if probs is None:
        return None
    if not probs:
        return 0.0
    return len([p for p in probs if p > 0.9]) / len(probs)


def _answer_probs(reply: Reply) -> list[float] | None:
    """The answer tokens' probabilities as logged (4 decimals), or all tokens' when not placed."""
    probs = reply.answer_token_probs if reply.answer_token_probs is not None else reply.token_probs
    return None if probs is None else [round(float(p), 4) for p in probs]


def _prev_labels(ok: bool, labels) -> tuple[str, ...] | None:
    return tuple(labels) if ok else None


def svlm_results(lines: Sequence[FrameLine], streams: Sequence[Stream]) -> list[SvlmResult | None]:
    """What `Strategy.score` sees of each logged frame (None: the SVLM did not run on it), built
    as the simulator builds it for `decide_after`: the previous frame's labels on the same stream
    (when its SVLM reply was usable) and the frame's images. For by-score searches (the probe run)
    and calibration (the SVLM-only replay of the calibration streams)."""
    images = {(s.id, f.index): f.images for s in streams for f in s.frames}
    by_key = {(ln.stream, ln.frame): ln for ln in lines}
    out = []
    for ln in lines:
        sv = ln.svlm
        if sv is None:
            out.append(None)
            continue
        prev = by_key.get((ln.stream, ln.frame - 1))
        prev_labels = _prev_labels(prev.svlm.ok, prev.svlm.labels) if prev is not None and prev.svlm else None
        out.append(SvlmResult(sv.ok, sv.text, tuple(sv.labels), sv.conf, sv.e_s,
                              tuple(sv.answer_probs) if sv.answer_probs is not None else None, prev_labels,
                              tuple(images.get((ln.stream, ln.frame), ()))))
    return out


class StreamState:
    """One stream under one run: what is known about each earlier frame."""

    __slots__ = ("run", "sid", "frames", "n", "s", "L", "recs", "img_err", "uploaded", "sent", "arrival",
                 "reuse_at", "svlm_ok", "svlm_labels", "lvlm_labels", "heap", "j_star", "mine", "rois")

    def __init__(self, run: "RunState", stream: Stream, latencies, trace: Trace | None):
        self.run = run
        self.sid = stream.id
        self.frames = stream.frames
        self.n = len(stream.frames)
        self.s = [f.timestamp_s for f in stream.frames]
        self.L = [float(x) for x in latencies]
        if trace is not None:
            self.recs = [trace.records.get((stream.id, f.index)) for f in stream.frames]
        else:
            self.recs = [None] * self.n
        self.lvlm_labels = [r.labels if r is not None else () for r in self.recs]
        self.img_err: list[str | None] = [None] * self.n
        self.uploaded = [False] * self.n
        self.sent = [INF] * self.n
        self.arrival = [INF] * self.n
        self.reuse_at = [INF] * self.n
        self.svlm_ok = [False] * self.n
        self.svlm_labels: list[tuple[str, ...]] = [()] * self.n
        self.heap: list[tuple[float, int]] = []  # (a_j, j) of requests in flight
        self.j_star = -1  # newest frame whose (usable) reply has arrived: max A_T
        self.mine = run.strategy.new_stream_state()  # the strategy's own per-stream state
        self.rois: dict[int, tuple] = {}

    @property
    def in_flight(self) -> int:
        """P_T: uploads whose reply has not arrived by the clock's time."""
        return len(self.heap)

    def image_bytes(self, t: int) -> int:
        rec = self.recs[t]
        if rec is not None and rec.image_bytes:
            return int(rec.image_bytes)
        try:
            return sum(os.path.getsize(p) for p in self.frames[t].images)
        except OSError as e:
            raise DatasetError(f"cannot size the images of (stream {self.sid!r}, frame {t}) ({e})") from None

    def advance_clock(self, s_T: float) -> None:
        """Replies that have arrived by s_T leave the in-flight set and join A_T."""
        heap = self.heap
        strat = self.run.strategy
        while heap and heap[0][0] <= s_T + EPS:
            a, j = heapq.heappop(heap)
            rec = self.recs[j]
            if (rec is None or rec.ok) and j > self.j_star:
                self.j_star = j
            strat.on_arrival(self, j, a)

    def register_upload(self, t: int, sent: float, arrival: float) -> None:
        self.uploaded[t] = True
        self.sent[t] = sent
        self.arrival[t] = arrival
        heapq.heappush(self.heap, (arrival, t))

    def lvlm(self, t: int) -> TraceRecord:
        rec = self.recs[t]
        if rec is None:
            raise DatasetError(f"trace has no (stream {self.sid!r}, frame {self.frames[t].index}) but the "
                               f"strategy '{self.run.spec.strategy}' uploads it")
        return rec


class _Pending:
    """A frame between its decision (before the SVLM batch) and its output (after)."""

    __slots__ = ("st", "t", "s_T", "upload", "why", "in_flight", "j_star", "request", "history", "j_L", "lag", "vfm",
                 "engine_s", "logged")

    def __init__(self, st, t, s_T, upload, why, in_flight, j_star, request, history, j_L, lag, vfm, engine_s,
                 logged=None):
        self.st, self.t, self.s_T, self.upload, self.why = st, t, s_T, upload, why
        self.in_flight, self.j_star, self.request, self.history = in_flight, j_star, request, history
        self.j_L, self.lag, self.vfm, self.engine_s = j_L, lag, vfm, engine_s
        self.logged = logged  # resume: the logged line of this frame


class RunState:
    def __init__(self, spec: Run, strategy: Strategy, states: list[StreamState]):
        self.spec, self.strategy, self.states = spec, strategy, states
        self.rid = spec.run_id
        self.focus = strategy.focus() if strategy.needs.svlm else None


class Simulator:
    def __init__(self, task: TaskConfig, streams: Sequence[Stream], trace: Trace | None, svlm, cfg: SimConfig,
                 *, log=None, done: dict | None = None, keep_lines: bool = True):
        self.task, self.streams, self.trace, self.svlm, self.cfg = task, list(streams), trace, svlm, cfg
        self.log = log
        self.done = done or {}
        self.keep_lines = keep_lines
        self.lines: list[dict] = []
        self.parse = _Parsed(task.label_space)
        self._latency_cache: dict[str, dict] = {}
        self._image_cache: dict[str, str | None] = {}
        self._texts: dict = {}  # (crm, age, labels) -> history text: ages and answers repeat
        self.caps = getattr(svlm, "capabilities", None)
        self._warm = False
        self.svlm_calls = 0
        self.svlm_wall_s = 0.0
        self.engine_wall_s = 0.0

    # -- setup ---------------------------------------------------------------------------------

    def latencies(self, spec: str) -> dict:
        if spec not in self._latency_cache:
            src: LatencySource = parse_latency(spec)
            arrays = src.latencies(self.streams, self.trace)
            check_latency_arrays(arrays, self.streams, src.spec)
            self._latency_cache[spec] = (arrays, src.describe())
        return self._latency_cache[spec]

    def latency_info(self) -> dict:
        return {k: v[1] for k, v in self._latency_cache.items()}

    def _run_state(self, spec: Run, need_svlm: bool = True) -> RunState:
        strategy = spec.make(self.cfg)
        needs = strategy.needs
        if need_svlm and needs.svlm and self.svlm is None:
            raise DatasetError(f"strategy '{spec.strategy}' runs the SVLM on every frame: give --svlm")
        if needs.trace and self.trace is None:
            raise DatasetError(f"strategy '{spec.strategy}' replays the LVLM: give --trace (from `edgevlm-eval record`)")
        if need_svlm and needs.logprobs and self.caps is not None and not self.caps.logprobs:
            raise DatasetError(f"{spec.strategy} needs the SVLM's token probabilities, and this SVLM "
                               "adapter does not report them (capabilities.logprobs is false)")
        arrays = self.latencies(spec.latency or self.cfg.latency)[0] if needs.trace else None
        run = RunState(spec, strategy, [])
        for s in self.streams:
            lat = arrays[s.id] if arrays is not None else [0.0] * len(s)
            st = StreamState(run, s, lat, self.trace)
            strategy.setup(st)
            run.states.append(st)
        return run

    def _image_error(self, st: StreamState, t: int) -> str | None:
        if not self.cfg.check_images:
            return None
        for p in st.frames[t].images:
            r = self._image_cache.get(p, 0)
            if r == 0:
                r = self._image_cache[p] = check_image(p)
            if r:
                return r
        return None

    # -- one frame -----------------------------------------------------------------------------

    def _history(self, st: StreamState, t: int, s_T: float, strat: Strategy, build: bool):
        """(entries, log rows, j_L, lag, vfm source) for frame t (method.md §3, CRM)."""
        H = self.cfg.H
        if H <= 0 or strat.history is None:
            return (), [], None, None, None
        crm = strat.history == "crm"
        s, reuse_at, svlm_ok, img_err = st.s, st.reuse_at, st.svlm_ok, st.img_err
        now = s_T + EPS
        jL = -1
        if crm:
            j = st.j_star
            if j >= 0 and s_T - s[j] <= self.cfg.delta + EPS:
                jL = j
        need = H - 1 if jL >= 0 else H
        picks = []
        j = t - 1
        stop = max(-1, t - H - LOOKBACK - 1)
        while j > stop and len(picks) < need:
            if j != jL and img_err[j] is None and (svlm_ok[j] or reuse_at[j] <= now):
                picks.append(j)
            j -= 1
        order = picks[::-1]
        if jL >= 0:
            order.insert(0, jL)  # the cloud feedback is always the farthest entry (paper §4.1.3)
        entries, rows = [], []
        newest_lvlm = -1
        texts = self._texts
        frames = st.frames
        for j in order:
            from_lvlm = reuse_at[j] <= now
            labels = st.lvlm_labels[j] if from_lvlm else st.svlm_labels[j]
            age = s_T - s[j]
            if from_lvlm and j > newest_lvlm:
                newest_lvlm = j
            source = "lvlm" if from_lvlm else "svlm"
            f = frames[j]
            rows.append([f.index, source, age])
            if build:
                key = (crm, age, labels)
                text = texts.get(key)
                if text is None:
                    text = texts[key] = self._entry_text(crm, age, labels)
                entries.append(_entry(f.images, text, "snippet" if crm else "turn", "" if crm else f.query, f.index,
                                      source, age))
        if newest_lvlm < 0:
            return entries, rows, None, None, None
        # VFM works on j_L's image; with CRM and no fresh j_L (a stale LVLM answer can still sit among
        # the H newest frames) there is no focus source
        src = (jL if jL >= 0 else None) if crm else newest_lvlm
        return (entries, rows, st.frames[newest_lvlm].index, t - newest_lvlm,
                (order.index(src), src) if src is not None else None)

    def _entry_text(self, crm: bool, age: float, labels: tuple[str, ...]) -> str:
        task = self.task
        if crm:
            return task.history_snippet(age, labels)  # the task's wording, one home for it
        return task.label_space.render(labels, task.empty_answer)

    def _focus(self, st: StreamState, src, fr) -> tuple[Focus | None, dict | None]:
        """VFM (method.md §3) as the strategy asks (`fr`, a FocusRequest): GGVR keeps the tokens of
        the LVLM entry's image under its largest ROI per category; GRVR re-weights the current
        frame's tokens by those ROIs' features."""
        if fr is None or src is None:
            return None, None
        idx, j = src
        cached = st.rois.get((j, idx))
        if cached is not None:  # the same source entry as for an earlier frame (common: j_L changes slowly)
            rois, info = cached
            if info is not None:
                return None, info  # not applied: the same (never mutated) record
        else:
            rec = st.recs[j]
            rois = largest_per_label(rec.rois) if rec is not None else ()
            info = None
            if not rois:
                info = {"source": st.frames[j].index, "entry": idx, "rois": 0, "ggvr": fr.ggvr, "grvr": fr.grvr,
                        "applied": False, "reason": "no ROI (image kept whole, tokens unchanged)"}
            elif self.caps is None or not self.caps.token_focus:
                info = {"source": st.frames[j].index, "entry": idx, "rois": len(rois), "ggvr": fr.ggvr,
                        "grvr": fr.grvr, "applied": False, "reason": "SVLM adapter cannot apply token focus"}
            st.rois[(j, idx)] = (rois, info)
            if info is not None:
                return None, info
        info = {"source": st.frames[j].index, "entry": idx, "rois": len(rois), "ggvr": fr.ggvr, "grvr": fr.grvr}
        focus = Focus(prune={idx: rois} if fr.ggvr else {}, reweight_source=idx if fr.grvr else None,
                      reweight_rois=rois if fr.grvr else (), alpha=fr.alpha, mu=fr.mu)
        info["applied"] = None  # filled from the reply
        return focus, info

    def _pre(self, run: RunState, st: StreamState, t: int, logged: FrameLine | None) -> _Pending:
        t0 = time.perf_counter()
        strat = run.strategy
        s_T = st.s[t]
        heap = st.heap
        if heap and heap[0][0] <= s_T + EPS:
            st.advance_clock(s_T)
        in_flight, j_star = len(heap), st.j_star
        if logged is not None:
            err = logged.detail if logged.invalid == "image" else None
        else:
            err = self._image_error(st, t) if self.cfg.check_images else None
        st.img_err[t] = err
        if err is not None:
            p = _Pending(st, t, s_T, False, "image_error", in_flight, j_star, None, [], None, None, None, 0.0, logged)
        else:
            upload, why = strat.decide(st, t, s_T)
            req, entries, rows, jL, lag, vfm = None, (), [], None, None, None
            if strat.needs.svlm:
                entries, rows, jL, lag, src = self._history(st, t, s_T, strat, build=logged is None)
                focus, vfm = self._focus(st, src, run.focus)
                if logged is None:
                    f = st.frames[t]
                    req = object.__new__(Request)  # as _entry: skip the frozen-dataclass __init__
                    req.__dict__.update(id=f"{run.rid}|{st.sid}|{f.index}", images=f.images, query=f.query,
                                        history=tuple(entries), focus=focus, grounding=False, max_new_tokens=None)
            p = _Pending(st, t, s_T, upload, why, in_flight, j_star, req, rows, jL, lag, vfm, 0.0, logged)
        p.engine_s = time.perf_counter() - t0
        return p

    def _post(self, run: RunState, p: _Pending, reply: Reply | None, share_s: float) -> FrameLine:
        t0 = time.perf_counter()
        st, t, s_T, strat, spec = p.st, p.t, p.s_T, run.strategy, run.spec
        cfg = self.cfg
        f = st.frames[t]
        logged = p.logged
        svlm = None
        svlm_valid, svlm_reason, e, conf = False, None, 0.0, None
        if p.why == "image_error":
            upload, why = False, "image_error"
        else:
            if strat.needs.svlm:
                if logged is not None:
                    svlm = logged.svlm
                    labels = tuple(svlm.labels)
                    ok, e, conf = svlm.ok, svlm.e_s, svlm.conf
                else:
                    ok = reply.ok
                    labels, unmapped = self.parse(reply.text) if ok else ((), ())
                    e = cfg.edge.seconds(st.sid, f.index, reply, share_s)
                    conf = confidence(reply.token_probs, reply.answer_token_probs)
                    svlm = SvlmOut(ok, reply.error, reply.text, list(labels), list(unmapped), e, conf,
                                   [reply.visual_tokens, reply.visual_tokens_kept]
                                   if reply.visual_tokens is not None else None, reply.error_kind,
                                   _answer_probs(reply) if ok else None)
                st.svlm_ok[t] = ok
                st.svlm_labels[t] = labels
                if not ok:
                    svlm_reason = "svlm_error"
                elif not cfg.edge_fast and e > cfg.tau + EPS:
                    svlm_reason = "svlm_late"
                else:
                    svlm_valid = True
            if strat.decides_after_svlm:
                # built from the logged values only, so that resume recomputes the same decision
                prev = _prev_labels(st.svlm_ok[t - 1], st.svlm_labels[t - 1]) \
                    if t > 0 and st.img_err[t - 1] is None else None
                ap = tuple(svlm.answer_probs) if svlm.answer_probs is not None else None
                upload, why = strat.decide_after(st, t, SvlmResult(ok, svlm.text, labels, conf, e, ap, prev,
                                                                   tuple(f.images)))
            else:
                upload, why = p.upload, p.why
        if logged is not None and (logged.upload != upload or logged.why != why):
            raise DatasetError(f"per-frame log disagrees with this run at run {spec.run_id!r} stream {st.sid!r} "
                               f"frame {f.index}: logged upload={logged.upload} ({logged.why}), recomputed "
                               f"{upload} ({why}); the log was written with other settings (use a new --output-dir "
                               f"or --overwrite)")
        lat = sent = arrival = None
        in_time = lvlm_ok = False
        rec = None
        if upload:
            rec = st.lvlm(t)
            lvlm_ok = rec.ok
            lat = st.L[t]
            sent = strat.sent_at(s_T, e)
            arrival = sent + lat
            in_time = arrival - s_T <= cfg.tau + EPS
            st.register_upload(t, sent, arrival)
        if p.why == "image_error":
            out, reason = "invalid", "image"
        else:
            out, reason = strat.output(upload, in_time, lvlm_ok, svlm_valid, svlm_reason)
            if upload:
                st.reuse_at[t] = strat.reuse_at(out, lvlm_ok, arrival)
        if logged is not None:
            line = logged
        else:
            pred = (list(rec.labels) if out == "lvlm" else svlm.labels) if out != "invalid" else None
            detail = st.img_err[t] if reason == "image" else (svlm.error if reason == "svlm_error" else
                                                              (rec.error if reason == "lvlm_error" else None))
            if p.vfm is not None and reply is not None and p.vfm.get("applied") is None:
                p.vfm["applied"] = bool(reply.focus_applied) if reply.ok else False
                if reply.focus_applied:
                    p.vfm["adapter"] = reply.focus_applied
            line = FrameLine(
                run.rid, st.sid, f.index, s_T, f.scored, list(f.labels), upload, why, p.in_flight,
                f.index - t + p.j_star if p.j_star >= 0 else None, lat, sent, arrival, in_time if upload else None,
                svlm, LvlmOut(rec.ok, list(rec.labels), list(rec.unmapped), rec.error, rec.error_kind)
                if rec is not None else None, out, pred, reason, detail, p.history, p.j_L, p.lag, p.vfm,
                p.engine_s + (time.perf_counter() - t0), share_s if p.request is not None else None)
            if self.log is not None:
                self.log.write(line)
        if self.keep_lines:
            self.lines.append(line)
        return line

    # -- the loop ------------------------------------------------------------------------------

    def run(self, specs: Sequence[Run], progress: Callable[[int], None] | None = None) -> list[FrameLine]:
        ids = [s.run_id for s in specs]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise DatasetError(f"run ids must be unique within one invocation, repeated: {dup}")
        runs = [self._run_state(sp) for sp in specs]
        n_steps = max((len(s) for s in self.streams), default=0)
        done = self.done
        svlm = self.svlm
        bs = self.cfg.batch_size
        for k in range(n_steps):
            pending: list[_Pending] = []
            finished = 0
            for run in runs:
                rid = run.spec.run_id
                for st in run.states:
                    if k >= st.n:
                        continue
                    logged = done.get((rid, st.sid, st.frames[k].index)) if done else None
                    p = self._pre(run, st, k, logged)
                    if p.request is not None:
                        pending.append(p)
                    else:
                        self._post(run, p, None, 0.0)
                        finished += 1
            if pending:
                reqs = [p.request for p in pending]
                replies: list[Reply] = []
                chunks = [reqs] if not bs else [reqs[i:i + bs] for i in range(0, len(reqs), bs)]
                if self.cfg.edge.measured and not self._warm:
                    svlm.generate(reqs[:1])  # warm-up: first calls pay for lazy set-up, not for the answer
                    self._warm = True
                shares = []
                for ch in chunks:
                    w0 = time.perf_counter()
                    out = svlm.generate(ch)
                    wall = time.perf_counter() - w0
                    self.svlm_calls += 1
                    self.svlm_wall_s += wall
                    if len(out) != len(ch):
                        raise DatasetError(f"SVLM adapter returned {len(out)} replies for {len(ch)} requests")
                    replies.extend(out)
                    shares.extend([wall / len(ch)] * len(ch))
                for p, r, sh in zip(pending, replies, shares):
                    self._post(p.st.run, p, r, sh)
                finished += len(pending)
            if self.log is not None:
                self.log.flush()
            if progress:
                progress(finished)
        return self.lines


def load_done(lines: Iterable[FrameLine]) -> dict:
    """(run, stream, frame) -> logged line, for resuming."""
    return {ln.key: ln for ln in lines}
