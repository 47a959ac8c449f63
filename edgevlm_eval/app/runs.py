"""From a RunConfig to the runs to replay: strategies resolved, knobs applied, targets attached,
and what the runs need (trace, SVLM, token probabilities, uplink) checked against the models and
settings given, all before anything expensive starts.

Knob values, lowest to highest: the strategy's defaults < knob flags / YAML keys for every strategy
that has the knob (`--K-call 3`) < the knobs given with the strategy (`--strategy edgevlm:K_call=2`)
< what a protocol fixes (the ablation uploads every frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgevlm_eval.collab.protocols import Plan, PlanItem, all_strategies, make_plan
from edgevlm_eval.collab.search import Target, parse_target
from edgevlm_eval.collab.strategies import BUILTIN, resolve_strategy
from edgevlm_eval.collab.strategy import Needs, Run, Strategy
from edgevlm_eval.core.errors import ConfigError

from .options import KNOB_OPTIONS, RunConfig


@dataclass
class RunPlan:
    """The runs of one invocation, in table order, and what they need."""

    plan: Plan
    name: str  # the run folder's name
    needs: Needs = field(default_factory=Needs)

    @property
    def items(self) -> list[PlanItem]:
        return self.plan.items

    @property
    def notes(self) -> list[str]:
        return self.plan.notes


def _knobs(cls: type[Strategy], settings: dict, given: dict, where: str):
    """cls.Knobs from the global settings it has, then the knobs given for it."""
    names = set(cls.Knobs.names())
    values = {k: v for k, v in settings.items() if k in names}
    values.update(given)
    return cls.Knobs.from_mapping(values, where)


def _factory(settings: dict):
    def make(strategy: str, *, name: str | None = None, latency: str | None = None, **fixed) -> Run:
        cls = BUILTIN[strategy]
        return Run(cls, _knobs(cls, settings, fixed, f"strategy {strategy}: "), name=name, latency=latency)
    return make


def _needs(items: list[PlanItem]) -> Needs:
    ns = [it.spec.cls.needs for it in items]
    return Needs(trace=any(n.trace for n in ns), svlm=any(n.svlm for n in ns), logprobs=any(n.logprobs for n in ns),
                 uplink=any(n.uplink for n in ns), token_focus=any(n.token_focus for n in ns),
                 calibration=any(n.calibration for n in ns))


def build_runs(cfg: RunConfig, *, have_uplink: bool, svlm_logprobs: bool | None,
               have_calibration: bool = False, task_name: str = "") -> RunPlan:
    """The runs `cfg` asks for. `svlm_logprobs`: whether the SVLM reports token probabilities (None:
    no SVLM given); `have_calibration`: the task has a calibration split (`calibration:` in its
    YAML). Runs the settings cannot serve are an error when named explicitly, and are left out with
    a note in `all` and the protocols."""
    settings = cfg.knob_settings
    make = _factory(settings)
    target = parse_target(cfg.target_lcr) if cfg.target_lcr else None
    explicit = not (cfg.protocol or cfg.all_strategies)
    if cfg.protocol:
        plan = make_plan(cfg.protocol, make, have_uplink=have_uplink, have_calibration=have_calibration)
    elif cfg.all_strategies:
        plan = all_strategies(make, target)
    else:
        plan = Plan("strategies")
        for req in cfg.strategies:
            cls = resolve_strategy(req.ref)
            run = Run(cls, _knobs(cls, settings, dict(req.knobs), f"--strategy {req.ref}: "), name=req.name)
            t = target if (target is not None and run.cls.lcr_knob is not None) else None
            if target is not None and t is None:
                plan.notes.append(f"{run.run_id} has no call-ratio knob; run as is")
            plan.items.append(PlanItem(run, t, "", run.run_id))
    # what the settings cannot serve
    keep = []
    for it in plan.items:
        n = it.spec.cls.needs
        why = None
        if n.uplink and not have_uplink:
            why = "it needs an uplink (--uplink MBPS or a Mahimahi trace, or a latency source that has one)"
        elif n.logprobs and svlm_logprobs is False:
            why = f"it needs the SVLM's token probabilities and {cfg.svlm} does not report them"
        elif n.calibration and not have_calibration:
            why = (f"it is trained on the task's calibration split and task {task_name!r} has none (give its YAML "
                   "a `calibration:` key: another seed or split whose streams are never scored, docs/method.md)")
        if why is None:
            keep.append(it)
        elif explicit:
            raise ConfigError(f"strategy {it.spec.run_id}: {why}", key="--strategy")
        elif f"{it.spec.strategy} skipped: {why}" not in plan.notes:
            plan.notes.append(f"{it.spec.strategy} skipped: {why}")
    plan.items = keep
    ids = [it.spec.run_id for it in plan.items]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"two runs are named {dup}: give them names (--strategy edgevlm:K_call=2,name=ev-k2)",
                          key="--strategy")
    used = {k for it in plan.items for k in it.spec.cls.Knobs.names()}
    for k in settings:
        if k not in used:
            flag = next((o.key for o in KNOB_OPTIONS.values() if o.knob == k), k)
            plan.notes.append(f"{flag} is a knob of no strategy in this run; ignored")
    name = cfg.run_name or (plan.name if cfg.protocol else "all" if cfg.all_strategies else
                            "+".join(dict.fromkeys(it.spec.run_id for it in plan.items)))
    return RunPlan(plan, name, _needs(plan.items))


def target_of(label: str | None) -> Target | None:
    return Target.from_label(label) if label else None
