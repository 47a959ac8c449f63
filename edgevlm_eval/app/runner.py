"""The main command's engine part: strategies, protocols, equal-LCR search, resume and sharding.

`edgevlm_eval.app.cli` parses the task/model/data flags, converts the streams, then calls
`add_run_arguments(parser)` (the engine's flags) and `run_main(args, task, streams, stream_info)`.

A run folder `<output-dir>/<task>/<run-name>/` holds
    run.json          what was asked (config, runs with their knobs) and the config hash
    frames*.jsonl     the per-frame log (one file per process when sharded)
    results.json      the results (docs/results.md), a pure function of run.json + the log
Starting the same command again resumes from the log; a different configuration in the same
folder is refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from edgevlm_eval.core.taskconfig import TaskConfig
from edgevlm_eval.core.errors import ConfigError, DatasetError, EdgeVLMError
from edgevlm_eval.core.framelog import FrameLogWriter, log_name, read_logs
from edgevlm_eval.core.io import atomic_write_json
from edgevlm_eval.app.results import build_results, provenance, redact, write_results
from edgevlm_eval.core.types import Stream

ENGINE_DESTS = ("strategy", "trace", "latency", "uplink", "K_call", "K_delay", "tau", "delta", "H", "crm", "ggvr",
                "grvr", "alpha", "mu", "theta", "laecips_strict", "kappa", "adas_beta", "dvlm_tokens", "dvlm_hidden",
                "dvlm_bytes_per_value", "dvlm_edge_encoder_s", "dvlm_cloud_encoder_s", "edge_latency", "edge_fast",
                "image_check", "batch_size", "target_lcr", "protocol", "run_name", "resume", "overwrite", "rescore",
                "engine_config", "bootstrap", "bootstrap_seed")


def _k_delay(text: str) -> float:
    if str(text).lower() in ("inf", "infinity", "off", "none"):
        return float("inf")
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'inf', got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def _edge_latency(text: str):
    if text == "measured":
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'measured' or seconds, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text}")
    return v


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    from edgevlm_eval.collab.protocols import PROTOCOLS
    from edgevlm_eval.collab.strategies import STRATEGIES

    g = p.add_argument_group("collaboration engine (see docs/method.md)")
    g.add_argument("--strategy", default="edgevlm", metavar="S[,S...]",
                   help=f"strategies to run, comma-separated, or 'all': {', '.join(STRATEGIES)} (default: edgevlm)")
    g.add_argument("--protocol", choices=PROTOCOLS, help="run one of the paper's experiments instead of --strategy")
    g.add_argument("--trace", metavar="F.jsonl", help="LVLM trace from `edgevlm-eval record` (needed by every "
                   "strategy except svlm_only)")
    g.add_argument("--latency", default="measured", metavar="SPEC",
                   help="LVLM latency source: measured | fixed:D | 5g[:seed=N] | lognormal:median=M,sigma=S,rho=R,seed=N | "
                        "file:F.csv | network:MAHIMAHI[,bytes=B,download=S,offset=S,server=S] (default: measured)")
    g.add_argument("--uplink", metavar="MBPS|FILE", help="uplink for Distributed VLM's feature upload: Mbps or a "
                   "Mahimahi trace (default: the network latency's trace, if any)")
    g.add_argument("--K-call", dest="K_call", type=int, default=3, metavar="N",
                   help="keyframe rule: skip T when the newest arrived reply is from T-i, i <= N (0 = off; default 3)")
    g.add_argument("--K-delay", dest="K_delay", type=_k_delay, default=4.0, metavar="N",
                   help="keyframe rule: skip T when N uploads are in flight ('inf' = off; default 4)")
    g.add_argument("--tau", type=float, default=1.0, help="deadline after capture, seconds (default 1)")
    g.add_argument("--delta", type=float, default=10.0, help="CRM staleness bound, seconds (default 10)")
    g.add_argument("--H", dest="H", type=int, default=2, help="history frames given to the SVLM (default 2)")
    g.add_argument("--crm", action=argparse.BooleanOptionalAction, default=True, help="edgevlm: Context Replacement")
    g.add_argument("--ggvr", action=argparse.BooleanOptionalAction, default=True,
                   help="edgevlm: grounding-guided token pruning of the LVLM history image")
    g.add_argument("--grvr", action=argparse.BooleanOptionalAction, default=True,
                   help="edgevlm: grounding-retrieved re-weighting of the current frame's tokens")
    g.add_argument("--alpha", type=float, default=0.7, help="GRVR alpha (default 0.7)")
    g.add_argument("--mu", type=float, default=1.0, help="GRVR mu, b = 1 - mu/2 (default 1.0)")
    g.add_argument("--theta", type=float, default=0.95, help="LAECIPS confidence threshold (default 0.95)")
    g.add_argument("--laecips-strict", dest="laecips_strict", action="store_true",
                   help="LAECIPS: a late LVLM answer makes the frame invalid (default: the SVLM answer stands)")
    g.add_argument("--kappa", type=float, default=1.0, help="ADAS proxy: upload when predicted latency <= kappa*tau")
    g.add_argument("--adas-beta", dest="adas_beta", type=float, default=0.3, help="ADAS proxy EWMA weight")
    g.add_argument("--dvlm-tokens", dest="dvlm_tokens", type=int, default=1824, help="Distributed VLM visual tokens")
    g.add_argument("--dvlm-hidden", dest="dvlm_hidden", type=int, default=8192, help="Distributed VLM hidden size")
    g.add_argument("--dvlm-bytes", dest="dvlm_bytes_per_value", type=int, default=2, help="bytes per feature value")
    g.add_argument("--dvlm-edge-encoder-s", dest="dvlm_edge_encoder_s", type=float, default=0.0,
                   help="Distributed VLM: LVLM vision encoder time on the edge, seconds")
    g.add_argument("--dvlm-cloud-encoder-s", dest="dvlm_cloud_encoder_s", type=float, default=0.0,
                   help="Distributed VLM: vision encoder time saved on the cloud, seconds")
    g.add_argument("--edge-latency", dest="edge_latency", type=_edge_latency, default=None, metavar="measured|S",
                   help="SVLM latency per frame: measured (default) or fixed seconds")
    g.add_argument("--edge-fast", dest="edge_fast", action="store_true",
                   help="assume the edge meets the deadline (an SVLM answer is never invalid for lateness)")
    g.add_argument("--no-image-check", dest="image_check", action="store_false",
                   help="do not decode frame images before use (a bad image then fails in the adapter)")
    g.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                   help="max SVLM requests per call (default: all streams x runs of a step)")
    g.add_argument("--target-lcr", dest="target_lcr", metavar="R|LO-HI",
                   help="tune each strategy's knob to this LVLM call ratio (0.25) or band (0.20-0.30)")
    g.add_argument("--run-name", dest="run_name", help="run folder name (default: the protocol or the strategies)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in the run folder (also the default when its configuration matches)")
    g.add_argument("--overwrite", action="store_true", help="start over, deleting the run folder's log and results")
    g.add_argument("--rescore", action="store_true",
                   help="recompute results.json from the run folder's per-frame log, without any model")
    g.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                   help="write the run's figures (PNG) to its folder's plots/ (default: on)")
    g.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="confidence intervals of every metric and the LCR from N bootstrap resamples of the streams "
                        "(0 = none, the default; 1000 is usual)")
    g.add_argument("--bootstrap-seed", dest="bootstrap_seed", type=int, default=0, help="seed of the resampling")
    g.add_argument("--engine-config", dest="engine_config", metavar="F.yaml",
                   help="YAML mapping of these options (keys as above without '--', '-' or '_'), e.g. "
                        "`latency: fixed:3`, `K_call: 2`; flags given on the command line win")
    _DEFAULTS.update({d: p.get_default(d) for d in ENGINE_DESTS})
    _suggest_on_error(p)


def _suggest_on_error(p: argparse.ArgumentParser) -> None:
    """An unknown switch (`--no-crmm`) gets the nearest known options in the error message."""
    from edgevlm_eval.core.errors import nearest

    orig = p.error

    def error(message: str):
        if message.startswith("unrecognized arguments:"):
            flags = sorted(o for a in p._actions for o in a.option_strings if o.startswith("--"))
            hints = [f"{b} -> {', '.join(nearest(b.split('=')[0], flags)[:3])}"
                     for b in message.split(":", 1)[1].split() if b.startswith("--")]
            if hints:
                message += " (nearest known options: " + "; ".join(hints) + ")"
        orig(message)

    p.error = error


_DEFAULTS: dict = {}


def apply_engine_config(args) -> None:
    """Options from --engine-config YAML, for those still at their default value."""
    path = getattr(args, "engine_config", None)
    if not path:
        return
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError("file not found", path=str(path)) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML: {e}", path=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of engine options", path=str(path))
    known = {d.lower(): d for d in ENGINE_DESTS if d not in ("engine_config",)}
    for key, value in data.items():
        dest = known.get(str(key).replace("-", "_").lower())
        if dest is None:
            raise ConfigError(f"unknown engine option; known: {', '.join(sorted(known.values()))}", path=str(path),
                              key=str(key))
        if dest == "K_delay":
            value = _k_delay(str(value))
        elif dest == "edge_latency":
            value = _edge_latency(str(value))
        elif dest == "strategy" and isinstance(value, list):
            value = ",".join(value)
        if getattr(args, dest, None) == _DEFAULTS.get(dest):
            setattr(args, dest, value)


# ---------------------------------------------------------------------------------------------


def _dist() -> tuple[int, int]:
    """(rank, world) under `accelerate launch` / torchrun (env vars), else (0, 1)."""
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        return 0, 1


def _barrier(world: int) -> None:
    """Wait for every process. A gloo group suffices (only files are shared), and works on CPU-only
    machines where accelerate's own state stays single-process."""
    if world <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    dist.barrier()


