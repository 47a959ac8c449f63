"""Plots of results (matplotlib, PNG and SVG).

Two layers:
- plot functions that take plain data (lists / dicts) and write `<stem>.png` and `<stem>.svg`:
  `plot_metric_vs_lcr` (the Table 2 comparison as a Pareto picture), `plot_sweep` (Table 1 /
  Fig. 5: LCR, LHL and metric against K_call or K_delay), `plot_metric_vs_delay` (the latency
  study, fixed delay d) and `plot_latency_trace` (Fig. 4: per-frame LVLM latency with the tau line);
- thin adapters that read results files (through `edgevlm_eval.app.leaderboard.load_rows`, the one
  results reader) and LVLM traces, and the `edgevlm-eval plot` command.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas, never through
pyplot, so plotting touches no global backend state and works headless. Files have an exact
pixel size (width x height at `dpi`): no tight bounding box, which would change it.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from edgevlm_eval.app.console import console as make_console
from edgevlm_eval.app.leaderboard import (
    PAPER_SOURCE,
    comparable_groups,
    is_trace_file,
    knob_text,
    load_rows,
)
from edgevlm_eval.collab.trace import read_trace
from edgevlm_eval.core.errors import DatasetError, EdgeVLMError
from edgevlm_eval.core.metrics import metric_label

FORMATS = ("png", "svg")
KINDS = ("lcr", "sweep", "delay", "latency")

# Colours for series whose strategy declares none (a strategy's class sets its own `colour`).
_EXTRA = ["#8c564b", "#e377c2", "#bcbd22", "#393b79", "#637939", "#843c39", "#7b4173"]
PAPER = "reported in the paper"


@dataclass(frozen=True)
class Size:
    """Figure size in pixels (PNG) at `dpi`; the SVG has the same size in points * dpi/72."""

    width: int = 800
    height: int = 560
    dpi: int = 100


def _colour(series: str, declared: str | None, seen: dict[str, str]) -> str:
    """The strategy's declared colour; a variant (edgeVLM[CRM]) or a strategy without one gets the
    next of _EXTRA, the same for the same series within a figure."""
    if declared and "[" not in series:
        return declared
    if series not in seen:
        seen[series] = _EXTRA[len(seen) % len(_EXTRA)]
    return seen[series]


def _figure(size: Size, nrows: int = 1, sharex: bool = False):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size.width / size.dpi, size.height / size.dpi), dpi=size.dpi, layout="constrained")
    axes = fig.subplots(nrows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


def _save(fig, out: str | Path, size: Size, formats: Sequence[str] = FORMATS) -> list[Path]:
    import matplotlib

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown figure format {fmt!r}; known: {', '.join(FORMATS)}")
        p = out.with_name(out.name + "." + fmt)
        # No Date / Software stamps and a fixed SVG id salt: the same data gives the same file.
        meta = {"Date": None} if fmt == "svg" else {"Software": None}
        with matplotlib.rc_context({"svg.hashsalt": "edgevlm-eval"}):
            fig.savefig(p, format=fmt, dpi=size.dpi, metadata=meta)
        paths.append(p)
    return paths


def _pct(v):
    return None if v is None else 100.0 * float(v)


# ---------------------------------------------------------------------------------------------
# plot functions on plain data


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (lcr, value) points no other point beats: none has lower-or-equal LCR and a higher
    value. Sorted by LCR."""
    best = -math.inf
    front = []
    for lcr, val in sorted(points, key=lambda p: (p[0], -p[1])):
        if val > best:
            front.append((lcr, val))
            best = val
    return front


