"""The collaboration-strategy plug-in interface (docs/adding-a-strategy.md).

A strategy is one class. It declares
- its knobs: a frozen dataclass (subclass of `Knobs`) with defaults and `validate()`;
- what it needs (`Needs`): the LVLM trace, the SVLM, token probabilities, an uplink, token focus;
- how a target LVLM call ratio is reached (`LcrKnob`: which knob, which direction);
- how it is shown: `label`, `proxy` (reimplemented from a description, labelled so everywhere),
  `source` (where its rule comes from), `colour`, `reference` (the no-cloud reference run);
and makes its decisions through hooks the simulator calls for every frame of every stream:
`decide` (upload T at s_T?), `decide_after` (for strategies that decide after the SVLM answers),
`output` (LVLM answer, SVLM answer or invalid), `reuse_at` (when its LVLM answer may become history),
`history` (CRM snippets, the model's native turns, or none) and `focus` (Visual Focus on the SVLM).

The engine (simulator, search, results) knows strategies only through this interface; the
built-in ones live in `collab/strategies/`, one file each, and a user's loads by
`--strategy path/to/file.py:Class`, `--strategy package.module:Class` or the entry point group
`edgevlm_eval.strategies` of an installed package.

Comparisons use EPS so that boundaries written in the method as `<=` hold on float clocks
(a_j = s_T, L_T = tau, s_T - s_j = delta are all "in").
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from edgevlm_eval.core.errors import ConfigError

EPS = 1e-9
INF = math.inf
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


# ---------------------------------------------------------------------------------------------
# knobs


@dataclass(frozen=True)
class Knobs:
    """A strategy's knobs. Subclasses are frozen dataclasses with a default for every field and
    may override `validate()` (raise ConfigError naming the knob). Values given as text (command
    line, YAML) are converted by the field's type: int, float ('inf' allowed), bool, str."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(getattr(self, f.name), self._types()[f.name], f.name))
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError(key=<knob>) for a value outside its range."""

    @classmethod
    def _types(cls) -> dict[str, Any]:
        cached = cls.__dict__.get("_type_cache")
        if cached is None:
            cached = typing.get_type_hints(cls)
            setattr(cls, "_type_cache", cached)
        return cached

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "") -> "Knobs":
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            known = ", ".join(cls.names()) or "(none)"
            raise ConfigError(f"{where}unknown knob(s) {unknown}; known: {known}", key=unknown[0])
        try:
            return cls(**dict(values))
        except ConfigError as e:
            if not where:
                raise
            # name the strategy too (two strategies may share a knob name, K_delay), after the knob
            msg, pre = str(e), f"key '{e.key}': "
            if e.key and not e.path and msg.startswith(pre):
                msg = msg[len(pre):]
                raise ConfigError(f"{where}{msg}", key=e.key) from None
            raise ConfigError(f"{where}{msg}") from None

    def replace(self, **kw) -> "Knobs":
        return dataclasses.replace(self, **kw)

    def to_json(self) -> dict:
        return {f.name: _json_value(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def non_default(self) -> dict:
        """The knobs whose value differs from the class default (what a table's 'setting' shows)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.default is dataclasses.MISSING or v != f.default:
                out[f.name] = _json_value(v)
        return out


def _json_value(v):
    return "inf" if isinstance(v, float) and v == INF else v


def _coerce(value, typ, name: str):
    """`value` as the knob's declared type, or a ConfigError naming the knob."""
    base = typ
    origin = typing.get_origin(typ)
    if origin is typing.Union or (origin is not None and str(origin) == "types.UnionType"):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(typ)):
            return None
        base = args[0] if len(args) == 1 else typ
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise ValueError
        if base is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, str):
                value = value.strip()
            v = float(value) if not isinstance(value, int) else value
            if isinstance(v, float) and (not v.is_integer() or math.isinf(v)):
                raise ValueError
            return int(v)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
                return INF
            v = float(value)
            if math.isnan(v):
                raise ValueError
            return v
        if base is str:
            return str(value)
    except (TypeError, ValueError):
        tname = getattr(base, "__name__", str(base))
        raise ConfigError(f"expected {tname}{' (or inf)' if base is float else ''}, got {value!r}",
                          key=name) from None
    return value


# ---------------------------------------------------------------------------------------------
# declarations


@dataclass(frozen=True)
class Needs:
    """What a strategy needs from the run; the driver loads and checks only what some run needs."""

    trace: bool = True  # replays the LVLM's trace (its replies and latencies)
    svlm: bool = True  # runs the SVLM on every frame
    logprobs: bool = False  # reads the SVLM's per-token probabilities
    uplink: bool = False  # times uploads over an uplink (bandwidth)
    token_focus: bool = False  # asks the SVLM for Visual Focus (recorded as not applied when it cannot)
    # fits state on the task's calibration split before any scored run (`Strategy.calibrate`); a
    # task without one (no `calibration:` in its YAML) cannot serve the strategy
    calibration: bool = False


