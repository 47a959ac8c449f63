"""Accounting (method.md §3 "Call ratio and history lag"): everything a results file says about a
run, computed from its per-frame log lines alone, so a log can be re-scored without inference.

    LCR = uploads / frames (all frames of the run, scored or not)
    LHL = mean of (T - j_L) over the frames whose SVLM input held an LVLM entry (in frames)
"""

from __future__ import annotations

from collections import Counter
from statistics import median
from typing import Iterable, Sequence

from edgevlm_eval.core.metrics import Scored, compute
from edgevlm_eval.core.records import FrameLine
from edgevlm_eval.core.taskconfig import TaskConfig

TOP_UNMAPPED = 10


def _stats(xs: Sequence[float]) -> dict | None:
    if not xs:
        return None
    ys = sorted(xs)
    p95 = ys[min(len(ys) - 1, int(round(0.95 * (len(ys) - 1))))]
    return {"mean": sum(ys) / len(ys), "p50": median(ys), "p95": p95, "max": ys[-1], "n": len(ys)}


def summarise(lines: Iterable[FrameLine], task: TaskConfig, **metric_options) -> dict[str, dict]:
    """run id -> summary. Order of lines does not matter (sharded logs merge to the same)."""
    by_run: dict[str, list[FrameLine]] = {}
    for ln in lines:
        by_run.setdefault(ln.run, []).append(ln)
    out = {}
    for run, ls in sorted(by_run.items()):
        ls.sort(key=lambda ln: (ln.stream, ln.frame))
        out[run] = summarise_run(ls, task, **metric_options)
    return out


def _lag_seconds(ln: FrameLine) -> float | None:
    """Age of the history entry j_L (seconds), for LHL in seconds."""
    for frame, source, age in ln.history:
        if frame == ln.j_L and source == "lvlm":
            return age
    return None


def summarise_run(ls: list[FrameLine], task: TaskConfig, **metric_options) -> dict:
    n = len(ls)
    uploads = sum(1 for ln in ls if ln.upload)
    lags = [ln.lag for ln in ls if ln.lag is not None]
    lag_s = [x for x in (_lag_seconds(ln) for ln in ls if ln.lag is not None) if x is not None]
    scored = [Scored(tuple(ln.truth), tuple(ln.pred) if ln.pred is not None else None) for ln in ls if ln.scored]
    opts = {"macro_f1_label_set": task.macro_f1_label_set, **metric_options}  # the task's convention unless overridden
    metrics = compute(scored, task.label_space, task.metrics, **opts)
    sources = Counter(ln.output for ln in ls)
    reasons = Counter(ln.invalid for ln in ls if ln.output == "invalid")
    reasons_scored = Counter(ln.invalid for ln in ls if ln.output == "invalid" and ln.scored)
    decisions = Counter(ln.why for ln in ls)
    up = [ln for ln in ls if ln.upload]
    usable_in_time = [bool(ln.in_time) and ln.lvlm is not None and ln.lvlm.ok for ln in up]
    failed = Counter((ln.lvlm.error_kind or "unknown") for ln in up if ln.lvlm is not None and not ln.lvlm.ok)
    svlm_failed = Counter((ln.svlm.error_kind or "unknown") for ln in ls if ln.svlm is not None and not ln.svlm.ok)
    unm: dict[str, Counter] = {"svlm": Counter(), "lvlm": Counter()}
    unm_frames = {"svlm": 0, "lvlm": 0}
    for ln in ls:
        for src, d in (("svlm", ln.svlm), ("lvlm", ln.lvlm)):
            if d is not None and d.unmapped:
                unm_frames[src] += 1
                unm[src].update(d.unmapped)
    vfm_req = [ln.vfm for ln in ls if ln.vfm]
    not_applied = Counter(v.get("reason", "adapter did not apply it") for v in vfm_req if not v.get("applied"))
    vt = [ln.svlm.visual_tokens for ln in ls if ln.svlm is not None and ln.svlm.visual_tokens]
    vt = [(a, b if b is not None else a) for a, b in vt if a is not None]
    edge = [ln.svlm.e_s for ln in ls if ln.svlm is not None]
    eng = [ln.engine_s for ln in ls if ln.engine_s is not None]
    svl = [ln.svlm_s for ln in ls if ln.svlm_s is not None]
    eng_sum, svl_sum = sum(eng), sum(svl)
    res = {
        "frames": n,
        "scored_frames": len(scored),
        "metrics": metrics,
        "lcr": uploads / n if n else None,
        "uploads": uploads,
        "lhl": sum(lags) / len(lags) if lags else None,
        "lhl_s": sum(lag_s) / len(lag_s) if lag_s else None,
        "lhl_n": len(lags),  # frames the LHL averages over (plan --json's lhl_frames is the LHL in frames)
        "output_sources": {k: sources.get(k, 0) for k in ("lvlm", "svlm", "invalid")},
        "invalid": {"total": sources.get("invalid", 0), "scored": sum(reasons_scored.values()),
                    "by_reason": dict(sorted(reasons.items()))},
        "decisions": dict(sorted(decisions.items())),
        # usable replies only: an upload whose trace reply failed is never "in time"
        "lvlm_in_time": (sum(usable_in_time) / len(usable_in_time)) if usable_in_time else None,
        "failed": {"lvlm": sum(failed.values()), "lvlm_by_kind": dict(sorted(failed.items())),
                   "svlm": sum(svlm_failed.values()), "svlm_by_kind": dict(sorted(svlm_failed.items()))},
        "unmapped": {src: {"frames": unm_frames[src], "top": [[w, c] for w, c in unm[src].most_common(TOP_UNMAPPED)]}
                     for src in ("svlm", "lvlm")},
        "vfm": {"requested": len(vfm_req), "applied": sum(1 for v in vfm_req if v.get("applied")),
                "not_applied": dict(sorted(not_applied.items()))},
        # visual tokens per SVLM request (all images, history included), before and after GGVR
        "visual_tokens": {"mean": sum(a for a, _ in vt) / len(vt), "mean_kept": sum(b for _, b in vt) / len(vt),
                          "n": len(vt)} if vt else None,
        "timing": {
            "edge_latency_s": _stats(edge),
            "engine_ms_per_frame": 1000 * eng_sum / len(eng) if eng else None,
            "svlm_ms_per_frame": 1000 * svl_sum / len(svl) if svl else None,
            "engine_share": eng_sum / (eng_sum + svl_sum) if (eng_sum + svl_sum) > 0 else None,
        },
    }
    return res


# Keys that depend on wall time: left out when comparing a resumed or sharded run to another.
TIMING_KEYS = ("timing",)


def without_timings(summary: dict) -> dict:
    return {run: {k: v for k, v in s.items() if k not in TIMING_KEYS} for run, s in summary.items()}
