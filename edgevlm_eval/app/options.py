"""The main command's configuration: one frozen `RunConfig`, built once.

Every option is declared once here (`OPTIONS`: flag, default, parser, help), and the same parser
checks a value whether it comes from the command line or from `--engine-config` YAML, so a bad
value fails the same way, before anything expensive (conversion, recording, replay) starts.
Precedence: defaults < --engine-config YAML < flags given on the command line (a flag given on the
command line wins even when its value equals the default).

Strategies: `--strategy S[,S...]` (repeatable) where S is a built-in name, `module:Class` or
`file.py:Class`, optionally with knobs: `--strategy edgevlm:K_call=2,K_delay=4,parallel`. A
segment `k=v` after a strategy belongs to that strategy; `name=ID` sets its run id. The old knob
flags (`--K-call 3`, `--theta 0.9`, ...) set that knob for every strategy that has it.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from edgevlm_eval.collab.edge import parse_edge_latency
from edgevlm_eval.collab.latency import parse_latency, parse_uplink
from edgevlm_eval.collab.protocols import PROTOCOLS
from edgevlm_eval.collab.search import parse_target
from edgevlm_eval.collab.strategies import BUILTIN
from edgevlm_eval.collab.strategies import DEFAULT as DEFAULT_STRATEGY
from edgevlm_eval.core.errors import ConfigError, nearest
from edgevlm_eval.core.yamlfile import read_yaml_mapping

ALL = "all"


# ---------------------------------------------------------------------------------------------
# value parsers: each takes a string (command line) or a YAML value, returns the value or raises
# ConfigError(key=<the option>)


def _num(v, key: str) -> float:
    if isinstance(v, bool):
        raise ConfigError(f"expected a number, got {v!r}", key=key)
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"expected a number, got {v!r}", key=key) from None
    if math.isnan(x):
        raise ConfigError(f"expected a number, got {v!r}", key=key)
    return x


def positive_float(v, key):
    x = _num(v, key)
    if not 0 < x < math.inf:
        raise ConfigError(f"expected a finite number > 0, got {v!r}", key=key)
    return x


def nonneg_float(v, key):
    x = _num(v, key)
    if not 0 <= x < math.inf:
        raise ConfigError(f"expected a finite number >= 0, got {v!r}", key=key)
    return x


def fraction(v, key):
    x = _num(v, key)
    if not 0 <= x <= 1:
        raise ConfigError(f"expected a fraction in [0, 1], got {v!r}", key=key)
    return x


def _int(v, key) -> int:
    if isinstance(v, bool):
        raise ConfigError(f"expected an integer, got {v!r}", key=key)
    try:
        x = float(v) if not isinstance(v, int) else v
    except (TypeError, ValueError):
        raise ConfigError(f"expected an integer, got {v!r}", key=key) from None
    if isinstance(x, float) and (not x.is_integer() or math.isinf(x)):
        raise ConfigError(f"expected an integer, got {v!r}", key=key)
    return int(x)


def nonneg_int(v, key):
    x = _int(v, key)
    if x < 0:
        raise ConfigError(f"expected an integer >= 0, got {v!r}", key=key)
    return x


def positive_int(v, key):
    x = _int(v, key)
    if x < 1:
        raise ConfigError(f"expected an integer >= 1, got {v!r}", key=key)
    return x


def k_delay(v, key):
    if str(v).strip().lower() in ("inf", "infinity", "off", "none"):
        return math.inf
    x = _num(v, key)
    if x < 0:
        raise ConfigError(f"expected a number >= 0 or 'inf', got {v!r}", key=key)
    return x


def boolean(v, key):
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("true", "yes", "on", "1"):
        return True
    if s in ("false", "no", "off", "0"):
        return False
    raise ConfigError(f"expected true or false, got {v!r}", key=key)


def text(v, key):
    if v is None or isinstance(v, (dict, list)):
        raise ConfigError(f"expected text, got {v!r}", key=key)
    return str(v)


def run_name(v, key):
    s = text(v, key).strip()
    if not s or s in (".", "..") or "/" in s or "\\" in s:
        raise ConfigError(f"expected a folder name (no '/'), got {v!r}", key=key)
    return s


def choice(*values):
    def parse(v, key):
        s = text(v, key)
        if s not in values:
            raise ConfigError(f"expected one of {', '.join(values)}, got {v!r}", key=key)
        return s
    return parse


def _checked(parse):
    """An option whose value is a spec string, checked by parsing it (the parser raises ConfigError
    naming what is wrong: an unknown kind, a bad number, a missing file) before anything runs."""
    def check(v, key):
        s = text(v, key).strip()
        parse(s)
        return s
    return check


latency_spec = _checked(parse_latency)
uplink_spec = _checked(parse_uplink)
edge_spec = _checked(lambda s: s == "declared" or parse_edge_latency(s))
target_spec = _checked(parse_target)


def existing_file(v, key):
    s = text(v, key)
    if not Path(s).expanduser().is_file():
        raise ConfigError(f"file not found: {s}", key=key)
    return s


# ---------------------------------------------------------------------------------------------
# the option table


@dataclass(frozen=True)
class Option:
    dest: str
    flags: tuple[str, ...]
    parse: Callable[[Any, str], Any] | None  # None: a switch (store_true / BooleanOptional)
    default: Any
    help: str
    metavar: str | None = None
    switch: str = ""  # "true" (store_true), "false" (store_false), "both" (--x/--no-x)
    yaml: bool = True  # settable in --engine-config
    knob: str | None = None  # a strategy knob this flag sets for every strategy that has it
    hidden_value: Any = None  # for switches that set a knob to a value (laecips_strict -> fallback False)

    @property
    def key(self) -> str:
        return self.flags[0]


def _protocols():

    return PROTOCOLS


ENGINE_OPTIONS: tuple[Option, ...] = (
    Option("strategy", ("--strategy",), None, None, "strategies to run (repeatable): built-in names "
           "(svlm_only, lvlm_only, distributed_vlm, parallel, laecips, laecips-clf, adas, edgevlm), 'all', module:Class or "
           "file.py:Class, each with optional knobs: edgevlm:K_call=2,K_delay=4 (default: edgevlm)", "S[,S...]"),
    Option("protocol", ("--protocol",), lambda v, k: choice(*_protocols())(v, k), None,
           "run one of the paper's experiments instead of --strategy: main (Table 2), ablation (Table 5), "
           "call-sweep (Table 1), delay", "P"),
    Option("trace", ("--trace",), existing_file, None, "LVLM trace from `edgevlm-eval record` (default: record "
           "the --lvlm's trace once into the output folder)", "F.jsonl"),
    Option("latency", ("--latency",), latency_spec, "measured",
           "LVLM latency: measured | fixed:D | paper-5g[:seed=N] | lognormal:median=M,sigma=S,rho=R,seed=N | "
           "file:F.csv | network:MAHIMAHI[,bytes=B,download=S,offset=S,server=S] (docs/latency.md)", "SPEC"),
    Option("uplink", ("--uplink",), uplink_spec, None, "uplink for Distributed VLM's feature upload: Mbps or a "
           "Mahimahi trace (default: the latency source's own, if any)", "MBPS|FILE"),
    Option("tau", ("--tau",), positive_float, 1.0, "deadline after capture, seconds", "S"),
    Option("delta", ("--delta",), nonneg_float, 10.0, "CRM staleness bound, seconds", "S"),
    Option("H", ("--H",), nonneg_int, 2, "history frames given to the SVLM", "N"),
    Option("edge_latency", ("--edge-latency",), edge_spec, "declared",
           "SVLM latency per answer: declared (the model entry's figure) | fixed:S | file:F.csv | measured "
           "(timed here, one request at a time: depends on this machine)", "SPEC"),
    Option("edge_fast", ("--edge-fast",), None, False, "assume the edge meets the deadline (an SVLM answer is "
           "never invalid for lateness)", switch="true"),
    Option("image_check", ("--no-image-check",), None, True, "do not decode frame images before use (a bad "
           "image then fails in the adapter)", switch="false"),
    Option("batch_size", ("--batch-size",), positive_int, None, "max SVLM requests per call (default: all "
           "streams x runs of a step)", "N"),
    Option("target_lcr", ("--target-lcr",), target_spec, None, "tune each strategy's call-ratio knob to this "
           "LVLM call ratio: a fraction (0.25), a band (0.20-0.30), or percent with a sign (25%, 20-30%)", "R|LO-HI"),
    Option("run_name", ("--run-name",), run_name, None, "run folder name (default: the protocol or the "
           "strategies)", "NAME"),
    Option("resume", ("--resume",), None, False, "continue the run in the run folder (also the default when its "
           "configuration matches)", switch="true", yaml=False),
    Option("overwrite", ("--overwrite",), None, False, "start over, deleting this run folder's log and results "
           "(only this pairing's folder)", switch="true", yaml=False),
    Option("rescore", ("--rescore",), None, False, "recompute results.json from the run folder's per-frame log, "
           "without any model", switch="true", yaml=False),
    Option("plots", ("--plots",), None, True, "write the run's figures (PNG) to its folder's plots/",
           switch="both"),
    Option("bootstrap", ("--bootstrap",), nonneg_int, 0, "confidence intervals of every metric and the LCR from "
           "N bootstrap resamples of the streams (0 = none; 1000 is usual)", "N"),
    Option("bootstrap_seed", ("--bootstrap-seed",), _int, 0, "seed of the resampling", "N"),
    Option("keep_failed", ("--keep-failed",), None, False, "do not re-ask the LVLM frames whose reply failed "
           "(default: a run re-asks them)", switch="true"),
    Option("allow_failed_trace", ("--allow-failed-trace",), None, False, "score a trace with more failed "
           "frames than --max-failed (the run still exits non-zero)", switch="true"),
    Option("max_failed", ("--max-failed",), fraction, 0.05, "largest share of failed LVLM frames a trace may "
           "have to be scored", "F"),
    Option("macro_f1_labels", ("--macro-f1-labels",), lambda v, k: choice("gt", "union", "all")(v, k), None,
           "the labels Macro-F1 averages over: gt (present in the ground truth), union (ground truth or "
           "predicted: a hallucinated class costs), all (the task's whole label space) (default: the task's "
           "macro_f1_label_set, union unless it says)", "SET"),
    Option("concurrency", ("--concurrency",), positive_int, 4, "parallel requests when recording with an "
           "adapter that does not batch", "N"),
    Option("record_batch_size", ("--record-batch-size",), positive_int, 8, "LVLM requests per call when "
           "recording with a batched local adapter", "N"),
    # knobs of the built-in strategies, for every strategy that has them
    Option("K_call", ("--K-call",), nonneg_int, None, "keyframe rule: skip T when the newest arrived reply is "
           "from T-i, i <= N (0 = off)", "N", knob="K_call"),
    Option("K_delay", ("--K-delay",), k_delay, None, "keyframe rule: skip T when N uploads are in flight "
           "('inf' = off)", "N", knob="K_delay"),
    Option("crm", ("--crm",), None, None, "Context Replacement", switch="both", knob="crm"),
    Option("ggvr", ("--ggvr",), None, None, "grounding-guided token pruning of the LVLM history image",
           switch="both", knob="ggvr"),
    Option("grvr", ("--grvr",), None, None, "grounding-retrieved re-weighting of the current frame's tokens",
           switch="both", knob="grvr"),
    Option("alpha", ("--alpha",), fraction, None, "GRVR alpha", "X", knob="alpha"),
    Option("mu", ("--mu",), lambda v, k: _num(v, k), None, "GRVR mu, b = 1 - mu/2", "X", knob="mu"),
    Option("theta", ("--theta",), lambda v, k: _num(v, k), None, "LAECIPS confidence threshold", "X",
           knob="theta"),
    Option("laecips_strict", ("--laecips-strict",), None, None, "a late LVLM answer makes the frame invalid "
           "(sets laecips_fallback=false; default: the SVLM answer stands)", switch="true", knob="laecips_fallback", hidden_value=False),
    Option("kappa", ("--kappa",), nonneg_float, None, "ADAS proxy: upload when predicted latency <= kappa*tau",
           "X", knob="kappa"),
    Option("adas_beta", ("--adas-beta",), fraction, None, "ADAS proxy EWMA weight", "X", knob="adas_beta"),
    Option("dvlm_tokens", ("--dvlm-tokens",), positive_int, None, "Distributed VLM visual tokens",
           knob="dvlm_tokens"),
    Option("dvlm_hidden", ("--dvlm-hidden",), positive_int, None, "Distributed VLM hidden size",
           knob="dvlm_hidden"),
    Option("dvlm_bytes_per_value", ("--dvlm-bytes",), positive_int, None, "bytes per feature value",
           knob="dvlm_bytes_per_value"),
    Option("dvlm_edge_encoder_s", ("--dvlm-edge-encoder-s",), nonneg_float, None, "Distributed VLM: LVLM vision "
           "encoder time on the edge, seconds", "S",
           knob="dvlm_edge_encoder_s"),
    Option("dvlm_cloud_encoder_s", ("--dvlm-cloud-encoder-s",), nonneg_float, None, "Distributed VLM: vision "
           "encoder time saved on the cloud, seconds", "S",
           knob="dvlm_cloud_encoder_s"),
)
OPTION_BY_DEST = {o.dest: o for o in ENGINE_OPTIONS}
KNOB_OPTIONS = {o.dest: o for o in ENGINE_OPTIONS if o.knob}


def _knob_help(knob: str, switch_sets: bool = False) -> str:
    """' (edgevlm, parallel; default 3)': which built-in strategies have the knob, and its default
    there (the strategies' Knobs classes are the one home of knob defaults). `switch_sets`: the
    option is a switch that sets the knob to a value (--laecips-strict): the switch is off by
    default, and the knob's default is named."""

    has = [(name, cls.Knobs().to_json()[knob]) for name, cls in BUILTIN.items() if knob in cls.Knobs.names()]
    defaults = sorted({str(v) for _, v in has})
    if not has:
        return ""
    shown = f"default: off, {knob}={' / '.join(defaults)}" if switch_sets else f"default {' / '.join(defaults)}"
    return f" ({', '.join(n for n, _ in has)}; {shown})"


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """The engine's flags. Defaults are SUPPRESSed: the namespace holds only what was given."""
    g = p.add_argument_group("collaboration engine (docs/method.md)")
    for o in ENGINE_OPTIONS:
        shown = "" if o.default in (None, False) or o.switch else f" (default: {o.default})"
        if o.knob:
            shown = _knob_help(o.knob, switch_sets=o.hidden_value is not None)
        kw: dict[str, Any] = {"dest": o.dest, "default": argparse.SUPPRESS, "help": (o.help + shown).replace("%", "%%")}
        if o.switch == "true":
            g.add_argument(*o.flags, action="store_true", **kw)
        elif o.switch == "false":
            g.add_argument(*o.flags, action="store_false", **kw)
        elif o.switch == "both":
            g.add_argument(*o.flags, action=argparse.BooleanOptionalAction, **kw)
        elif o.dest == "strategy":
            g.add_argument(*o.flags, action="append", metavar=o.metavar, **kw)
        else:
            g.add_argument(*o.flags, metavar=o.metavar, **kw)
    g.add_argument("--engine-config", dest="engine_config", metavar="F.yaml", default=argparse.SUPPRESS,
                   help="YAML mapping of these options (names as above without '--', '-' or '_' alike, e.g. "
                        "`latency: fixed:3`, `K_call: 2`, `strategy: [edgevlm, parallel]`); flags given on the "
                        "command line win")


# ---------------------------------------------------------------------------------------------
# strategies on the command line


@dataclass(frozen=True)
class StrategyRequest:
    """One `--strategy` item: a reference and the knobs given for it."""

    ref: str
    knobs: tuple[tuple[str, str], ...] = ()
    name: str | None = None

    def to_json(self) -> str:
        tail = ",".join(f"{k}={v}" for k, v in self.knobs) + (f",name={self.name}" if self.name else "")
        return self.ref + (f":{tail.lstrip(',')}" if tail else "")


_KV = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")


def parse_strategy_arg(value: str) -> list[StrategyRequest]:
    """`edgevlm:K_call=2,K_delay=4,parallel` -> [edgevlm{K_call, K_delay}, parallel]."""
    out: list[list] = []
    for seg in str(value).split(","):
        seg = seg.strip()
        if not seg:
            continue
        m = _KV.match(seg)
        if m and ":" not in seg.split("=", 1)[0]:
            if not out:
                raise ConfigError(f"knob {seg!r} comes before any strategy in {value!r}", key="--strategy")
            out[-1][1].append((m.group(1), m.group(2).strip()))
            continue
        ref, tail = seg, ""
        head, sep, last = seg.rpartition(":")
        if sep and "=" in last:  # ref:knob=value
            ref, tail = head, last
        item = [ref.strip(), []]
        if tail:
            m = _KV.match(tail)
            if not m:
                raise ConfigError(f"expected knob=value after ':' in {seg!r}", key="--strategy")
            item[1].append((m.group(1), m.group(2).strip()))
        out.append(item)
    reqs = []
    for ref, kv in out:
        name = None
        knobs = []
        for k, v in kv:
            if k == "name":
                name = run_name(v, "--strategy name")
            else:
                knobs.append((k, v))
        reqs.append(StrategyRequest(ref, tuple(knobs), name))
    return reqs


# ---------------------------------------------------------------------------------------------
# the configuration


@dataclass(frozen=True)
class RunConfig:
    """Everything the main command was asked, resolved and checked once."""

    # what to evaluate
    task: str
    svlm: str | None = None
    lvlm: str | None = None
    data_root: str | None = None
    tasks_dir: tuple[str, ...] = ()
    models_dir: tuple[str, ...] = ()
    no_cache: bool = False
    limit: int | None = None
    max_frames: int | None = None
    output_dir: str = "runs"
    quiet: bool = False
    verbose: bool = False
    # the engine: values of ENGINE_OPTIONS (knob flags in `knobs`)
    strategies: tuple[StrategyRequest, ...] = (StrategyRequest(DEFAULT_STRATEGY),)
    all_strategies: bool = False
    knobs: tuple[tuple[str, Any], ...] = ()  # knob -> value for every strategy that has the knob
    protocol: str | None = None
    trace: str | None = None
    latency: str = "measured"
    uplink: str | None = None
    tau: float = 1.0
    delta: float = 10.0
    H: int = 2
    edge_latency: str = "declared"
    edge_fast: bool = False
    image_check: bool = True
    batch_size: int | None = None
    target_lcr: str | None = None
    run_name: str | None = None
    resume: bool = False
    overwrite: bool = False
    rescore: bool = False
    plots: bool = True
    bootstrap: int = 0
    bootstrap_seed: int = 0
    keep_failed: bool = False
    allow_failed_trace: bool = False
    max_failed: float = 0.05
    macro_f1_labels: str | None = None
    concurrency: int = 4
    record_batch_size: int = 8
    engine_config: str | None = None
    given: frozenset = field(default_factory=frozenset)  # engine options set by YAML or flags

    @property
    def knob_settings(self) -> dict[str, Any]:
        return dict(self.knobs)

    def to_json(self) -> dict:
        """The configuration as results and run.json record it (secrets are redacted by the writer)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("given", "knobs", "strategies",
                                                                                  "quiet", "verbose")}
        d["tasks_dir"] = list(self.tasks_dir)
        d["models_dir"] = list(self.models_dir)
        d["strategy"] = ALL if self.all_strategies else ",".join(s.to_json() for s in self.strategies)
        for k, v in self.knobs:
            d[k] = "inf" if v == math.inf else v
        return d


def _yaml_options(path: str) -> dict[str, Any]:
    data = read_yaml_mapping(Path(path).expanduser(), what="engine config", key="--engine-config")
    known = {o.dest.lower().replace("_", ""): o for o in ENGINE_OPTIONS if o.yaml}
    out = {}
    for key, value in data.items():
        norm = str(key).replace("-", "").replace("_", "").lower()
        o = known.get(norm)
        if o is None:
            names = sorted(o.dest for o in known.values())
            raise ConfigError(f"unknown engine option; nearest: {', '.join(nearest(str(key), names)[:3])}; "
                              f"known: {', '.join(names)}", path=str(path), key=str(key))
        try:
            out[o.dest] = _value(o, value, f"{key}")
        except ConfigError as e:
            raise ConfigError(str(e), path=str(path)) from None
    return out


def _value(o: Option, value, key: str):
    """A YAML or command-line value for option `o`, checked."""
    if o.dest == "strategy":
        items = value if isinstance(value, list) else [value]
        return [text(v, key) for v in items]
    if o.parse is None:
        v = boolean(value, key)
        return o.hidden_value if (o.hidden_value is not None and v) else (v if o.hidden_value is None else not v)
    return o.parse(value, key)


def build_config(args: argparse.Namespace) -> RunConfig:
    """RunConfig from parsed arguments: defaults < --engine-config YAML < explicit flags."""
    ns = vars(args)
    values: dict[str, Any] = {}
    yaml_path = ns.get("engine_config")
    if yaml_path:
        values.update(_yaml_options(yaml_path))
    for o in ENGINE_OPTIONS:
        if o.dest not in ns:
            continue
        raw = ns[o.dest]
        if o.parse is None:  # a switch: argparse gave the bool
            values[o.dest] = (o.hidden_value if raw else not o.hidden_value) if o.hidden_value is not None else raw
        elif o.dest == "strategy":
            values[o.dest] = list(raw)
        else:
            values[o.dest] = o.parse(raw, o.key)
    given = frozenset(values)
    kw: dict[str, Any] = {}
    knobs = {}
    for dest, v in values.items():
        o = OPTION_BY_DEST[dest]
        if o.knob:
            knobs[o.knob] = v
        elif dest != "strategy":
            kw[dest] = v
    strategies, all_strat = (StrategyRequest(DEFAULT_STRATEGY),), False
    if "strategy" in values:
        reqs = []
        for item in values["strategy"]:
            if str(item).strip() == ALL:
                all_strat = True
                continue
            reqs.extend(parse_strategy_arg(item))
        if all_strat and reqs:
            raise ConfigError("'all' runs every built-in strategy; give it alone", key="--strategy")
        if not all_strat and not reqs:
            raise ConfigError("no strategy given", key="--strategy")
        strategies = tuple(reqs)
    if kw.get("protocol") and "strategy" in values:
        raise ConfigError("--strategy and --protocol do not go together (a protocol runs the paper's own set of "
                          "strategies); run your strategy beside them with --strategy ... --target-lcr BAND",
                          key="--strategy")
    if kw.get("protocol") and kw.get("target_lcr"):
        raise ConfigError("--target-lcr and --protocol do not go together (main sets its own bands)",
                          key="--target-lcr")
    if kw.get("overwrite") and kw.get("resume"):
        raise ConfigError("--overwrite starts over and --resume continues: give one", key="--overwrite")
    return RunConfig(
        task=args.task, svlm=getattr(args, "svlm", None), lvlm=getattr(args, "lvlm", None),
        data_root=getattr(args, "data_root", None), tasks_dir=tuple(getattr(args, "tasks_dir", None) or ()),
        models_dir=tuple(getattr(args, "models_dir", None) or ()),
        no_cache=bool(getattr(args, "no_cache", False)), limit=getattr(args, "limit", None),
        max_frames=getattr(args, "max_frames", None), output_dir=getattr(args, "output_dir", "runs"),
        quiet=bool(getattr(args, "quiet", False)), verbose=bool(getattr(args, "verbose", False)),
        strategies=strategies, all_strategies=all_strat, knobs=tuple(sorted(knobs.items())),
        engine_config=yaml_path, given=given, **kw)