def shard(streams: Sequence[Stream], rank: int, world: int) -> list[Stream]:
    """Streams of one process: every world-th stream by sorted id (streams are independent)."""
    return [s for i, s in enumerate(sorted(streams, key=lambda s: s.id)) if i % world == rank]


def load_svlm(spec: str, world: int = 1):
    """The SVLM adapter; when sharded over several GPUs, one model per process on its own GPU."""
    from edgevlm_eval.model_adapters.registry import load_adapter

    if world > 1:
        try:
            import torch

            if torch.cuda.is_available():
                local = int(os.environ.get("LOCAL_RANK", 0))
                try:
                    return load_adapter(spec, device=f"cuda:{local}", device_map=None)
                except ConfigError:
                    pass  # an adapter without device options (HTTP models)
        except ImportError:
            pass
    return load_adapter(spec)


def _strategies(text: str) -> list[str]:
    from edgevlm_eval.collab.strategies import STRATEGIES, RunSpec

    names = list(STRATEGIES) if text.strip() == "all" else [s.strip() for s in text.split(",") if s.strip()]
    for n in names:
        RunSpec(n)  # unknown -> UnknownNameError with the known ones
    return names


def base_spec(args):
    from edgevlm_eval.collab.strategies import RunSpec

    return RunSpec(strategy="edgevlm", K_call=args.K_call, K_delay=args.K_delay, crm=args.crm, ggvr=args.ggvr,
                   grvr=args.grvr, alpha=args.alpha, mu=args.mu, theta=args.theta,
                   laecips_fallback=not args.laecips_strict, kappa=args.kappa, adas_beta=args.adas_beta,
                   dvlm_tokens=args.dvlm_tokens, dvlm_hidden=args.dvlm_hidden,
                   dvlm_bytes_per_value=args.dvlm_bytes_per_value, dvlm_edge_encoder_s=args.dvlm_edge_encoder_s,
                   dvlm_cloud_encoder_s=args.dvlm_cloud_encoder_s)