def plot_metric_vs_lcr(points: Sequence[Mapping], metric: str, out: str | Path, *, title: str | None = None,
                       size: Size = Size(), formats: Sequence[str] = FORMATS) -> list[Path]:
    """Metric against LVLM call ratio, one colour per strategy; points of one strategy are joined
    in LCR order; the Pareto front over reproduced points is a dashed step line; paper numbers are
    hollow markers.

    points: [{"strategy", "lcr" (fraction), "value" (fraction), optional "colour", "lo"/"hi" (the value's CI),
              optional "lcr_lo"/"lcr_hi" (the LCR's CI, horizontal bars),
              optional "source" ("reported in the paper" for paper numbers)}]."""
    fig, (ax,) = _figure(size)
    extra: dict[str, str] = {}
    by_series: dict[tuple[str, bool], list[Mapping]] = defaultdict(list)
    for p in points:
        if p.get("lcr") is None or p.get("value") is None:
            continue
        by_series[(p["strategy"], p.get("source") == PAPER)].append(p)
    for (strategy, paper), pts in sorted(by_series.items()):
        pts = sorted(pts, key=lambda p: p["lcr"])
        x = [_pct(p["lcr"]) for p in pts]
        y = [_pct(p["value"]) for p in pts]
        c = _colour(strategy, pts[0].get("colour"), extra)
        label = strategy + (" (paper)" if paper else "")
        style = dict(color=c, marker="o", markersize=7, label=label,
                     markerfacecolor="none" if paper else c, linestyle=":" if paper else "-", linewidth=1.2)
        ax.plot(x, y, **style)
        for axis, centre, key_lo, key_hi in (("y", y, "lo", "hi"), ("x", x, "lcr_lo", "lcr_hi")):
            lo = [p.get(key_lo) for p in pts]
            hi = [p.get(key_hi) for p in pts]
            if any(v is not None for v in lo + hi):
                err = [[(v - _pct(l)) if l is not None else 0 for v, l in zip(centre, lo)],
                       [(_pct(h) - v) if h is not None else 0 for v, h in zip(centre, hi)]]
                ax.errorbar(x, y, **{f"{axis}err": err}, fmt="none", ecolor=c, capsize=3, linewidth=1)
    own = [(p["lcr"], p["value"]) for (s, paper), pts in by_series.items() if not paper for p in pts]
    front = pareto_front(own or [(p["lcr"], p["value"]) for pts in by_series.values() for p in pts])
    if len(front) > 1:
        ax.step([_pct(a) for a, _ in front], [_pct(b) for _, b in front], where="post", color="black",
                linestyle="--", linewidth=0.8, alpha=0.6, label="Pareto front")
    ax.set_xlabel("LVLM call ratio LCR (%)")
    ax.set_ylabel(f"{metric_label(metric)} (%)")
    ax.set_xlim(-3, 103)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"{metric_label(metric)} against LVLM call ratio")
    if by_series:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, out, size, formats)


def plot_sweep(knob: str, rows: Sequence[Mapping], out: str | Path, *, metrics: Sequence[str] = (),
               reference: Mapping[str, float] | None = None, title: str | None = None, size: Size = Size(800, 800),
               formats: Sequence[str] = FORMATS) -> list[Path]:
    """A knob sweep (Table 1 / Fig. 5): LCR, LHL (frames) and metrics against the knob.

    rows: [{"knob": value, "lcr": fraction, "lhl": frames or None, "metrics": {name: fraction},
            optional "series": name (e.g. "reproduced" / "paper")}];
    reference: {metric: SVLM-only value}, drawn as dashed horizontal lines."""
    fig, axes = _figure(size, nrows=3, sharex=True)
    series: dict[str, list[Mapping]] = defaultdict(list)
    for r in rows:
        series[str(r.get("series") or "")].append(r)
    for si, (name, rs) in enumerate(sorted(series.items())):
        rs = sorted(rs, key=lambda r: float(r["knob"]))
        x = [float(r["knob"]) for r in rs]
        mk = dict(marker="os^v"[si % 4], linestyle="-" if si == 0 else ":",
                  markerfacecolor="none" if name.startswith("paper") else None)
        suffix = f" ({name})" if name else ""
        def line(ax, ys, **kw):
            pts = [(a, b) for a, b in zip(x, ys) if b is not None]  # a missing value is a gap, not a zero
            if pts:
                ax.plot([a for a, _ in pts], [b for _, b in pts], label=kw.pop("label") + suffix, **kw, **mk)

        line(axes[0], [_pct(r.get("lcr")) for r in rs], color="#1f77b4", label="LCR")
        line(axes[1], [r.get("lhl") for r in rs], color="#ff7f0e", label="LHL")
        for mi, m in enumerate(metrics):
            line(axes[2], [_pct((r.get("metrics") or {}).get(m)) for r in rs],
                 color=_EXTRA[mi % len(_EXTRA)] if mi else "#d62728", label=metric_label(m))
    for mi, m in enumerate(metrics):
        if reference and reference.get(m) is not None:
            axes[2].axhline(_pct(reference[m]), color=_EXTRA[mi % len(_EXTRA)] if mi else "#d62728",
                            linestyle="--", linewidth=0.8, alpha=0.7, label=f"{metric_label(m)} (SVLM only)")
    for ax, what in ((axes[1], "LHL"), (axes[2], "metric")):
        if not ax.get_lines():
            ax.text(0.5, 0.5, f"no {what} values in these results", transform=ax.transAxes, ha="center",
                    va="center", color="gray")
    axes[0].set_ylabel("LCR (%)")
    axes[1].set_ylabel("LHL (frames)")
    axes[2].set_ylabel("metric (%)")
    axes[2].set_xlabel(knob)
    from matplotlib.ticker import MaxNLocator

    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))  # knobs are integers (frames, requests)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    axes[0].set_title(title or f"{knob} sweep")
    return _save(fig, out, size, formats)


