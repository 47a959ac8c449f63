"""`edgevlm-eval compare RUN_DIR A B`: is run A better than run B on the same frames?

Two strategies of one run folder were replayed on the same frames, LVLM replies and latencies, so
their difference is best judged paired: each bootstrap resample draws streams once and scores
both runs on them (`edgevlm_eval.core.bootstrap.bootstrap_difference`). The command reads the run
folder's per-frame log and the label list and metrics from its results.json, and prints, per
metric, A, B, A - B with its interval, and the share of resamples in which A is ahead.

    edgevlm-eval compare runs/demo/demo-svlm__demo-lvlm/all edgevlm parallel
    edgevlm-eval compare runs/demo/demo-svlm__demo-lvlm/all edgevlm laecips --bootstrap 5000 --json cmp.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgevlm_eval.app.console import console as make_console
from edgevlm_eval.core.bootstrap import METHOD, bootstrap_difference, per_stream_items
from edgevlm_eval.core.errors import DatasetError, EdgeVLMError, UnknownNameError
from edgevlm_eval.core.io import atomic_write_json
from edgevlm_eval.core.labels import LabelSpace
from edgevlm_eval.core.records import read_logs, read_results


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder: results.json and its per-frame log "
                                                      "(e.g. runs/demo/demo-svlm__demo-lvlm/all)")
    p.add_argument("a", metavar="A", help="run id, e.g. edgevlm")
    p.add_argument("b", metavar="B", help="run id to compare with, e.g. parallel")
    p.add_argument("--task", metavar="T", help="the task, when the results hold several")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="stream resamples (default 1000)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    p.add_argument("--json", dest="json_out", metavar="F.json", help="also write the comparison as JSON")


def compare_runs(run_dir: str | Path, a: str, b: str, *, task: str | None = None, n: int = 1000,
                 level: float = 0.95, seed: int = 0) -> dict:
    """The paired comparison of runs `a` and `b` of a run folder, as a JSON-ready dict."""

    folder = Path(run_dir)
    results = folder / "results.json"
    if not results.is_file():
        raise DatasetError("not a run folder: results.json is missing", path=str(results),
                           expected="RUN_DIR/results.json and RUN_DIR/frames.jsonl, as the main command writes "
                                    "(RUN_DIR = <output-dir>/<task>/<svlm>__<lvlm>/<run>)")
    doc = read_results(results)
    tasks = doc.provenance.get("tasks") or {}
    if task is None:
        if len(tasks) != 1:
            raise EdgeVLMError(f"{results}: holds tasks {sorted(tasks)}; say which with --task")
        task = next(iter(tasks))
    if task not in tasks:
        raise UnknownNameError("task", task, tasks)
    info = tasks[task]
    if not info.get("labels") or not info.get("metrics"):
        raise DatasetError(f"provenance.tasks.{task} has no 'labels' or 'metrics' list", path=str(results))
    _, lines = read_logs(folder)
    if not lines:
        raise DatasetError("no per-frame log in the run folder (frames*.jsonl)", path=str(folder))
    known = sorted({ln.run for ln in lines})
    for rid in (a, b):
        if rid not in known:
            raise UnknownNameError("run", rid, known)
    if a == b:
        raise EdgeVLMError(f"compare two different runs (got {a} twice)")
    space = LabelSpace(names=list(info["labels"]), multi_label=bool(info.get("multi_label", True)))
    try:
        runs = doc.tasks[task].runs if task in doc.tasks else {}
        label_set = next((runs[r].metrics.get("macro_f1_label_set") for r in (a, b) if r in runs), None)
        diffs = bootstrap_difference(per_stream_items(lines, a), per_stream_items(lines, b), space,
                                     info["metrics"], n=n, level=level, seed=seed, macro_f1_label_set=label_set)
    except ValueError as e:
        raise EdgeVLMError(f"{folder}: {e}") from None
    n_streams = next(iter(diffs.values())).diff.n_streams if diffs else 0
    return {"format": "edgevlm-eval.compare/1", "run_dir": str(folder), "task": task, "a": a, "b": b,
            "streams": n_streams, "method": "paired " + METHOD, "level": level, "n_boot": n, "seed": seed,
            "metrics": {m: d.to_json() for m, d in diffs.items()}}


def main(args) -> int:
    from rich.markup import escape
    from rich.table import Table

    if args.bootstrap < 1 or not 0.0 < args.level < 1.0:
        raise EdgeVLMError(f"--bootstrap must be >= 1 and --level in (0, 1) (got {args.bootstrap}, {args.level})")
    out = compare_runs(args.run_dir, args.a, args.b, task=args.task, n=args.bootstrap, level=args.level,
                       seed=args.seed)
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
    lv = f"{100 * args.level:g} %"
    table = Table(title=escape(f"{out['task']}: {args.a} vs {args.b} on the same {out['streams']} streams"),
                  caption=escape(f"paired bootstrap over streams, {args.bootstrap} resamples, seed {args.seed}; "
                                 f"A ahead: share of resamples with A - B > 0"), caption_justify="left")
    for h in ("metric", f"A: {args.a} (%)", f"B: {args.b} (%)", "A - B (points)", f"{lv} interval", "A ahead"):
        table.add_column(escape(h), justify="left" if h == "metric" else "right")
    for m, d in out["metrics"].items():
        iv = d["diff"]
        table.add_row(m, pct(d["a"]), pct(d["b"]), pct(iv["value"]), f"[{pct(iv['lo'])}, {pct(iv['hi'])}]",
                      "-" if d["a_better"] is None else f"{100 * d['a_better']:.1f} %")
    make_console().print(table)
    if args.json_out:
        atomic_write_json(args.json_out, out)
        print(f"wrote {args.json_out}")
    return 0