def make_plan(args, have_uplink: bool):
    from edgevlm_eval.collab.protocols import Plan, PlanItem, make_plan as proto_plan
    from edgevlm_eval.collab.search import parse_target
    from edgevlm_eval.collab.strategies import LCR_KNOB

    base = base_spec(args)
    if args.protocol:
        if args.target_lcr:
            raise ConfigError("--target-lcr and --protocol do not go together (main sets its own bands)",
                              key="--target-lcr")
        return proto_plan(args.protocol, base, have_uplink=have_uplink)
    target = parse_target(args.target_lcr) if args.target_lcr else None
    plan = Plan("strategies")
    names = _strategies(args.strategy)
    if args.strategy.strip() == "all" and not have_uplink:
        names.remove("distributed_vlm")
        plan.notes.append("distributed_vlm skipped: it needs an uplink (--uplink MBPS or a Mahimahi trace)")
    for name in names:
        t = target if (target is not None and name in LCR_KNOB) else None
        if target is not None and t is None:
            plan.notes.append(f"{name} has no call-ratio knob; run as is")
        plan.items.append(PlanItem(base.with_(strategy=name), t, "", name))
    if args.strategy.strip() == "all":
        plan.items.extend(ablation_switches(base, target))
    return plan


def ablation_switches(base, target) -> list:
    """`--strategy all` also runs edgeVLM's ablation switches at its own keyframes (Table 5's
    ladder without the all-frames upload, named as there: `edgevlm+CRM` is CRM alone, `edgevlm+GGVR`
    is CRM + GGVR; the full `edgevlm` run is + GRVR).
    Only the rungs below the switches the user left on are added."""
    from edgevlm_eval.collab.protocols import PlanItem

    if not base.crm:
        return []
    rungs = [("edgevlm+CRM", False, False)]
    if base.ggvr and base.grvr:
        rungs.append(("edgevlm+GGVR", True, False))
    elif not base.ggvr and not base.grvr:
        rungs = []  # the edgevlm run itself is CRM alone
    return [PlanItem(base.with_(strategy="edgevlm", name=name, ggvr=ggvr, grvr=grvr), target, "", name)
            for name, ggvr, grvr in rungs]


