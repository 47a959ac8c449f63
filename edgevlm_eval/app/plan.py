"""`edgevlm-eval plan`: the keyframe policy without any model, in seconds (paper Table 1's shape).

The keyframe rule's LVLM call ratio (LCR) and history lag (LHL) depend only on the latency process,
so they can be replayed for a task's streams, or for a dataset's shape, before any model runs:

    edgevlm-eval plan --streams 156 --frames 20 --fps 1 --latency paper-5g --K-call 1-9 --K-delay 4 --seeds 5
    edgevlm-eval plan --task demo --latency paper-5g --K-call 1,3,5 --json plan.json

One row per K_call: LCR, LHL in seconds and in frames, the in-time share (uploads with L_T <= tau)
and the mean number of uploads in flight at decision time, each averaged over the latency seeds
(± their standard deviation). The replay is collab/planner.py, the engine's own rule and clock.
"""

from __future__ import annotations

import argparse
import math

from edgevlm_eval.app.args import add_tasks_dir_arg
from edgevlm_eval.app.console import console as make_console
from edgevlm_eval.app.data import load_from_args
from edgevlm_eval.collab.latency import check_latency_arrays, parse_latency
from edgevlm_eval.collab.planner import (
    parse_k_calls,
    parse_k_delay,
    plan_table,
    synthetic_streams,
)
from edgevlm_eval.collab.trace import read_trace
from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.core.io import atomic_write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("streams (one of)")
    g.add_argument("--task", metavar="T", help="a task's streams (count, lengths, timestamps); a seed then "
                                               "changes only the latency")
    g.add_argument("--streams", type=int, metavar="N", help="N synthetic streams (with --frames and --fps)")
    g.add_argument("--frames", type=int, metavar="M", help="frames per synthetic stream")
    g.add_argument("--fps", type=float, metavar="F", help="frame rate of the synthetic streams")
    g.add_argument("--data-root", dest="data_root", metavar="R", help="dataset root of --task (default: its env var)")
    add_tasks_dir_arg(g)
    g.add_argument("--no-cache", dest="no_cache", action="store_true", help="convert --task's dataset again")
    g.add_argument("--limit", type=int, metavar="N", help="only the first N streams of --task")
    g.add_argument("--max-frames", dest="max_frames", type=int, metavar="N", help="only the first N frames of each")
    k = p.add_argument_group("policy and latency")
    k.add_argument("--latency", required=True, metavar="SPEC",
                   help="latency source: paper-5g[:seed=N] | paper-5g-2img | paper-5g-short | 5g | fixed:D | "
                        "lognormal:... | measured/file:/network: (with --trace); see docs/latency.md")
    k.add_argument("--trace", metavar="F.jsonl", help="LVLM trace: the latencies of measured/file/network sources, "
                                                      "and which replies were unusable (with --task)")
    k.add_argument("--K-call", dest="K_call", default="1-9", metavar="R",
                   help="K_call values: a range 1-9, a list 1,3,5 or one value (default 1-9)")
    k.add_argument("--K-delay", dest="K_delay", default="4", metavar="D", help="K_delay, an integer or inf (default 4)")
    k.add_argument("--seeds", type=int, default=5, metavar="K",
                   help="latency draws to average, seeds N..N+K-1 of a seeded source (default 5)")
    k.add_argument("--tau", type=float, default=1.0, help="deadline in seconds (default 1)")
    k.add_argument("--delta", type=float, default=10.0, help="CRM staleness bound in seconds (default 10)")
    k.add_argument("--H", type=int, default=2, help="history frames (default 2)")
    p.add_argument("--json", dest="json_out", metavar="OUT.json", help="also write the rows as a JSON list")


def _finite(v, key: str, *, low: float, strict: bool) -> float:
    ok = isinstance(v, (int, float)) and math.isfinite(v) and (v > low if strict else v >= low)
    if not ok:
        raise ConfigError(f"must be a finite number {'>' if strict else '>='} {low:g}, got {v!r}", key=key)
    return float(v)


