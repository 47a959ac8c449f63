"""Core data types shared by tasks, collab and model adapters.

Small typed dataclasses at the boundaries: a converter produces `Stream`s of `Frame`s, the collab
engine turns frames into `Request`s, a model adapter answers with `Reply`s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class Box:
    """An axis-aligned box (ROI) in the frame's original pixels: (x1, y1) top-left, (x2, y2) bottom-right."""

    label: str
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)

    def to_list(self) -> list:
        return [self.label, self.x1, self.y1, self.x2, self.y2]

    @classmethod
    def from_list(cls, row: Sequence) -> "Box":
        label, x1, y1, x2, y2 = row
        return cls(str(label), float(x1), float(y1), float(x2), float(y2))


def largest_per_label(boxes: Sequence[Box]) -> tuple[Box, ...]:
    """Keep the largest box of each label (paper §3.3.1: 'the largest ROI is selected for each
    target category'), in order of first appearance of the label."""
    best: dict[str, Box] = {}
    for b in boxes:
        if b.label not in best or b.area > best[b.label].area:
            best[b.label] = b
    return tuple(best.values())


@dataclass(frozen=True)
class Frame:
    """One timestamped query on a stream: the unit every strategy answers.

    `images` are file paths, oldest first (IPN Hand sends the previous sampled frame and the
    current one). `labels` is the ground truth: a label set for multi-label tasks, one label for
    single-label tasks. `scored=False` frames stay in the stream (time and history flow through
    them) but are left out of the metrics, e.g. ACE frames whose ground truth is "none".
    """

    stream_id: str
    index: int
    timestamp_s: float
    images: tuple[str, ...]
    query: str
    labels: tuple[str, ...]
    boxes: tuple[Box, ...] = ()
    scored: bool = True
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        return (self.stream_id, self.index)

    def to_json(self) -> dict:
        d = {
            "stream": self.stream_id,
            "index": self.index,
            "timestamp_s": self.timestamp_s,
            "images": list(self.images),
            "query": self.query,
            "labels": list(self.labels),
        }
        if self.boxes:
            d["boxes"] = [b.to_list() for b in self.boxes]
        if not self.scored:
            d["scored"] = False
        if self.meta:
            d["meta"] = dict(self.meta)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Frame":
        return cls(
            stream_id=str(d["stream"]),
            index=int(d["index"]),
            timestamp_s=float(d["timestamp_s"]),
            images=tuple(d["images"]),
            query=str(d["query"]),
            labels=tuple(d["labels"]),
            boxes=tuple(Box.from_list(b) for b in d.get("boxes", ())),
            scored=bool(d.get("scored", True)),
            meta=dict(d.get("meta", {})),
        )


@dataclass
class Stream:
    """One video sampled at `fps`: frame t is captured at t / fps seconds (method.md §1)."""

    id: str
    task: str
    fps: float
    frames: list[Frame]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)


# ---------------------------------------------------------------------------------------------
# The model-adapter boundary: one message-based, batched call (docs/architecture.md, docs/models.md).


@dataclass(frozen=True)
class HistoryEntry:
    """One earlier frame given to the model as context.

    kind="snippet": CRM's compressed snippet (`text` is the whole snippet, e.g. "This is the image
    from 2 seconds ago; detected car, pedestrian.") shown after the entry's images.
    kind="turn": native multi-turn context: a user turn (images + `query`) and an assistant turn
    (`text`, the answer known at decision time).
    """

    images: tuple[str, ...]
    text: str
    kind: str = "snippet"
    query: str = ""
    frame_index: int | None = None
    source: str = "svlm"  # "lvlm" | "svlm" | "none"
    age_s: float | None = None

    def __post_init__(self):
        if self.kind not in ("snippet", "turn"):
            raise ValueError(f"HistoryEntry.kind must be 'snippet' or 'turn', got {self.kind!r}")


@dataclass(frozen=True)
class Focus:
    """Visual Focus requested for one request (method.md §3, VFM).

    The engine speaks in ROIs (original pixels); the adapter maps them onto its own token grid.
    - GGVR: `prune` maps a history-entry index to the ROIs whose tokens are kept in that entry's
      (last) image; all other tokens of that image are dropped.
    - GRVR: the ROIs `reweight_rois` on history entry `reweight_source` give category features
      that re-weight the current frame's tokens with `alpha`, `mu` (b = 1 - mu / 2).
    """

    prune: Mapping[int, tuple[Box, ...]] = field(default_factory=dict)
    reweight_source: int | None = None
    reweight_rois: tuple[Box, ...] = ()
    alpha: float = 0.7
    mu: float = 1.0

    @property
    def empty(self) -> bool:
        return not self.prune and (self.reweight_source is None or not self.reweight_rois)


@dataclass(frozen=True)
class Request:
    """One model call: the current frame's images and query, its history, optional focus."""

    id: str
    images: tuple[str, ...]
    query: str
    history: tuple[HistoryEntry, ...] = ()
    focus: Focus | None = None
    grounding: bool = False  # ask for <ROI>s too (the LVLM when recording a trace)
    max_new_tokens: int | None = None


# Why a reply failed, which decides what a caller does with it:
#   fatal      the endpoint refuses this client or cannot be reached (HTTP 400/401/403/404, bad key,
#              unknown model, unreachable host): nothing more will succeed; stop and say so
#   transient  retries exhausted on 429, 5xx, a timeout, a dropped connection, a malformed or empty
#              reply: the frame is re-asked on the next run
#   input      this request's own input is unusable (missing or corrupt image): the frame is
#              invalid, asking again would not help
ERROR_KINDS = ("fatal", "transient", "input")


@dataclass
class Reply:
    """A model's answer to one Request.

    `ok=False` marks an invalid reply (HTTP failure, timeout, unreadable image...) with `error`
    saying why; it scores as an empty prediction, it is never silently an empty answer.
    `error_kind` says what the caller should do about it (ERROR_KINDS).
    """

    text: str
    ok: bool = True
    error: str | None = None
    error_kind: str | None = None  # one of ERROR_KINDS when ok is False
    token_probs: list[float] | None = None  # per generated token, top-1 probability
    # the answer's tokens only (core/answer_span.py: no <think> reasoning, no box coordinates);
    # None when the adapter could not place them (then every generated token counts)
    answer_token_probs: list[float] | None = None
    rois: list[Box] = field(default_factory=list)
    visual_tokens: int | None = None  # before focus
    visual_tokens_kept: int | None = None  # after focus (GGVR)
    focus_applied: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: total, prefill, decode, queue, ...
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    raw_text: str | None = None  # the model's output before grounding parsing (text = the answer part)

    @classmethod
    def invalid(cls, error: str, kind: str = "transient", **timings: float) -> "Reply":
        if kind not in ERROR_KINDS:
            raise ValueError(f"Reply error kind must be one of {ERROR_KINDS}, got {kind!r}")
        return cls(text="", ok=False, error=error, error_kind=kind, timings=dict(timings))

    def to_json(self) -> dict:
        d = asdict(self)
        d["rois"] = [b.to_list() for b in self.rois]
        return d