def sim_config(args):
    from edgevlm_eval.collab.latency import NetworkLatency, parse_latency, parse_uplink
    from edgevlm_eval.collab.simulator import SimConfig

    uplink = parse_uplink(args.uplink)
    if uplink is None and str(args.latency).startswith("network:"):
        src = parse_latency(args.latency)
        assert isinstance(src, NetworkLatency)
        uplink = src.uplink
    return SimConfig(tau=args.tau, delta=args.delta, H=args.H, edge_latency=args.edge_latency,
                     edge_fast=args.edge_fast, check_images=args.image_check, batch_size=args.batch_size,
                     latency=args.latency, uplink=uplink)


def config_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolved_config(args, cfg, task: TaskConfig) -> dict:
    """The configuration as it goes in results.json (secrets redacted later)."""
    d = {k: getattr(args, k, None) for k in ("task", "svlm", "lvlm", "data_root", "limit", "max_frames")}
    d.update(cfg.to_json())
    d.update({k: getattr(args, k) for k in ENGINE_DESTS if hasattr(args, k)
              and k not in ("resume", "overwrite", "rescore", "tau", "delta", "H", "latency", "uplink",
                            "edge_latency", "edge_fast", "batch_size", "engine_config")})
    d["K_delay"] = "inf" if d.get("K_delay") == float("inf") else d.get("K_delay")
    return d


def _print_table(title: str, columns: list[str], rows: list[list]) -> None:
    from rich.table import Table

    from edgevlm_eval.app.console import console

    t = Table(title=title)
    for c in columns:
        t.add_column(str(c), overflow="fold")
    for r in rows:
        t.add_row(*["" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v)) for v in r])
    console().print(t)


def summary_table(task: TaskConfig, runs: dict) -> tuple[list[str], list[list]]:
    cols = ["run", *(f"{m} %" for m in task.metrics), "LCR %", "LHL (frames)", "invalid", "VFM applied"]
    rows = []
    for rid, s in runs.items():
        ms = [None if s["metrics"].get(m) is None else 100 * s["metrics"][m] for m in task.metrics]
        v = s["vfm"]
        rows.append([rid, *ms, None if s["lcr"] is None else 100 * s["lcr"], s["lhl"], s["invalid"]["total"],
                     f"{v['applied']}/{v['requested']}" if v["requested"] else "-"])
    return cols, rows


# ---------------------------------------------------------------------------------------------