@dataclass(frozen=True)
class LcrKnob:
    """How `--target-lcr` (and the main protocol's bands) tune a strategy: the knob, and
    `direction` +1 when a larger value uploads more frames, -1 when it uploads fewer.

    - `values`: discrete candidates (tried in order); `widen`: another knob and its values, tried
      in turn while no candidate reaches the band (K_call first, then K_delay).
    - otherwise a continuous knob on [lo, hi]: a grid of `step`, then bisection.
    - `by_score`: the knob is a threshold on a per-frame score the strategy computes from the
      SVLM's reply (`Strategy.score`); the search reads the scores of a probe run (SVLM only on
      the same frames) instead of replaying decisions.
    Decisions of non-score knobs must depend on the clock and latencies only (never on the SVLM's
    answers), so the call ratio of a value is computed exactly without a model."""

    name: str
    direction: int = 1
    values: tuple = ()
    widen: tuple[str, tuple] | None = None
    lo: float = 0.0
    hi: float = 10.0
    step: float = 0.25
    by_score: bool = False


@dataclass(frozen=True)
class FocusRequest:
    """Visual Focus a strategy asks of the SVLM for the history entry holding j_L's image."""

    ggvr: bool = True
    grvr: bool = True
    alpha: float = 0.7
    mu: float = 1.0


@dataclass(frozen=True)
class SvlmResult:
    """What `decide_after` (and `score`) see of the SVLM's answer to frame T: what the edge knows
    before it decides. The simulator and the probe/calibration readers (`simulator.svlm_results`)
    build it from the same logged values, so a decision recomputed on resume is the same."""

    ok: bool
    text: str
    labels: tuple[str, ...]
    conf: float | None  # share of answer tokens whose top-1 probability exceeds 0.9 (None: no probabilities)
    e_s: float  # edge latency of the answer, seconds
    answer_probs: tuple[float, ...] | None = None  # top-1 probabilities of the answer's tokens (4 decimals)
    prev_labels: tuple[str, ...] | None = None  # the SVLM's labels of the stream's previous frame (None: none usable)
    images: tuple[str, ...] = ()  # the frame's image files (the edge has them)


# ---------------------------------------------------------------------------------------------
# the strategy


