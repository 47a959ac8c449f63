"""The paper's experiments as named protocols (method.md §6), each a list of runs plus the shape of
the table it fills (stored in the results JSON under "protocol" and printed with rich).

    main        Table 2: every strategy; LAECIPS (both readings: the authors' code rule, and the paper's
                classifier when the task has a calibration split), ADAS, edgeVLM tuned to LCR 20-30,
                35-45, 50-60 %; edgeVLM at 100 %
    ablation    Table 5: all frames uploaded; parallel -> +CRM -> +GGVR -> +GRVR
    call-sweep  Table 1 / Fig. 5: K_call 1..9 at K_delay 4, and K_delay 1..8, inf at K_call 0 (+ SVLM only)
    delay       latency study: fixed latency d = 1..9 s, every frame uploaded: edgeVLM, parallel, LVLM only (+ SVLM only)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from edgevlm_eval.core.errors import UnknownNameError

from .search import Target
from .strategies import BUILTIN
from .strategy import INF, Run

PROTOCOLS = ("main", "ablation", "call-sweep", "delay")
BANDS = (Target(0.20, 0.30), Target(0.35, 0.45), Target(0.50, 0.60))


@dataclass
class PlanItem:
    spec: Run
    target: Target | None = None
    group: str = ""  # the table's row group (an LCR band, a sweep)
    label: str = ""  # the row's name in the table


@dataclass
class Plan:
    name: str
    items: list[PlanItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# make(strategy name, **knob overrides and name/latency) -> Run, with the user's knob settings applied
RunFactory = Callable[..., Run]


def make_plan(protocol: str, make: RunFactory, *, have_uplink: bool, have_calibration: bool = False) -> Plan:
    """The protocol's runs. `have_uplink`: Distributed VLM can be timed; `have_calibration`: the task
    has a calibration split, so LAECIPS' classifier reading (laecips-clf) can be trained."""
    if protocol not in PROTOCOLS:
        raise UnknownNameError("protocol", protocol, PROTOCOLS)
    plan = Plan(protocol)
    add = plan.items.append
    if protocol == "main":
        add(PlanItem(make("svlm_only", name="svlm_only"), group="baselines", label="SVLM only"))
        add(PlanItem(make("lvlm_only", name="lvlm_only"), group="baselines", label="LVLM only"))
        if have_uplink:
            add(PlanItem(make("distributed_vlm", name="distributed_vlm"), group="baselines",
                         label="Distributed VLM"))
        else:
            plan.notes.append("distributed_vlm skipped: it needs an uplink (--uplink MBPS or a Mahimahi trace)")
        banded = ("laecips", "laecips-clf", "adas", "edgevlm") if have_calibration else ("laecips", "adas", "edgevlm")
        if not have_calibration:
            plan.notes.append("laecips-clf skipped: LAECIPS' classifier reading is trained on the task's calibration "
                              "split, and this task has none (a `calibration:` key in its YAML, docs/method.md)")
        for band in BANDS:
            for strat in banded:
                run = make(strat, name=f"{strat}@{band.label()}")
                add(PlanItem(run, band, f"LCR {band.label()} %", run.cls.display_label()))
        add(PlanItem(make("edgevlm", name="edgevlm@100", K_call=0, K_delay=INF), group="LCR 100 %",
                     label="edgeVLM"))
    elif protocol == "ablation":
        allup = dict(K_call=0, K_delay=INF)
        add(PlanItem(make("parallel", name="parallel", **allup), group="ablation", label="Parallel"))
        for name, ggvr, grvr in (("+CRM", False, False), ("+GGVR", True, False), ("+GRVR", True, True)):
            add(PlanItem(make("edgevlm", name=f"edgevlm{name}", crm=True, ggvr=ggvr, grvr=grvr, **allup),
                         group="ablation", label=name))
    elif protocol == "call-sweep":
        add(PlanItem(make("svlm_only", name="svlm_only"), group="reference", label="SVLM only"))
        for k in range(1, 10):
            add(PlanItem(make("edgevlm", name=f"edgevlm@K_call={k}", K_call=k, K_delay=4),
                         group="K_call (K_delay 4)", label=str(k)))
        for d in (1, 2, 3, 4, 5, 6, 7, 8, INF):
            ds = "inf" if d == INF else str(d)
            add(PlanItem(make("edgevlm", name=f"edgevlm@K_delay={ds}", K_call=0, K_delay=d),
                         group="K_delay (K_call 0)", label=ds))
    elif protocol == "delay":
        # Every frame uploaded (as the paper's latency analysis: at d = 1 s the system equals the LVLM)
        add(PlanItem(make("svlm_only", name="svlm_only"), group="reference", label="SVLM only"))
        for d in range(1, 10):
            for strat in ("edgevlm", "parallel", "lvlm_only"):
                kw = dict(K_call=0, K_delay=INF) if strat != "lvlm_only" else {}
                add(PlanItem(make(strat, name=f"{strat}@d={d}", latency=f"fixed:{d}", **kw),
                             group=f"d = {d} s", label=strat))
    return plan