def _record_once(args, task, streams, rank: int, world: int):
    """No --trace: record the LVLM's trace into the output folder (resumable), or reuse the one a
    previous run recorded there. Record once, replay many: every later strategy replays it.
    Returns (path, the trace as read when it was already complete, else None)."""
    from edgevlm_eval.app.record import record_with_progress, trace_path_for
    from edgevlm_eval.collab.trace import read_trace

    if not getattr(args, "lvlm", None):
        raise ConfigError("these strategies replay the LVLM's replies: give --lvlm L (its trace is recorded once "
                          "into the output folder) or --trace F.jsonl from `edgevlm-eval record`", key="--lvlm")
    streams = sorted(streams, key=lambda s: s.id)
    path = trace_path_for(Path(args.output_dir) / task.name / "traces", task, streams, args.lvlm, "measured")
    trace = None
    if rank == 0:
        if path.exists():
            try:
                trace = read_trace(path)
                trace.check_covers(streams, None)
            except EdgeVLMError:  # partial or damaged: record() resumes it
                trace = None
        if trace is None:
            print(f"recording the LVLM trace of {args.lvlm} on {sum(len(s) for s in streams)} frames -> {path} "
                  "(once: later runs replay it)", file=sys.stderr)
            record_with_progress(task, streams, args.lvlm, path)
    _barrier(world)
    return path, trace


def run_main(args, task: TaskConfig, streams: list[Stream], stream_info: dict) -> int:
    return _run(args, task, streams, stream_info)