def plot_metric_vs_delay(series: Mapping[str, Sequence[tuple[float, float]]], metric: str, out: str | Path, *,
                         tau: float | None = None, reference: Mapping[str, float] | None = None,
                         colours: Mapping[str, str | None] | None = None, title: str | None = None,
                         size: Size = Size(), formats: Sequence[str] = FORMATS) -> list[Path]:
    """Metric against a fixed LVLM delay d (seconds), one line per strategy.

    series: {strategy: [(d_seconds, value fraction), ...]}; reference: {name: value} of runs
    that do not depend on d (SVLM only), drawn as horizontal lines; colours: {name: colour}."""
    fig, (ax,) = _figure(size)
    extra: dict[str, str] = {}
    colours = colours or {}
    for name, v in sorted((reference or {}).items()):
        ax.axhline(_pct(v), color=_colour(name, colours.get(name), extra), linestyle="--", linewidth=0.8,
                   label=f"{name}")
    for strategy, pts in sorted(series.items()):
        pts = sorted(p for p in pts if p[1] is not None)
        if pts:
            ax.plot([d for d, _ in pts], [_pct(v) for _, v in pts], marker="o",
                    color=_colour(strategy, colours.get(strategy), extra), label=strategy)
    if tau is not None:
        ax.axvline(tau, color="black", linestyle="--", linewidth=0.8, label=f"tau = {tau:g} s")
    ax.set_xlabel("fixed LVLM delay d (s)")
    ax.set_ylabel(f"{metric_label(metric)} (%)")
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"{metric_label(metric)} against LVLM delay")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, out, size, formats)