def _streams(args):
    """(streams, trace or None) from --task or the synthetic shape."""

    synthetic = (args.streams, args.frames, args.fps)
    if args.task:
        if any(v is not None for v in synthetic):
            raise ConfigError("give either --task or --streams/--frames/--fps, not both", key="--task")

        for key, v in (("--limit", args.limit), ("--max-frames", args.max_frames)):
            if v is not None and v < 1:
                raise ConfigError(f"must be >= 1, got {v}", key=key)
        task, streams, _ = load_from_args(args)
        trace = None
        if args.trace:
            trace = read_trace(args.trace)
            trace.check_covers(streams, task.name)
        return f"{task.name}: {len(streams)} streams, {sum(len(s) for s in streams)} frames", streams, trace
    if any(v is None for v in synthetic):
        raise ConfigError("give --task T, or all of --streams N --frames M --fps F", key="--streams")
    if args.trace:
        raise ConfigError("--trace needs --task (its streams are the trace's)", key="--trace")
    streams = synthetic_streams(args.streams, args.frames, args.fps)
    return f"{args.streams} streams x {args.frames} frames at {args.fps:g} FPS", streams, None


def run_plan(args) -> tuple[str, list, list[str]]:
    """(what was planned, PlanRows, notes) for parsed arguments; every check before any work."""

    K_calls = parse_k_calls(args.K_call)
    K_delay = parse_k_delay(args.K_delay)
    if isinstance(args.seeds, bool) or args.seeds < 1:
        raise ConfigError(f"must be an integer >= 1, got {args.seeds}", key="--seeds")
    tau = _finite(args.tau, "--tau", low=0.0, strict=True)
    delta = args.delta
    if not (delta >= 0):  # inf is allowed: no staleness bound
        raise ConfigError(f"must be a number of seconds >= 0 (or inf), got {delta!r}", key="--delta")
    if args.H < 0:
        raise ConfigError(f"must be >= 0, got {args.H}", key="--H")
    base = parse_latency(args.latency)  # a bad spec fails here, before any stream is loaded
    what, streams, trace = _streams(args)
    notes = []
    if hasattr(base, "with_seed"):
        sources = [base.with_seed(base.seed + i) for i in range(args.seeds)]
    else:
        sources = [base]
        if args.seeds > 1:
            notes.append(f"latency source {base.spec!r} has no seed: one draw, not {args.seeds}")
    ok = None
    if trace is not None:
        ok = [[(r is None or r.ok) for r in (trace.records.get((s.id, f.index)) for f in s.frames)] for s in streams]
    times = [[f.timestamp_s for f in s.frames] for s in streams]
    draws = []
    for src in sources:
        arrays = src.latencies(streams, trace)
        check_latency_arrays(arrays, streams, src.spec)
        draws.append((getattr(src, "seed", None), [arrays[s.id] for s in streams]))
    rows = plan_table(times, draws, K_calls, K_delay, tau=tau, delta=delta, H=args.H, ok=ok)
    return what, rows, notes


def main(args) -> int:
    from rich.markup import escape
    from rich.table import Table

    what, rows, notes = run_plan(args)
    n_seeds = len(rows[0].seeds) if rows else 0

    def cell(r, key: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
        v = getattr(r, key)
        if v is None:
            return "-"
        out = fmt.format(scale * v)
        if n_seeds > 1:
            out += " ± " + fmt.format(scale * r.spread.get(key, 0.0))
        return out

    table = Table(title=escape(f"keyframe policy without a model: {what}, latency {args.latency}"),
                  caption=escape(f"tau {args.tau:g} s, delta {args.delta:g} s, H {args.H}; mean over {n_seeds} "
                                 f"latency draw(s)" + (" ± their standard deviation" if n_seeds > 1 else "") +
                                 "; in time: uploads with L_T <= tau; in flight: P_T at decision time"),
                  caption_justify="left")
    for h in ("K_call", "K_delay", "LCR (%)", "LHL (s)", "LHL (frames)", "in time (%)", "in flight"):
        table.add_column(h, justify="right")
    for r in rows:
        table.add_row(str(r.K_call), "inf" if r.K_delay == math.inf else f"{r.K_delay:g}",
                      cell(r, "lcr", 100, "{:.1f}"), cell(r, "lhl_s"), cell(r, "lhl_frames"),
                      cell(r, "in_time_share", 100, "{:.1f}"), cell(r, "in_flight_mean"))
    con = make_console()
    con.print(table)
    for n in notes:
        con.print(f"[yellow]{escape(n)}[/yellow]")
    if args.json_out:
        atomic_write_json(args.json_out, [{**r.to_json(), "latency": args.latency, "tau": args.tau,
                                           "delta": args.delta, "H": args.H} for r in rows])
        print(f"wrote {args.json_out}")
    return 0