def _run(args, task, streams, stream_info) -> int:
    apply_engine_config(args)
    from edgevlm_eval.collab.search import search, search_theta
    from edgevlm_eval.collab.simulator import Simulator, load_done
    from edgevlm_eval.collab.trace import read_trace

    rank, world = _dist()
    cfg = sim_config(args)
    plan = make_plan(args, cfg.uplink is not None)
    run_name = args.run_name or (plan.name if args.protocol else "all" if args.strategy.strip() == "all" else
                                 "+".join(dict.fromkeys(it.spec.strategy for it in plan.items)))
    folder = Path(args.output_dir) / task.name / run_name

    if args.rescore:
        return rescore(folder, task, print_table=rank == 0)

    needs_trace = any(it.spec.strategy != "svlm_only" for it in plan.items)
    trace = None
    trace_info: dict = {}
    if needs_trace or args.trace:
        if not args.trace:
            path, trace = _record_once(args, task, streams, rank, world)
            args.trace = str(path)
        trace = trace or read_trace(args.trace)
        trace.check_covers(streams, task.name)
        trace.reparse(task.label_space)
        trace_info = {"path": str(args.trace), "sha256": trace.sha256(), "model": trace.model,
                      "header": {k: v for k, v in trace.header.items() if k != "format"}}

    all_streams = sorted(streams, key=lambda s: s.id)
    mine = shard(all_streams, rank, world)
    payload = {
        "task": [task.name, task.version], "streams": [[s.id, len(s)] for s in all_streams],
        "trace": trace_info.get("sha256"), "sim": cfg.to_json(), "svlm": getattr(args, "svlm", None),
        "plan": [[it.spec.to_json(), it.target.label() if it.target else None] for it in plan.items],
    }
    chash = config_hash(payload)

    # -- run folder: resume or start -----------------------------------------------------------
    run_json = folder / "run.json"
    if rank == 0:
        if args.overwrite and folder.exists():
            for p in list(folder.glob("frames*.jsonl")) + [folder / "results.json", run_json]:
                if p.exists():
                    p.unlink()
        if run_json.exists():
            old = json.loads(run_json.read_text(encoding="utf-8"))
            if old.get("config_hash") != chash:
                raise ConfigError(f"the run folder {folder} holds a run with another configuration (hash "
                                  f"{old.get('config_hash')}, this one {chash}); use --overwrite, --run-name or "
                                  f"another --output-dir", key="--output-dir")
        folder.mkdir(parents=True, exist_ok=True)
    _barrier(world)
    headers, old_lines = read_logs(folder)
    for h in headers:
        if h.get("config_hash") not in (None, chash):
            raise ConfigError(f"{folder}: a per-frame log was written by another configuration; use --overwrite",
                              key="--output-dir")
    mine_ids = {s.id for s in mine}
    done = load_done(ln for ln in old_lines if ln["stream"] in mine_ids)
    if args.resume and not old_lines and rank == 0:
        print(f"--resume: nothing to resume in {folder}; starting", file=sys.stderr)

    # -- models --------------------------------------------------------------------------------
    svlm = None
    if any(it.spec.strategy not in ("lvlm_only", "distributed_vlm") for it in plan.items):
        if not getattr(args, "svlm", None):
            raise ConfigError("these strategies run the SVLM: give --svlm (see `edgevlm-eval models`)", key="--svlm")
        svlm = load_svlm(args.svlm, world)
        caps = getattr(svlm, "capabilities", None)
        if caps is not None and not caps.logprobs and any(it.spec.strategy == "laecips" for it in plan.items):
            # LAECIPS' confidence needs token probabilities: fail before anything runs, or (in a
            # protocol or `all`) leave it out and say so
            if args.protocol or args.strategy.strip() == "all":
                plan.items = [it for it in plan.items if it.spec.strategy != "laecips"]
                plan.notes.append(f"laecips skipped: the SVLM {args.svlm} reports no token probabilities")
            else:
                raise ConfigError(f"laecips needs the SVLM's token probabilities and {args.svlm} does not report "
                                  "them (capabilities.logprobs is false)", key="--strategy")

    # -- knobs for --target-lcr / the main protocol's bands ---------------------------------------
    probe = Simulator(task, all_streams, trace, None, cfg, keep_lines=False)
    searches: dict[str, dict] = {}
    later = []
    items = []
    for it in plan.items:
        if it.target is None:
            items.append(it)
        elif it.spec.strategy == "laecips":
            later.append(it)
        else:
            res = search(probe, it.spec, it.target)
            searches[it.spec.run_id] = {"target": it.target.label(), **res.to_json()}
            it.spec = res.spec
            items.append(it)
    probe_added = False
    if later and not any(it.spec.strategy == "svlm_only" for it in items):
        from edgevlm_eval.collab.protocols import PlanItem

        items.insert(0, PlanItem(later[0].spec.with_(strategy="svlm_only", name="svlm_only"), None, "probe",
                                 "SVLM only (probe for LAECIPS' theta)"))
        probe_added = True

    ordered = ([items[0]] if probe_added else []) + plan.items  # the plan's order, for tables
    log = FrameLogWriter(folder / log_name(rank, world), {"config_hash": chash, "rank": rank, "world": world},
                         append=True)
    total = sum(len(s) for s in mine) * (len(items) + len(later))
    prog, advance = _progress(total, f"{task.name}: {run_name}", rank)
    t0 = time.perf_counter()
    try:
        with prog:
            advance(sum(1 for k in done))  # frames done before a resume
            sim = Simulator(task, mine, trace, svlm, cfg, log=log, done=done, keep_lines=False)
            _write_run_json(run_json, rank, chash, args, cfg, task, plan, ordered, searches, probe_added, stream_info)
            sim.run([it.spec for it in items], progress=advance)
            latency_info = sim.latency_info()
            if later:
                log.flush()
                _barrier(world)
                _, lines = read_logs(folder)
                conf = [ln["svlm"]["conf"] if ln.get("svlm") else None for ln in lines if ln["run"] == "svlm_only"]
                n_frames = sum(1 for ln in lines if ln["run"] == "svlm_only")
                for it in later:
                    res = search_theta(conf, n_frames, it.spec, it.target)
                    searches[it.spec.run_id] = {"target": it.target.label(), **res.to_json()}
                    it.spec = res.spec
                _write_run_json(run_json, rank, chash, args, cfg, task, plan, ordered, searches, probe_added, stream_info)
                sim2 = Simulator(task, mine, trace, svlm, cfg, log=log, done=done, keep_lines=False)
                sim2.run([it.spec for it in later], progress=advance)
                latency_info.update(sim2.latency_info())
    finally:
        log.close()
    wall = time.perf_counter() - t0
    _barrier(world)
    if rank != 0:
        return 0
    extra = {"wall_s": round(wall, 3), "world": world, "latency_sources": latency_info}
    doc = results_from_folder(folder, task, extra=extra, svlm_info=svlm.describe() if svlm else None)
    _report(doc, task)
    print(f"results: {folder / 'results.json'}")
    if getattr(args, "plots", True):  # not part of the run's configuration (hash)
        _plot(folder)
    return 0