class Strategy:
    """Base class. Subclasses set the class attributes and override the hooks they need.

    Hooks get `st`, the stream's state under this run. `decide` and `on_arrival` may read only
    `st.j_star` (newest frame whose usable reply has arrived, -1 if none), `st.in_flight` (uploads
    not yet answered), `st.sent[j]` and `st.arrival[j]` of uploads, `st.s[t]` capture times, and
    `st.mine`, the per-stream scratch state that `new_stream_state()` returned: the call-ratio
    search replays them without a model on a lighter clock (collab/planner.py `StreamClock`) that
    holds only these. `setup` and `decide_after` get the simulator's `StreamState`, which also has
    `st.L[t]` latencies (a frame's latency is known only once its reply has arrived). Decisions are
    made at s_T from what has arrived by then (docs/adding-a-strategy.md)."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    proxy: ClassVar[bool] = False
    source: ClassVar[str] = ""
    colour: ClassVar[str | None] = None
    reference: ClassVar[bool] = False
    # how the paper's own reported rows filed under this strategy are shown (results/paper; the
    # leaderboard), when they cannot be told apart by the label: None = display_label()
    paper_label: ClassVar[str | None] = None
    order: ClassVar[int] = 100  # where a built-in comes in `--strategy all` and tables (references first)
    Knobs: ClassVar[type[Knobs]] = Knobs
    needs: ClassVar[Needs] = Needs()
    lcr_knob: ClassVar[LcrKnob | None] = None
    decides_after_svlm: ClassVar[bool] = False
    history: str | None = "native"  # "crm" (compressed snippets, LVLM entry farthest) | "native" | None
    # the state `calibrate` returned for this run's knobs (`needs.calibration`), set by `Run.make`
    calibration: dict | None = None

    def __init__(self, knobs: Knobs, cfg):
        if not isinstance(knobs, self.Knobs):
            raise TypeError(f"{self.name}: knobs must be {self.Knobs.__name__}, got {type(knobs).__name__}")
        self.knobs, self.cfg = knobs, cfg

    # -- display -------------------------------------------------------------------------------

    @classmethod
    def display_label(cls) -> str:
        base = cls.label or cls.name
        return f"{base} (proxy)" if cls.proxy else base

    @classmethod
    def variant(cls, knobs: Knobs) -> str:
        """A short tag for knobs that switch parts of the method off ('' = the whole strategy);
        tables show it after the label."""
        return ""

    @classmethod
    def setting(cls, knobs: Knobs) -> dict:
        """The knobs a table's 'setting' shows: the call-ratio knob(s) always, others when they
        differ from their defaults."""
        shown = knobs.non_default()
        lk = cls.lcr_knob
        always = [lk.name, *([lk.widen[0]] if lk.widen else [])] if lk else []
        full = knobs.to_json()
        return {**{k: full[k] for k in always if k in full}, **shown}

    # -- calibration (needs.calibration) -------------------------------------------------------

    @classmethod
    def calibration_key(cls, knobs: Knobs) -> str:
        """Runs whose keys are equal share one fitted state. Default: every knob but the call-ratio
        knob (the bands of the main protocol differ only in it)."""
        import json

        skip = {cls.lcr_knob.name} if cls.lcr_knob else set()
        return cls.name + json.dumps({k: v for k, v in knobs.to_json().items() if k not in skip}, sort_keys=True)

    @classmethod
    def calibrate(cls, lines: list, streams: list, task, knobs: Knobs) -> dict:
        """Fit the strategy's state on the calibration split: `lines` are the frame lines
        (core/records.py FrameLine) of an SVLM-only replay of the calibration `streams` (never
        scored; `simulator.svlm_results(lines, streams)` gives what `score` would see of each),
        `task` the TaskConfig. Returns JSON-able state; the pipeline stores it in the run folder
        (calibration.json, with the split's description under "split") and hands it to the
        strategy as `self.calibration`; resume and --rescore never refit."""
        raise NotImplementedError

    # -- per stream ----------------------------------------------------------------------------

    def new_stream_state(self) -> Any:
        """Per-stream scratch state (`st.mine`), e.g. a latency estimate."""
        return None

    def setup(self, st) -> None:
        """Per-stream preparation before frame 0 (e.g. Distributed VLM rewrites st.L)."""

    # -- decisions -----------------------------------------------------------------------------

    def decide(self, st, t: int, s_T: float) -> tuple[bool, str]:
        """Upload frame t? Decided at s_T, before the SVLM runs. Returns (upload, reason)."""
        return False, "never"

    def decide_after(self, st, t: int, svlm: SvlmResult) -> tuple[bool, str]:
        """For `decides_after_svlm` strategies: upload frame t, knowing the SVLM's answer?"""
        raise NotImplementedError

    def score(self, svlm: SvlmResult) -> float | None:
        """The per-frame score an `LcrKnob(by_score=True)` thresholds (see LcrKnob)."""
        raise NotImplementedError

    def sent_at(self, s_T: float, e: float) -> float:
        """When an upload of frame T leaves the edge (e: the SVLM's edge latency)."""
        return s_T

    def on_arrival(self, st, j: int, a: float) -> None:
        """Frame j's reply arrived at a (called when the clock passes a)."""

    def output(self, uploaded: bool, in_time: bool, lvlm_ok: bool, svlm_valid: bool,
               svlm_reason: str | None) -> tuple[str, str | None]:
        """(output source 'lvlm' | 'svlm' | 'invalid', invalid reason): the LVLM answer if in time,
        else the SVLM's."""
        if uploaded and in_time and lvlm_ok:
            return "lvlm", None
        if svlm_valid:
            return "svlm", None
        return "invalid", svlm_reason

    def reuse_at(self, output: str, lvlm_ok: bool, arrival: float) -> float:
        """When frame t's LVLM answer becomes usable as history (INF: never). Default: only an
        LVLM answer that was the frame's output, from its arrival (final outputs known at s_T)."""
        return arrival if output == "lvlm" else INF

    def focus(self) -> FocusRequest | None:
        """Visual Focus asked of the SVLM (None: none)."""
        return None


# ---------------------------------------------------------------------------------------------
# a run: a strategy with its knobs


@dataclass(frozen=True)
class Run:
    """One strategy with its knobs: a column of a results table. `latency` overrides the run's
    latency source for this run only (the delay protocol). `calibration`: the state the strategy's
    `calibrate` fitted (needs.calibration), handed to the strategy by `make`; not part of the run's
    identity (to_json), its summary is shown by `display`."""

    cls: type[Strategy]
    knobs: Knobs
    name: str | None = None
    latency: str | None = None
    calibration: dict | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.knobs, self.cls.Knobs):
            raise TypeError(f"{self.cls.name}: knobs must be {self.cls.Knobs.__name__}")

    @property
    def strategy(self) -> str:
        return self.cls.name

    @property
    def run_id(self) -> str:
        return self.name or self.cls.name

    def with_(self, **kw) -> "Run":
        """A copy with `name` / `latency` / `calibration` and knobs replaced."""
        own = {k: kw.pop(k) for k in ("name", "latency", "calibration") if k in kw}
        knobs = self.knobs.replace(**kw) if kw else self.knobs
        return dataclasses.replace(self, knobs=knobs, **own)

    def make(self, cfg) -> Strategy:
        s = self.cls(self.knobs, cfg)
        if self.calibration is not None:
            s.calibration = self.calibration
        return s

    def to_json(self) -> dict:
        d = {"strategy": self.cls.name, "run": self.run_id, **self.knobs.to_json()}
        if self.latency:
            d["latency"] = self.latency
        return d

    def display(self) -> dict:
        """How tables and plots show this run (written into run.json and results.json, so that
        readers never need the strategy's code)."""
        c = self.cls
        d = {"label": c.display_label(), "proxy": c.proxy, "source": c.source, "colour": c.colour,
             "reference": c.reference, "variant": c.variant(self.knobs), "setting": c.setting(self.knobs),
             "lcr_knob": c.lcr_knob.name if c.lcr_knob else None}
        if self.calibration is not None and isinstance(self.calibration.get("split"), dict):
            d["calibration"] = self.calibration["split"]  # which streams it was fitted on (never scored)
        return d
