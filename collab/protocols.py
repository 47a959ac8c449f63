"""The paper's experiments as named protocols (method.md §6), each a list of runs plus the shape of
the table it fills (stored in the results JSON under "protocol" and printed with rich).

    main        Table 2: every strategy; LAECIPS, ADAS, edgeVLM tuned to LCR 20-30, 35-45, 50-60 %; edgeVLM at 100 %
    ablation    Table 5: all frames uploaded; parallel -> +CRM -> +GGVR -> +GRVR
    call-sweep  Table 1 / Fig. 5: K_call 1..9 at K_delay 4, and K_delay 1..8, inf at K_call 0 (+ SVLM only)
    delay       latency study: fixed latency d = 1..9 s, every frame uploaded: edgeVLM, parallel, LVLM only (+ SVLM only)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgevlm_eval.core.errors import UnknownNameError

from .search import Target
from .strategies import INF, RunSpec

PROTOCOLS = ("main", "ablation", "call-sweep", "delay")
BANDS = (Target(0.20, 0.30), Target(0.35, 0.45), Target(0.50, 0.60))


@dataclass
class PlanItem:
    spec: RunSpec
    target: Target | None = None
    group: str = ""  # the table's row group (an LCR band, a sweep)
    label: str = ""  # the row's name in the table


@dataclass
class Plan:
    name: str
    items: list[PlanItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _base(base: RunSpec, strategy: str, **kw) -> RunSpec:
    return base.with_(**{"strategy": strategy, "name": None, **kw})


def make_plan(protocol: str, base: RunSpec, *, have_uplink: bool) -> Plan:
    if protocol not in PROTOCOLS:
        raise UnknownNameError("protocol", protocol, PROTOCOLS)
    plan = Plan(protocol)
    add = plan.items.append
    if protocol == "main":
        add(PlanItem(_base(base, "svlm_only", name="svlm_only"), group="baselines", label="SVLM only"))
        add(PlanItem(_base(base, "lvlm_only", name="lvlm_only"), group="baselines", label="LVLM only"))
        if have_uplink:
            add(PlanItem(_base(base, "distributed_vlm", name="distributed_vlm"), group="baselines",
                         label="Distributed VLM"))
        else:
            plan.notes.append("distributed_vlm skipped: it needs an uplink (--uplink MBPS or a Mahimahi trace)")
        for band in BANDS:
            for strat, label in (("laecips", "LAECIPS"), ("adas", "ADAS (proxy)"), ("edgevlm", "edgeVLM")):
                add(PlanItem(_base(base, strat, name=f"{strat}@{band.label()}"), band, f"LCR {band.label()} %", label))
        add(PlanItem(_base(base, "edgevlm", name="edgevlm@100", K_call=0, K_delay=INF), group="LCR 100 %",
                     label="edgeVLM"))
    elif protocol == "ablation":
        allup = dict(K_call=0, K_delay=INF)
        add(PlanItem(_base(base, "parallel", name="parallel", **allup), group="ablation", label="Parallel"))
        for name, ggvr, grvr in (("+CRM", False, False), ("+GGVR", True, False), ("+GRVR", True, True)):
            add(PlanItem(_base(base, "edgevlm", name=f"edgevlm{name}", crm=True, ggvr=ggvr, grvr=grvr, **allup),
                         group="ablation", label=name))
    elif protocol == "call-sweep":
        add(PlanItem(_base(base, "svlm_only", name="svlm_only"), group="reference", label="SVLM only"))
        for k in range(1, 10):
            add(PlanItem(_base(base, "edgevlm", name=f"edgevlm@K_call={k}", K_call=k, K_delay=4),
                         group="K_call (K_delay 4)", label=str(k)))
        for d in (1, 2, 3, 4, 5, 6, 7, 8, INF):
            ds = "inf" if d == INF else str(d)
            add(PlanItem(_base(base, "edgevlm", name=f"edgevlm@K_delay={ds}", K_call=0, K_delay=d),
                         group="K_delay (K_call 0)", label=ds))
    elif protocol == "delay":
        # Every frame uploaded (as the paper's latency analysis: at d = 1 s the system equals the LVLM)
        add(PlanItem(_base(base, "svlm_only", name="svlm_only"), group="reference", label="SVLM only"))
        for d in range(1, 10):
            for strat in ("edgevlm", "parallel", "lvlm_only"):
                add(PlanItem(_base(base, strat, name=f"{strat}@d={d}", latency=f"fixed:{d}", K_call=0, K_delay=INF),
                             group=f"d = {d} s", label=strat))
    return plan


def _pct(x):
    return None if x is None else round(100 * x, 2)


def table(plan: Plan, summaries: dict, metrics: list[str]) -> dict:
    """The protocol's table: columns and rows (values in percent, LHL in frames)."""
    rows = []
    if plan.name == "call-sweep":
        cols = ["sweep", "value", "LCR %", "LHL (frames)", *metrics, "gain over SVLM (" + metrics[0] + ")"]
        ref = (summaries.get("svlm_only") or {}).get("metrics", {}).get(metrics[0])
    else:
        cols = ["group", "method", *metrics, "LCR %", "LHL (frames)"]
        ref = None
    for it in plan.items:
        s = summaries.get(it.spec.run_id)
        if s is None:
            continue
        ms = [_pct(s["metrics"].get(m)) for m in metrics]
        if plan.name == "call-sweep":
            gain = None
            if ref is not None and s["metrics"].get(metrics[0]) is not None and it.spec.strategy != "svlm_only":
                gain = _pct(s["metrics"][metrics[0]] - ref)
            rows.append([it.group, it.label, _pct(s["lcr"]), s["lhl"], *ms, gain])
        else:
            rows.append([it.group, it.label, *ms, _pct(s["lcr"]), s["lhl"]])
    return {"name": plan.name, "columns": cols, "rows": rows, "notes": plan.notes,
            "runs": [it.spec.run_id for it in plan.items]}