def _plot(folder: Path) -> None:
    """The figures the run's results support (metric vs LCR, sweeps, delay), next to them. A plot
    that fails is reported, never fatal: the results are already written."""
    try:
        from edgevlm_eval.app.plotting import plot_results

        files = plot_results([folder / "results.json"], folder / "plots", formats=("png",), include_paper=False)
    except Exception as e:  # noqa: BLE001 - plotting must not lose a finished run
        print(f"plots: not written ({type(e).__name__}: {e})", file=sys.stderr)
        return
    if files:
        print(f"plots: {folder / 'plots'} ({len(files)} files)")


def _progress(total: int, desc: str, rank: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=True, disable=rank != 0 or not sys.stderr.isatty())
    tid = prog.add_task(desc, total=total)
    return prog, (lambda n=1: prog.advance(tid, n))


def _write_run_json(path, rank, chash, args, cfg, task, plan, items, searches, probe_added, stream_info=None):
    if rank != 0:
        return
    config = resolved_config(args, cfg, task)
    info = {k: (stream_info or {}).get(k) for k in ("cache_key", "root") if (stream_info or {}).get(k) is not None}
    atomic_write_json(path, {
        "format": "edgevlm-eval.run/1", "config_hash": chash, "config": redact(config), "stream_info": info,
        "protocol": plan.name, "notes": plan.notes,
        "runs": [{"spec": it.spec.to_json(), "group": it.group, "label": it.label,
                  "target": it.target.label() if it.target else None} for it in items],
        "search": searches, "probe_added": probe_added,
    })


def results_from_folder(folder: Path, task: TaskConfig, *, extra: dict | None = None,
                        svlm_info: dict | None = None) -> dict:
    """results.json from run.json + the per-frame logs (the pure scoring path)."""
    from edgevlm_eval.collab.accounting import summarise
    from edgevlm_eval.collab.protocols import Plan, PlanItem, table
    from edgevlm_eval.collab.search import Target
    from edgevlm_eval.collab.strategies import RunSpec, spec_fields
    from edgevlm_eval.core.framelog import check_unique

    run_json = folder / "run.json"
    if not run_json.exists():
        raise DatasetError("not a run folder (run.json is missing)", path=str(folder))
    meta = json.loads(run_json.read_text(encoding="utf-8"))
    _, lines = read_logs(folder)
    check_unique(lines, str(folder))
    summaries = summarise(lines, task)
    specs = {r["spec"]["run"]: r["spec"] for r in meta["runs"]}
    runs = {rid: summaries[rid] for rid in specs if rid in summaries}
    config = meta["config"]
    n_boot = int(config.get("bootstrap") or 0)
    off_target = []
    for rid, s in runs.items():
        if rid in meta.get("search", {}):
            target = Target.from_label(meta["search"][rid]["target"])
            s["search"] = {**meta["search"][rid], "reached": target.reached(s["lcr"])}
            if not s["search"]["reached"]:
                off_target.append(f"{rid}: LCR {100 * s['lcr']:.1f} % is outside its target "
                                  f"{s['search']['target']} %, the nearest its knob reaches on these frames "
                                  "(compare it with that in mind)")
        if n_boot > 0:
            from edgevlm_eval.core.bootstrap import METHOD, bootstrap_run, intervals_to_json

            seed = int(config.get("bootstrap_seed") or 0)
            s["ci"] = intervals_to_json(bootstrap_run(lines, rid, task.label_space, task.metrics, n=n_boot, seed=seed))
            s["ci_method"] = METHOD
    trace = _trace_prov(config)
    lvlm = config.get("lvlm") or trace.get("model")
    if trace.get("model_info"):
        lvlm = {**trace["model_info"], "spec": trace.get("model")}
    prov = provenance(config=config, task=task, stream_info=meta.get("stream_info"),
                      models={"svlm": svlm_info or config.get("svlm"), "lvlm": lvlm},
                      trace=trace, seeds=_seeds(config), extra=extra)
    prov["config_hash"] = meta["config_hash"]
    if meta.get("notes") or off_target:
        prov["notes"] = [*meta.get("notes", []), *off_target]
    plan = Plan(meta["protocol"], notes=meta.get("notes", []))
    for r in meta["runs"]:
        sp = {k: v for k, v in r["spec"].items() if k in spec_fields() and k != "latency"}
        sp["K_delay"] = float("inf") if sp.get("K_delay") == "inf" else sp.get("K_delay", 4)
        plan.items.append(PlanItem(RunSpec(**{**sp, "name": r["spec"]["run"], "latency": r["spec"].get("latency")}),
                                   None, r["group"], r["label"]))
    proto = table(plan, runs, task.metrics) if meta["protocol"] != "strategies" else None
    n_frames = len({(ln["stream"], ln["frame"]) for ln in lines})
    doc = build_results(prov, task.name, runs, specs=specs, n_streams=len({ln["stream"] for ln in lines}),
                        n_frames=n_frames, protocol=proto)
    write_results(folder / "results.json", doc)
    return doc