def plot_latency_trace(series: Mapping[str, Sequence[tuple[float, float]]], out: str | Path, *,
                       tau: float | None = 1.0, title: str | None = None, size: Size = Size(1000, 400),
                       formats: Sequence[str] = FORMATS) -> list[Path]:
    """Per-frame LVLM latency over capture time (Fig. 4), one line per stream, with the deadline
    tau as a horizontal line; frames above it would be late for a real-time answer.

    series: {stream id: [(capture time s_t in seconds, latency L_t in seconds), ...]}."""
    fig, (ax,) = _figure(size)
    n_late = n_all = 0
    for i, (sid, pts) in enumerate(sorted(series.items())):
        pts = sorted(pts)
        ax.plot([t for t, _ in pts], [v for _, v in pts], marker=".", linewidth=1, color=_EXTRA[i % len(_EXTRA)]
                if len(series) > 1 else "#1f77b4", label=sid)
        n_all += len(pts)
        if tau is not None:
            n_late += sum(v > tau for _, v in pts)
    if tau is not None:
        ax.axhline(tau, color="#d62728", linestyle="--", linewidth=1,
                   label=f"tau = {tau:g} s ({n_late} of {n_all} replies late)")
    ax.set_xlabel("capture time (s)")
    ax.set_ylabel("LVLM latency (s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "LVLM latency per frame")
    if len(series) <= 10 or tau is not None:
        ax.legend(fontsize=8, loc="upper right")
    return _save(fig, out, size, formats)


# ---------------------------------------------------------------------------------------------
# adapters: results rows / traces -> plain data


def _labeller(rows: list, task: str):
    """Series name of a row: its strategy, plus its pairing when the task's rows hold several
    pairings (points of different pairings must not be joined into one line)."""
    several = len({r.pairing for r in rows if r.task == task and r.source != PAPER}) > 1
    return lambda r: f"{r.strategy_label} ({r.pairing})" if several and r.source != PAPER else r.strategy_label


def lcr_points(rows: Iterable, task: str, metric: str) -> list[dict]:
    """Points for `plot_metric_vs_lcr` from leaderboard rows of one task (fixed-delay rows left out:
    they are a different latency setting)."""
    rows = list(rows)
    name = _labeller(rows, task)
    pts = []
    for r in rows:
        if r.task != task or r.lcr is None or r.metrics.get(metric) is None or "delay_s" in r.params:
            continue
        lo, hi = (r.ci.get(metric) or (None, None))
        lcr_lo, lcr_hi = (r.ci.get("lcr") or (None, None))
        pts.append({"strategy": name(r), "colour": r.colour, "lcr": r.lcr, "value": r.metrics[metric], "lo": lo, "hi": hi,
                    "lcr_lo": lcr_lo, "lcr_hi": lcr_hi, "source": r.source})
    return pts


def sweep_knobs(rows: Iterable, task: str) -> list[str]:
    """Numeric knobs of `task`'s rows that take several values within one strategy (a sweep)."""
    vals: dict[tuple[str, str], set] = defaultdict(set)
    for r in rows:
        if r.task != task or r.variant or "delay_s" in r.params:
            continue
        for k, v in r.params.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals[(r.strategy, k)].add(float(v))
    return sorted({k for (_, k), vs in vals.items() if len({v for v in vs if math.isfinite(v)}) > 1})


def sweep_rows(rows: Iterable, task: str, knob: str) -> list[dict]:
    """Rows for `plot_sweep`: the rows of `task` whose params set `knob`, every other knob held
    fixed (a K_call sweep at K_delay 4 is not joined to one at K_delay 2); paper rows are their own
    series; only series where the knob actually varies are a sweep."""
    rows = list(rows)
    several = len({r.pairing for r in rows if r.task == task and r.source != PAPER}) > 1
    varying = set(sweep_knobs(rows, task))  # the other knobs worth naming in a series
    series: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r.task != task or knob not in r.params or "delay_s" in r.params or r.variant:
            continue
        try:
            k = float(r.params[knob])
        except (TypeError, ValueError):
            continue
        if not math.isfinite(k) or isinstance(r.params[knob], bool):  # inf (rule off) has no place on the axis
            continue
        held = ", ".join(f"{o}={knob_text(v)}" for o, v in sorted(r.params.items()) if o != knob and o in varying)
        who = r.origin if r.source == PAPER else ("reproduced" + (f" {r.pairing}" if several else ""))
        name = f"{r.strategy_label}: {who}" + (f", {held}" if held else "")
        fixed = json.dumps({o: v for o, v in r.params.items() if o != knob}, sort_keys=True, default=str)
        series[(name, fixed)].append({"knob": k, "lcr": r.lcr, "lhl": r.lhl, "metrics": dict(r.metrics),
                                      "series": name})
    return [row for rs in series.values() if len({x["knob"] for x in rs}) > 1 for row in rs]


def reference_values(rows: Iterable, task: str) -> dict[str, float]:
    """{metric: value} of a reproduced reference run (the strategy that declares itself the
    no-cloud reference: SVLM only) of `task`, for the sweep and delay figures (the paper's Fig. 5
    shows edgeVLM's gain over it)."""
    for r in rows:
        if r.task == task and r.reference and r.source != PAPER:
            return {m: v for m, v in r.metrics.items() if v is not None}
    return {}


def reference_label(rows: Iterable, task: str) -> str:
    return next((r.strategy_label for r in rows if r.task == task and r.reference and r.source != PAPER), "reference")


def delay_series(rows: Iterable, task: str, metric: str) -> dict[str, list[tuple[float, float]]]:
    """{strategy: [(d, value)]} for `plot_metric_vs_delay` from rows run at a fixed delay d."""
    rows = list(rows)
    name = _labeller(rows, task)
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if r.task == task and "delay_s" in r.params and r.metrics.get(metric) is not None:
            out[name(r)].append((float(r.params["delay_s"]), r.metrics[metric]))
    return dict(out)


def latency_series(trace_path: str | Path, *, streams: Sequence[str] | None = None, max_streams: int = 1,
                   fps: float | None = None) -> tuple[dict[str, list[tuple[float, float]]], dict]:
    """{stream: [(s_t, L_t)]} from an LVLM trace file, and its header. Capture time is
    frame / fps (fps from the argument, else the trace header, else 1)."""

    trace = read_trace(trace_path)
    fps = float(fps or trace.header.get("fps") or 1.0)
    by_stream: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (sid, frame), rec in trace.records.items():
        by_stream[sid].append((frame / fps, rec.total_s))
    wanted = list(streams) if streams else sorted(by_stream)[:max_streams]
    missing = [s for s in wanted if s not in by_stream]
    if missing:
        raise DatasetError(f"trace has no stream(s) {missing}; it has {sorted(by_stream)[:10]}"
                           f"{' ...' if len(by_stream) > 10 else ''}", path=str(trace_path))
    return {s: sorted(by_stream[s]) for s in wanted}, trace.header


def _slug(*parts: str) -> str:
    return "_".join("".join(ch if ch.isalnum() or ch in "-._" else "-" for ch in str(p)) for p in parts if p)


def plot_results(paths: Sequence[str | Path], out_dir: str | Path, *, kinds: Sequence[str] = KINDS,
                 task: str | None = None, metric: str | None = None, trace: str | Path | None = None,
                 streams: Sequence[str] | None = None, tau: float | None = None, size: Size | None = None,
                 formats: Sequence[str] = FORMATS, include_paper: bool = True,
                 allow_mixed: bool = False) -> list[Path]:
    """Every figure of `kinds` that the results in `paths` have data for; returns the files.

    Runs go into one figure only when the leaderboard would rank them together (same toolkit
    version, task data, evaluation settings and LVLM trace): otherwise a LeaderboardError names
    what differs, and with `allow_mixed` each compatible group gets its own figures (`_A`, `_B`,
    ... after the name), the paper's numbers drawn in each."""

    out_dir = Path(out_dir)
    trace_files = [Path(p) for p in paths if is_trace_file(p)]
    result_paths = [p for p in paths if not is_trace_file(p)]
    rows = load_rows(result_paths) if result_paths else []
    if not include_paper:
        rows = [r for r in rows if r.source != PAPER_SOURCE]
    tasks = sorted({r.task for r in rows}) if task is None else [task]
    written: list[Path] = []
    kw = {"formats": formats, **({"size": size} if size else {})}
    for t in tasks:
        trows = [r for r in rows if r.task == t]
        groups, _ = comparable_groups(trows, t, allow_mixed=allow_mixed)
        if len(groups) > 1:
            paper = [r for r in trows if r.is_paper]
            parts = [(chr(ord("A") + i), [*g, *paper]) for i, g in enumerate(groups)]
        else:
            parts = [("", trows)]
        for suffix, prows in parts:
            written += _task_figures(prows, t, kinds, metric, out_dir, suffix, tau, kw)
    if "latency" in kinds:
        if trace is not None:
            trace_files.append(Path(trace))
        if not trace_files:  # a results file names the trace it was replayed on
            trace_files = sorted({p for r in rows if r.task in tasks and (p := _trace_of(r)) is not None})
        run_taus = {r.tau for r in rows if r.tau is not None and r.source != PAPER_SOURCE}
        for tf in trace_files:
            series, header = latency_series(tf, streams=streams)
            # the deadline: --tau, else the runs' tau when they agree, else the trace's, else 1 s (paper)
            tau_ = tau if tau is not None else (next(iter(run_taus)) if len(run_taus) == 1
                                                else float(header.get("tau_s") or 1.0))
            name = header.get("task") or tf.stem
            written += plot_latency_trace(series, out_dir / _slug("latency", tf.stem), tau=tau_,
                                          title=f"{name}: LVLM latency per frame ({header.get('model', '')})",
                                          **kw)
    return written


def _task_figures(trows, t: str, kinds, metric, out_dir: Path, suffix: str, tau, kw) -> list[Path]:
    """The lcr / sweep / delay figures of one task's (compatible) rows."""
    written: list[Path] = []
    metrics = [metric] if metric else _task_metrics(trows)
    title_tail = f" (group {suffix})" if suffix else ""
    if "lcr" in kinds:
        for m in metrics:
            pts = lcr_points(trows, t, m)
            if pts:
                written += plot_metric_vs_lcr(pts, m, out_dir / _slug("lcr", t, m, suffix),
                                              title=f"{t}: {metric_label(m)} against LVLM call ratio{title_tail}",
                                              **kw)
    if "sweep" in kinds:
        for knob in sweep_knobs(trows, t):
            sr = sweep_rows(trows, t, knob)
            if len(sr) > 1:
                written += plot_sweep(knob, sr, out_dir / _slug("sweep", t, knob, suffix), metrics=metrics,
                                      reference=reference_values(trows, t),
                                      title=f"{t}: {knob} sweep{title_tail}", **kw)
    if "delay" in kinds:
        for m in metrics:
            ds = delay_series(trows, t, m)
            if ds:
                name = _labeller(trows, t)
                colours = {name(r): r.colour for r in trows if r.task == t}
                colours[reference_label(trows, t)] = next((r.colour for r in trows if r.task == t and r.reference), None)
                taus = {r.tau for r in trows if r.tau is not None}
                ref = reference_values(trows, t).get(m)
                written += plot_metric_vs_delay(ds, m, out_dir / _slug("delay", t, m, suffix),
                                                reference={reference_label(trows, t): ref} if ref is not None
                                                else None, colours=colours,
                                                tau=tau if tau is not None else (taus.pop() if len(taus) == 1 else None),
                                                title=f"{t}: {metric_label(m)} against LVLM delay{title_tail}", **kw)
    return written


def _trace_of(row) -> Path | None:
    """The trace file a results row names, as given or relative to the results file's folder."""
    if not row.trace_path:
        return None
    for p in (Path(row.trace_path), Path(row.file).parent / row.trace_path):
        if p.is_file():
            return p
    return None


def _task_metrics(rows) -> list[str]:
    seen: list[str] = []
    for r in rows:
        for m, v in r.metrics.items():
            if v is not None and m not in seen:
                seen.append(m)
    return seen


# ---------------------------------------------------------------------------------------------
# CLI: edgevlm-eval plot RESULTS --kind ... --out DIR


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="results JSON files or folders (searched recursively); LVLM trace files (.jsonl) for "
                        "--kind latency")
    p.add_argument("--kind", default="all", choices=(*KINDS, "all"),
                   help="lcr: metric against LVLM call ratio per strategy (Table 2 as a Pareto picture); "
                        "sweep: K_call / K_delay sweeps (Table 1, Fig. 5); delay: metric against fixed delay d; "
                        "latency: per-frame LVLM latency of a trace (Fig. 4); all (default)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the figures (PNG and SVG)")
    p.add_argument("--task", metavar="T", help="only this task")
    p.add_argument("--metric", metavar="M", help="only this metric (default: every metric the results have)")
    p.add_argument("--trace", metavar="F.jsonl", help="LVLM trace for --kind latency")
    p.add_argument("--stream", dest="streams", action="append", metavar="ID",
                   help="stream(s) of the trace to draw (repeatable; default: the first)")
    p.add_argument("--tau", type=float, metavar="S", help="deadline line in seconds (default: from the files, else 1)")
    p.add_argument("--format", dest="formats", default="png,svg", metavar="F",
                   help="comma-separated formats: png, svg (default both)")
    p.add_argument("--no-paper", dest="no_paper", action="store_true",
                   help="leave out the paper's reported numbers (results/paper)")
    p.add_argument("--allow-mixed", dest="allow_mixed", action="store_true",
                   help="results that the leaderboard would not rank together: one set of figures per "
                        "compatible group instead of an error")


def main(args) -> int:

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise EdgeVLMError(f"--format: unknown format(s) {bad}; expected a comma-separated list of {list(FORMATS)}")
    kinds = KINDS if args.kind == "all" else (args.kind,)
    written = plot_results(args.results, args.out, kinds=kinds, task=args.task, metric=args.metric,
                           trace=args.trace, streams=args.streams, tau=args.tau, formats=formats,
                           include_paper=not args.no_paper, allow_mixed=args.allow_mixed)
    con = make_console()
    if not written:
        con.print(f"[yellow]no figure of kind {args.kind!r}: the results given have no data for it[/yellow]")
        return 1
    for p in written:
        con.print(str(p))
    return 0
