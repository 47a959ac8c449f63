"""Test doubles of the model-adapter interface: a scripted SVLM and a scripted LVLM.

They answer deterministically from the request (which frame, what history), so tests and the
benchmark can drive the engine without a model. Request ids are "...|stream|frame" (the
simulator's and the recorder's), which `frame_of` reads back.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

from edgevlm_eval.core.adapter import Adapter, Capabilities
from edgevlm_eval.core.taskconfig import task_from_dict
from edgevlm_eval.core.types import Box, Frame, Reply, Request, Stream

from .simulator import SimConfig, Simulator
from .trace import Trace, TraceRecord


def frame_of(req: Request) -> tuple[str, int]:
    parts = req.id.split("|")
    return parts[-2], int(parts[-1])


class ScriptedSVLM(Adapter):
    """Answers `answers[(stream, frame)]` (default `default`), or `fn(request)` when given.
    Keeps every request in `requests` (unless `keep=False`) so tests can inspect histories."""

    name = "scripted-svlm"

    def __init__(self, answers: Mapping[tuple[str, int], str] | None = None, *, default: str = "nothing",
                 fn: Callable[[Request], str] | None = None,
                 probs: Mapping[tuple[str, int], Sequence[float]] | None = None, default_prob: float = 0.5,
                 fail: Mapping[tuple[str, int], str] | None = None, token_focus: bool = False,
                 logprobs: bool = True, total_s: float | None = None, keep: bool = True):
        self.answers, self.default, self.fn = dict(answers or {}), default, fn
        self.probs, self.default_prob = dict(probs or {}), default_prob
        self.fail = dict(fail or {})
        self.capabilities = Capabilities(token_focus=token_focus, grounding=False, logprobs=logprobs)
        self.total_s, self.keep = total_s, keep
        self.requests: list[Request] = []
        self.calls = 0

    def generate(self, requests: Sequence[Request]) -> list[Reply]:
        self.calls += 1
        out = []
        for r in requests:
            if self.keep:
                self.requests.append(r)
            key = frame_of(r)
            if key in self.fail:
                out.append(Reply.invalid(self.fail[key]))
                continue
            text = self.fn(r) if self.fn else self.answers.get(key, self.default)
            rep = Reply(text=text, token_probs=list(self.probs.get(key, [self.default_prob])))
            if self.capabilities.token_focus and r.focus is not None and not r.focus.empty:
                rep.focus_applied = {"ggvr": bool(r.focus.prune), "grvr": r.focus.reweight_source is not None}
            if self.total_s is not None:
                rep.timings = {"total": self.total_s}
            out.append(rep)
        return out


class InstantSVLM(Adapter):
    """The cheapest possible SVLM: one fixed reply object for every request (benchmarks)."""

    name = "instant-svlm"
    capabilities = Capabilities(logprobs=True)

    def __init__(self, text: str = "car, pedestrian"):
        self.reply = Reply(text=text, token_probs=[0.95, 0.5])

    def generate(self, requests):
        r = self.reply
        return [r] * len(requests)


class ScriptedLVLM(Adapter):
    """For `record`: answers[(stream, frame)] = (text, [Box...]) and optional per-frame
    inference seconds reported in timings (the recorder measures wall time itself)."""

    name = "scripted-lvlm"

    def __init__(self, answers: Mapping[tuple[str, int], tuple[str, Sequence[Box]]] | None = None, *,
                 default: str = "nothing", fail: Mapping[tuple[str, int], str] | None = None,
                 inference_s: float | None = None, sleep_s: float = 0.0):
        self.answers, self.default = dict(answers or {}), default
        self.fail = dict(fail or {})
        self.capabilities = Capabilities(grounding=True)
        self.inference_s, self.sleep_s = inference_s, sleep_s
        self.calls: list[list[str]] = []

    def generate(self, requests):
        self.calls.append([r.id for r in requests])
        if self.sleep_s:
            time.sleep(self.sleep_s)
        out = []
        for r in requests:
            key = frame_of(r)
            if key in self.fail:
                out.append(Reply.invalid(self.fail[key]))
                continue
            text, rois = self.answers.get(key, (self.default, ()))
            rep = Reply(text=text, rois=list(rois))
            if self.inference_s is not None:
                rep.timings = {"inference": self.inference_s}
            out.append(rep)
        return out


# ---------------------------------------------------------------------------------------------
# Tiny tasks, streams and traces built in memory (tests, benchmark)

TOY_LABELS = ["car", "pedestrian", "truck", "traffic cone"]


def toy_task(fps: float = 1.0, multi_label: bool = True, labels: Sequence[str] = TOY_LABELS, name: str = "toy"):

    return task_from_dict({
        "name": name, "converter": "generic", "dataset": {"required": False}, "fps": fps,
        "query_template": "Which of these appear? {labels}",
        "label_space": {"multi_label": multi_label, "labels": list(labels)},
        "history_template": "This is the image from {d} seconds ago; detected {answer}.",
        "metrics": ["micro_f1", "macro_f1", "exact_match"] if multi_label else ["accuracy"],
    })


def toy_streams(task, n_streams: int = 1, n_frames: int = 10, truth: Callable[[str, int], Sequence[str]] | None = None,
                image_dir: str = "img", scored: Callable[[str, int], bool] | None = None):
    """Streams s0, s1, ... of n_frames frames at the task's fps; image paths are not created."""

    out = []
    for k in range(n_streams):
        sid = f"s{k}"
        frames = [Frame(stream_id=sid, index=t, timestamp_s=t / task.fps, images=(f"{image_dir}/{sid}/{t}.jpg",),
                        query=task.query, labels=tuple(truth(sid, t) if truth else ("car",)),
                        scored=scored(sid, t) if scored else True)
                  for t in range(n_frames)]
        out.append(Stream(id=sid, task=task.name, fps=task.fps, frames=frames))
    return out


def toy_trace(streams, latency: Callable[[str, int], float] | float = 0.5,
              answer: Callable[[str, int], str] | str = "car", rois: Callable[[str, int], Sequence[Box]] | None = None,
              ok: Callable[[str, int], bool] | None = None, task: str = "toy", model: str = "scripted-lvlm",
              image_bytes: int | None = 100_000):
    """An in-memory Trace (labels parsed later by Trace.reparse)."""

    tr = Trace(header={"format": "edgevlm-eval.trace/1", "task": task, "model": model})
    for s in streams:
        for f in s.frames:
            lat = latency(s.id, f.index) if callable(latency) else latency
            ans = answer(s.id, f.index) if callable(answer) else answer
            good = ok(s.id, f.index) if ok else True
            tr.records[(s.id, f.index)] = TraceRecord(
                stream=s.id, frame=f.index, answer=ans if good else "", ok=good,
                error=None if good else "HTTP 500", total_s=lat,
                rois=tuple(rois(s.id, f.index)) if rois else (), image_bytes=image_bytes)
    return tr


def replay(task, streams, trace, svlm, specs, **cfg_kw):
    """Run the simulator in memory (no log); returns {run id: {stream: [line, ...]}} in frame order."""

    cfg_kw.setdefault("check_images", False)
    cfg_kw.setdefault("edge_latency", 0.1)
    if trace is not None:
        trace.reparse(task.label_space)
    sim = Simulator(task, streams, trace, svlm, SimConfig(**cfg_kw))
    lines = sim.run(specs)
    out: dict = {}
    for ln in lines:
        out.setdefault(ln.run, {}).setdefault(ln.stream, []).append(ln)
    for runs in out.values():
        for ls in runs.values():
            ls.sort(key=lambda ln: ln.frame)
    return out