def _trace_prov(config: dict) -> dict:
    p = config.get("trace")
    if not p or not Path(p).exists():
        return {"path": p} if p else {}
    from edgevlm_eval.collab.trace import file_sha256

    out = {"path": p, "sha256": file_sha256(p)}
    try:
        with open(p, encoding="utf-8") as fh:
            head = json.loads(fh.readline())
        out.update({k: head.get(k) for k in ("model", "model_info", "latency", "created", "task_version",
                                             "toolkit_version")})
    except (OSError, json.JSONDecodeError):
        pass
    return out


def _seeds(config: dict) -> dict:
    out = {}
    lat = str(config.get("latency") or "")
    if "seed=" in lat:
        out["latency"] = int(lat.split("seed=")[1].split(",")[0])
    if config.get("bootstrap"):
        out["bootstrap"] = int(config.get("bootstrap_seed") or 0)
    return out


def _report(doc: dict, task: TaskConfig) -> None:
    for tname, block in doc["tasks"].items():
        cols, rows = summary_table(task, block["runs"])
        _print_table(f"{tname}: {len(block['runs'])} runs, {block['frames']} frames", cols, rows)
    late = [(rid, r["invalid"]["by_reason"].get("svlm_late", 0), r["frames"]) for b in doc["tasks"].values()
            for rid, r in b["runs"].items()]
    worst = max(late, key=lambda x: x[1] / max(1, x[2]), default=None)
    if worst and worst[1] > worst[2] / 2:
        print(f"note: {worst[1]} of {worst[2]} SVLM answers of run {worst[0]} took longer than tau on this machine and "
              "count as invalid; pass --edge-fast to assume an edge fast enough, or --edge-latency SECONDS")
    proto = doc.get("protocol")
    if proto:
        _print_table(f"protocol {proto['name']}", proto["columns"], proto["rows"])
    for n in doc["provenance"].get("notes", []):
        print("note:", n)


def rescore(folder: Path, task: TaskConfig, print_table: bool = True) -> int:
    doc = results_from_folder(folder, task, extra={"rescored": True})
    if print_table:
        _report(doc, task)
        print(f"results: {folder / 'results.json'} (re-scored from the per-frame log)")
    return 0


def rescore_main(argv: Sequence[str] | None = None) -> int:
    """`python -m edgevlm_eval.app.runner RUN_FOLDER --task T`: results.json from a run folder's log,
    without models and without the dataset (only the task's YAML: labels and metrics)."""
    from edgevlm_eval.tasks import load_task

    p = argparse.ArgumentParser(prog="python -m edgevlm_eval.app.runner", description=rescore_main.__doc__)
    p.add_argument("folder", help="run folder (holds run.json and frames*.jsonl)")
    p.add_argument("--task", required=True, help="task name or YAML path")
    p.add_argument("--tasks-dir", dest="tasks_dir", action="append", default=[])
    a = p.parse_args(argv)
    try:
        return rescore(Path(a.folder), load_task(a.task, a.tasks_dir))
    except EdgeVLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(rescore_main())