def all_strategies(make: RunFactory, target: Target | None) -> Plan:
    """`--strategy all`: every built-in strategy with the user's knobs (tuned to `target` when it
    has a call-ratio knob), then edgeVLM's ablation switches at its own keyframes."""

    plan = Plan("strategies")
    for name in BUILTIN:
        run = make(name)
        t = target if run.cls.lcr_knob is not None else None
        if target is not None and t is None:
            plan.notes.append(f"{run.run_id} has no call-ratio knob; run as is")
        plan.items.append(PlanItem(run, t, "", run.run_id))
    ev = next(it for it in plan.items if it.spec.strategy == "edgevlm")
    plan.items.extend(ablation_switches(ev.spec, ev.target))
    return plan


def ablation_switches(edgevlm: Run, target: Target | None) -> list[PlanItem]:
    """`--strategy all` also runs edgeVLM's ablation switches at its own keyframes (Table 5's
    ladder without the all-frames upload, named as there: `edgevlm+CRM` is CRM alone,
    `edgevlm+GGVR` is CRM + GGVR; the full `edgevlm` run is + GRVR). Only the rungs below the
    switches the user left on are added."""
    k = edgevlm.knobs
    if not k.crm:
        return []
    rungs = [("edgevlm+CRM", False, False)]
    if k.ggvr and k.grvr:
        rungs.append(("edgevlm+GGVR", True, False))
    elif not k.ggvr and not k.grvr:
        rungs = []  # the edgevlm run itself is CRM alone
    return [PlanItem(edgevlm.with_(name=name, ggvr=ggvr, grvr=grvr), target, "", name) for name, ggvr, grvr in rungs]


def _pct(x):
    return None if x is None else round(100 * x, 2)


def table(name: str, rows: list[dict], summaries: dict, metrics: list[str], notes: list[str] | None = None) -> dict:
    """The protocol's table: columns and rows (values in percent, LHL in frames). `rows`: the plan's
    runs in order, each {"run", "group", "label", "reference"} (as run.json stores them)."""
    out = []
    if name == "call-sweep":
        cols = ["sweep", "value", "LCR %", "LHL (frames)", *metrics, "gain over SVLM (" + metrics[0] + ")"]
        ref_id = next((r["run"] for r in rows if r.get("reference")), None)
        ref = ((summaries.get(ref_id) or {}).get("metrics") or {}).get(metrics[0]) if ref_id else None
    else:
        cols = ["group", "method", *metrics, "LCR %", "LHL (frames)"]
        ref = None
    for r in rows:
        s = summaries.get(r["run"])
        if s is None:
            continue
        ms = [_pct(s["metrics"].get(m)) for m in metrics]
        if name == "call-sweep":
            gain = None
            if ref is not None and s["metrics"].get(metrics[0]) is not None and not r.get("reference"):
                gain = _pct(s["metrics"][metrics[0]] - ref)
            out.append([r["group"], r["label"], _pct(s["lcr"]), s["lhl"], *ms, gain])
        else:
            out.append([r["group"], r["label"], *ms, _pct(s["lcr"]), s["lhl"]])
    return {"name": name, "columns": cols, "rows": out, "notes": list(notes or []), "runs": [r["run"] for r in rows]}
