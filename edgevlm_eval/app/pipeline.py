"""The main command as one pipeline (docs/results.md, docs/method.md):

    check   the task, the models, every engine option and the runs: cheap, before anything else
    plan    the runs to replay (strategies with their knobs, targets), and the run folder
    data    the task's streams (converted or from the cache), the calibration split's streams when a
            run is calibrated (needs.calibration), the LVLM trace (recorded once)
    calibrate  an SVLM-only replay of the calibration streams (never scored), each calibrated
            strategy's `calibrate` on it; the state is kept in the run folder (calibration.json) so
            that resume and --rescore never refit
    execute the knob searches, then every run replayed in lockstep, logged frame by frame
    report  results.json (a pure function of run.json and the log), the table, the figures

The driver names no strategy: each run's class says what it needs and how its call ratio is
tuned. Exit codes: 0 done; 2 an error (nothing scored); 3 done but compromised (failed LVLM
frames, failed SVLM replies), with the reasons printed and stored in results.json.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from edgevlm_eval.collab.edge import EdgeLatency, FileEdge, FixedEdge, parse_edge_latency
from edgevlm_eval.collab.latency import parse_latency, parse_uplink
from edgevlm_eval.collab.protocols import PlanItem
from edgevlm_eval.collab.search import search
from edgevlm_eval.collab.simulator import SimConfig, Simulator, load_done, svlm_results
from edgevlm_eval.collab.strategies import BUILTIN
from edgevlm_eval.collab.strategy import Run
from edgevlm_eval.core.errors import ConfigError, DatasetError, EdgeVLMError
from edgevlm_eval.core.io import atomic_write_json
from edgevlm_eval.core.taskconfig import TaskConfig
from edgevlm_eval.core.types import Stream
from edgevlm_eval.model_adapters import registry  # attribute access: one place to stub it in tests
from edgevlm_eval.tasks import load_task

from .args import add_tasks_dir_arg
from .console import console
from .data import load_task_and_streams, summary_line
from .options import RunConfig, build_config
from .plotting import plot_results
from .progress import Progress
from .record import ensure_trace
from .results import portable_paths, print_report, redact, results_from_folder
from .runfolder import RunFolder, config_hash
from .runs import RunPlan, build_runs

log = logging.getLogger(__name__)
EXIT_OK, EXIT_ERROR, EXIT_COMPROMISED = 0, 2, 3


# ---------------------------------------------------------------------------------------------
# distribution (accelerate launch / torchrun): streams are independent, so each process replays its own


def dist() -> tuple[int, int]:
    """(rank, world) under `accelerate launch` / torchrun (env vars), else (0, 1)."""
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        return 0, 1


def barrier(world: int) -> None:
    """Wait for every process. A gloo group suffices (only files are shared)."""
    if world <= 1:
        return
    import torch.distributed as tdist

    if not tdist.is_initialized():
        tdist.init_process_group(backend="gloo")
    tdist.barrier()


def shard(streams: Sequence[Stream], rank: int, world: int) -> list[Stream]:
    """Streams of one process: every world-th stream by sorted id."""
    return [s for i, s in enumerate(sorted(streams, key=lambda s: s.id)) if i % world == rank]


def load_svlm(spec: str, world: int = 1):
    """The SVLM adapter; when sharded over several GPUs, one model per process on its own GPU."""

    if world > 1:
        try:
            import torch

            if torch.cuda.is_available():
                try:
                    return registry.load_adapter(spec, device=f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}", device_map=None)
                except ConfigError:
                    pass  # an adapter without device options (HTTP models)
        except ImportError:
            pass
    return registry.load_adapter(spec)


# ---------------------------------------------------------------------------------------------
# check + plan


@dataclass
class Checked:
    """What the cheap checks established."""

    cfg: RunConfig
    task: TaskConfig
    runs: RunPlan
    sim: SimConfig
    edge: EdgeLatency
    folder: RunFolder
    svlm_entry: object | None
    plan_hash: str
    inputs: dict  # what shapes every frame's output, hashed into the plan and configuration hashes (_inputs)


def _edge(cfg: RunConfig, svlm_entry, needs_svlm: bool) -> EdgeLatency:
    """The SVLM's edge latency source: declared by its model entry unless the run says otherwise."""
    if cfg.edge_latency != "declared":
        return parse_edge_latency(cfg.edge_latency)
    if not needs_svlm:
        return FixedEdge(0.0, spec="declared", basis="no run uses the SVLM")
    figure = getattr(svlm_entry, "edge_latency_s", None)
    if figure is None:
        raise ConfigError(f"the SVLM {cfg.svlm!r} declares no edge latency (its model entry has no edge_latency_s): "
                          "give --edge-latency fixed:S (seconds per answer on your edge device), file:F.csv (per "
                          "frame), or measured (timed on this machine, one request at a time; then the scores depend "
                          "on this machine's speed and load)", key="--edge-latency")
    return FixedEdge(figure, spec="declared", basis=getattr(svlm_entry, "edge_latency_basis", "") or "")


def _edge_key(edge: EdgeLatency):
    """What of the edge latency source shapes the per-frame results beyond its spec (part of the
    configuration hash): a declared or fixed figure, a file's table (measured: nothing)."""
    if isinstance(edge, FixedEdge):
        return edge.s
    if isinstance(edge, FileEdge):
        return hashlib.sha256(json.dumps(sorted([*k, v] for k, v in edge.table.items())).encode()).hexdigest()[:16]
    return None


def _inputs(cfg: RunConfig, task: TaskConfig, sim: SimConfig, svlm_entry, edge: EdgeLatency, source) -> dict:
    """What shapes every frame's output, beyond the runs and their knobs: the part of the plan hash
    (checked before anything runs) and of the configuration hash (before a folder resumes) that
    the two share. Beyond the names: the task's merged YAML (a reworded prompt with an unchanged
    `version`), the SVLM entry's adapter, checkpoint and options (a models.yaml edit), the edge
    latency's figure or table (_edge_key) and a --latency file's content."""
    key = {"task": [task.name, task.version], "sim": sim.to_json(), "svlm": cfg.svlm,
           "task_yaml": hashlib.sha256(json.dumps(task.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]}
    if svlm_entry is not None:
        key["svlm_entry"] = {k: getattr(svlm_entry, k, None) for k in ("adapter", "checkpoint")}
        key["svlm_entry"]["options"] = dict(getattr(svlm_entry, "options", None) or {})
    edge_key = _edge_key(edge)
    if edge_key is not None:
        key["edge"] = edge_key
    if getattr(source, "sha256", None):
        key["latency_sha"] = source.sha256
    return key


def check(cfg: RunConfig, task: TaskConfig | None = None) -> Checked:
    """Every cheap check, in an order that fails before anything expensive runs. `task` given: the
    caller holds the streams (no dataset root to check)."""

    if cfg.models_dir:
        registry.set_models_path(cfg.models_dir)  # user models.yaml entries, before any spec is resolved
    if task is None:
        task = load_task(cfg.task, list(cfg.tasks_dir))
        if not cfg.rescore:
            task.resolve_root(cfg.data_root)  # a missing dataset folder, named, before anything else
    svlm_entry = registry.resolve(cfg.svlm) if cfg.svlm else None  # unknown names fail here, listing the known ones
    lvlm_entry = registry.resolve(cfg.lvlm) if cfg.lvlm else None
    for role, entry in (("--svlm", svlm_entry), ("--lvlm", lvlm_entry)):
        env = registry.missing_key(entry) if entry is not None else None
        if env:
            raise ConfigError(f"model {entry.name!r} needs an API key: set the environment variable {env} "
                              "(keys are read from the environment only, never from files or flags)", key=role)
    source = parse_latency(cfg.latency)
    uplink = parse_uplink(cfg.uplink) if cfg.uplink else getattr(source, "uplink", None)
    logprobs = svlm_entry.capabilities.logprobs if svlm_entry is not None else None
    runs = build_runs(cfg, have_uplink=uplink is not None, svlm_logprobs=logprobs,
                      have_calibration=task.calibration is not None, task_name=task.name)
    if not runs.items:
        raise ConfigError("nothing to run: every strategy was left out (see the notes above)", key="--strategy")
    for n in runs.notes:
        log.info("note: %s", n)
    if runs.needs.svlm and not cfg.svlm:
        raise ConfigError("these strategies run the SVLM: give --svlm (see `edgevlm-eval models`)", key="--svlm")
    if runs.needs.trace and not (cfg.lvlm or cfg.trace):
        raise ConfigError("these strategies replay the LVLM's replies: give --lvlm L (its trace is recorded once into "
                          "the output folder) or --trace F.jsonl from `edgevlm-eval record`", key="--lvlm")
    edge = _edge(cfg, svlm_entry, runs.needs.svlm)
    sim = SimConfig(tau=cfg.tau, delta=cfg.delta, H=cfg.H, edge_latency=edge, edge_fast=cfg.edge_fast,
                    check_images=cfg.image_check, batch_size=cfg.batch_size, latency=cfg.latency, uplink=uplink)
    lvlm_name = cfg.lvlm or (_trace_model(cfg.trace) if cfg.trace else None)
    folder = RunFolder(cfg.output_dir, task.name, cfg.svlm, lvlm_name, runs.name)
    inputs = _inputs(cfg, task, sim, svlm_entry, edge, source)
    plan_hash = config_hash({**inputs, "plan": _plan_json(runs.items), "limit": cfg.limit,
                             "max_frames": cfg.max_frames})
    if folder.run_json.exists() and not (cfg.overwrite or cfg.rescore):
        old = folder.read_run_json().get("plan_hash")
        if old not in (None, plan_hash):
            raise ConfigError(f"the run folder {folder} holds a run with another configuration; pass --overwrite to "
                              "replace that run (this folder only), or --run-name NAME for a folder of its own",
                              key="--run-name")
    return Checked(cfg, task, runs, sim, edge, folder, svlm_entry, plan_hash, inputs)


def _trace_model(path: str) -> str | None:
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            return json.loads(fh.readline()).get("model")
    except (OSError, ValueError, AttributeError):
        return None


def _plan_json(items: Sequence[PlanItem]) -> list:
    """The runs as the configuration hash sees them: knobs, target, and a fingerprint of each
    strategy's code (a run folder must not resume a strategy whose code was edited since)."""
    return [[it.spec.to_json(), it.target.label() if it.target else None, _code_of(it.spec.cls)] for it in items]


def _code_of(cls) -> str | None:
    try:
        return hashlib.sha256(Path(inspect.getsourcefile(cls)).read_bytes()).hexdigest()[:12]
    except (TypeError, OSError):
        return None


# ---------------------------------------------------------------------------------------------
# execute


def _run_json(ck: Checked, chash: str, items: Sequence[PlanItem], searches: dict, probe_added: bool,
              stream_info: dict, trace_meta: dict, latency: dict, svlm_info: dict | None = None,
              calibration: dict | None = None) -> dict:
    cfg = ck.cfg
    config = redact({**cfg.to_json(), **ck.sim.to_json()})
    info = {k: stream_info.get(k) for k in ("cache_key", "root") if stream_info.get(k) is not None}
    return {"config_hash": chash, "plan_hash": ck.plan_hash, "config": config, "stream_info": info,
            "protocol": ck.runs.plan.name, "notes": ck.runs.notes, "trace": trace_meta, "latency": latency,
            **({"calibration": calibration} if calibration else {}),
            "edge_latency": ck.edge.describe(), "svlm_info": svlm_info,
            "runs": [{"spec": it.spec.to_json(), "group": it.group, "label": it.label,
                      "target": it.target.label() if it.target else None, "display": it.spec.display()}
                     for it in items],
            "search": searches, "probe_added": probe_added, "world": dist()[1],
            "metric_options": {"macro_f1_label_set": cfg.macro_f1_labels or ck.task.macro_f1_label_set}}


def _scores(run: Run, lines, streams, sim_cfg) -> list:
    """Per-frame scores of a by-score knob from the probe run's SVLM replies (as the simulator
    shows them to `decide_after`: simulator.svlm_results). None: the SVLM did not run on the frame
    (its image was unusable), which no threshold uploads; a score the strategy leaves None reads 0."""
    strat = run.make(sim_cfg)
    out = []
    for r in svlm_results(lines, streams):
        h = strat.score(r) if r is not None else None
        out.append(None if r is None else (0.0 if h is None else h))
    return out


def _usage(trace, streams: Sequence[Stream]) -> dict:
    """Token usage the API reported for the replayed frames, summed, and its cost when the LVLM's
    registry entry states prices."""

    recs = [trace.records[(s.id, f.index)] for s in streams for f in s.frames if (s.id, f.index) in trace.records]
    p = sum(r.prompt_tokens or 0 for r in recs)
    c = sum(r.completion_tokens or 0 for r in recs)
    reported = sum(1 for r in recs if r.prompt_tokens is not None or r.completion_tokens is not None)
    cost = None
    if reported:
        try:
            cost = registry.usage_cost(registry.resolve(trace.model), p, c)
        except EdgeVLMError:  # a trace from a model this registry does not know: no price
            cost = None
    return {"frames_reporting": reported, "prompt_tokens": p, "completion_tokens": c, "cost_usd": cost}


# ---------------------------------------------------------------------------------------------
# the calibration split (strategies with needs.calibration: LAECIPS' classifier reading)

CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = "edgevlm-eval.calibration/1"


def load_calibration_streams(task: TaskConfig, cfg: RunConfig, evaluated: Sequence[Stream]) -> list[Stream]:
    """The task's calibration split (`calibration:` in its YAML: the converter with other options,
    or another dataset split, cut to its `limit` first streams by id), checked to share no frame
    image with the evaluated streams."""
    ctask = task.calibration_task()
    _, streams, _ = load_task_and_streams(ctask.name, tasks_dir=cfg.tasks_dir, data_root=cfg.data_root,
                                          no_cache=cfg.no_cache, limit=task.calibration.get("limit"), task=ctask)
    check_disjoint(evaluated, streams, task)
    console().print("calibration split: " + summary_line(ctask, streams) + " (never scored)")
    return streams


def check_disjoint(evaluated: Sequence[Stream], calibration: Sequence[Stream], task: TaskConfig) -> None:
    """A calibration split must not hold an evaluated frame: no image file in common."""
    if not calibration:
        raise DatasetError(f"task '{task.name}': its calibration split has no streams", path=task.source)
    seen = {p for s in evaluated for f in s.frames for p in f.images}
    shared = sorted({p for s in calibration for f in s.frames for p in f.images if p in seen})
    if shared:
        raise ConfigError(f"task '{task.name}': the calibration split shares {len(shared)} frame images with the "
                          f"evaluated streams (e.g. {shared[0]}); its `calibration:` must name another seed or "
                          "split, so that no evaluated frame is trained on", path=task.source, key="calibration")


def _split_info(task: TaskConfig, streams: Sequence[Stream]) -> dict:
    return {"file": CALIBRATION_FILE, "scored": False, "spec": dict(task.calibration or {}),
            "streams": [s.id for s in streams], "frames": sum(len(s) for s in streams)}


def calibrate(ck: "Checked", streams: Sequence[Stream], svlm, chash: str, *, rank: int = 0, world: int = 1) -> dict:
    """calibration.json's document: the split and, per calibration key, the state each calibrated
    strategy fitted on an SVLM-only replay of the calibration streams. Read back when the folder
    holds one for this configuration (resume), else fitted (rank 0) and written."""
    path = ck.folder.path / CALIBRATION_FILE
    wanted = {}
    for it in ck.runs.items:
        c = it.spec.cls
        if c.needs.calibration:
            wanted.setdefault(c.calibration_key(it.spec.knobs), (c, it.spec.knobs))

    def read() -> dict | None:
        if not path.exists():
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if doc.get("format") != CALIBRATION_FORMAT or doc.get("config_hash") != chash:
            return None
        return doc if set(wanted) <= set(doc.get("states") or {}) else None

    if rank == 0 and read() is None:
        ref_cls = next(c for c in BUILTIN.values() if c.reference)
        sim = Simulator(ck.task, streams, None, svlm, ck.sim, keep_lines=True)
        t0 = time.perf_counter()
        with Progress(sum(len(s) for s in streams), f"{ck.task.name}: calibration split ({ref_cls.name})") as prog:
            lines = sim.run([Run(ref_cls, ref_cls.Knobs(), name="calibration")], progress=prog.advance)
        split = _split_info(ck.task, streams)
        states = {}
        for key, (c, knobs) in wanted.items():
            state = c.calibrate(lines, list(streams), ck.task, knobs)
            states[key] = {**state, "split": split}
        atomic_write_json(path, {"format": CALIBRATION_FORMAT, "config_hash": chash, "task": ck.task.name,
                                 "svlm": ck.cfg.svlm, "split": split, "replay_s": round(time.perf_counter() - t0, 3),
                                 "states": states})
    barrier(world)
    doc = read()
    if doc is None:
        raise DatasetError("calibration.json was not written for this configuration", path=str(path))
    return doc


def _fit_summary(state: dict) -> str:
    bits = [f"{state.get('hard', '?')} of {state.get('n', '?')} frames hard ({state.get('hard_rule', '')})"]
    if state.get("cv_auc_by_stream") is not None:
        bits.append(f"2-fold AUC by stream {state['cv_auc_by_stream']:.3f}")
    if state.get("note"):
        bits.append(state["note"])
    return "; ".join(bits)


def _healed_trace_replaces(folder: RunFolder, payload: dict, chash: str, trace_info) -> bool:
    """True when this command re-asked failed frames of the trace and the folder's run differs from
    this one only by the trace it was scored on: that run is stale (its failed frames now have
    replies), so it is replayed from the start, and the log says so. Any other difference still
    needs --overwrite."""
    stats = getattr(trace_info, "stats", None)
    if stats is None or not stats.dropped or not folder.run_json.exists():
        return False
    try:
        before = folder.read_run_json()
    except DatasetError:
        return False
    old_trace = (before.get("trace") or {}).get("sha256")
    if before.get("config_hash") == chash or old_trace is None:
        return False
    if config_hash({**payload, "trace": old_trace}) != before.get("config_hash"):
        return False
    failed_before = ((before.get("trace") or {}).get("failed") or {}).get("frames")
    log.warning("%s was scored on the trace before its failed frames were re-asked (%s failed then, %d "
                "re-asked now, %d still failed): replaying it from the start on the healed trace",
                folder, failed_before if failed_before is not None else "some", stats.dropped, stats.failed)
    return True


def execute(ck: Checked, streams: list[Stream], trace_info, stream_info: dict,
            calibration_streams: Sequence[Stream] | None = None) -> dict:
    """Tune, replay and log every run; returns results.json's document. `calibration_streams`:
    the task's calibration split, when a run is calibrated (needs.calibration)."""
    cfg, task, folder, sim_cfg = ck.cfg, ck.task, ck.folder, ck.sim
    rank, world = dist()
    trace = trace_info.trace if trace_info is not None else None
    trace_meta = {}
    if trace_info is not None:
        trace_meta = {"path": str(trace_info.path), "sha256": trace.sha256(), "model": trace.model,
                      "header": {k: v for k, v in trace.header.items() if k != "format"},
                      "failed": {"frames": trace_info.failed, "of": trace_info.frames,
                                 "by_kind": trace_info.failed_by_kind},
                      **({k: trace.header.get(k) for k in ("model_info", "created", "task_version",
                                                          "toolkit_version", "latency_measurement")})}
        trace_meta["usage"] = _usage(trace, streams)
        if trace_info.stats is not None:
            s = trace_info.stats
            trace_meta["recorded_now"] = {"asked": s.asked, "failed": s.failed, "re_asked": s.dropped,
                                          "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens}
        trace_meta = portable_paths(trace_meta)
    all_streams = sorted(streams, key=lambda s: s.id)
    mine = shard(all_streams, rank, world)
    payload = {**ck.inputs, "streams": [[s.id, len(s)] for s in all_streams], "trace": trace_meta.get("sha256"),
               "plan": _plan_json(ck.runs.items)}
    if ck.runs.needs.calibration:
        if calibration_streams is None:
            raise ConfigError("a calibrated strategy needs the task's calibration split", key="--strategy")
        payload["calibration"] = [task.calibration, [[s.id, len(s)] for s in calibration_streams]]
    chash = config_hash(payload)
    overwrite = cfg.overwrite or _healed_trace_replaces(folder, payload, chash, trace_info)
    old = folder.open(chash, overwrite=overwrite, resume=cfg.resume, rank=rank)
    if cfg.overwrite and rank == 0:
        (folder.path / CALIBRATION_FILE).unlink(missing_ok=True)
    barrier(world)
    mine_ids = {s.id for s in mine}
    done = load_done(ln for ln in old if ln.stream in mine_ids)
    if cfg.resume and not old and rank == 0:
        log.info("--resume: nothing to resume in %s; starting", folder)

    svlm = load_svlm(cfg.svlm, world) if ck.runs.needs.svlm else None
    caps = getattr(svlm, "capabilities", None)
    if caps is not None and not caps.logprobs:
        lacking = [it.spec.run_id for it in ck.runs.items if it.spec.cls.needs.logprobs]
        if lacking:
            raise ConfigError(f"runs {lacking} need the SVLM's token probabilities and the loaded adapter of "
                              f"{cfg.svlm!r} does not report them (its registry entry said it would)", key="--svlm")

    # -- the calibration split: fitted once, kept in the folder ------------------------------------
    calibration_doc = None
    if ck.runs.needs.calibration:
        calibration_doc = calibrate(ck, calibration_streams, svlm, chash, rank=rank, world=world)
        split = calibration_doc["split"]
        for it in ck.runs.items:
            c = it.spec.cls
            if c.needs.calibration:
                it.spec = it.spec.with_(calibration=calibration_doc["states"][c.calibration_key(it.spec.knobs)])
        fitted = {}
        for it in ck.runs.items:
            if it.spec.cls.needs.calibration:
                fitted.setdefault(it.spec.strategy, it.spec.calibration)
        for name, state in fitted.items():
            spec = json.dumps(split["spec"], sort_keys=True)
            note = (f"{name}: fitted on the calibration split ({len(split['streams'])} streams, {split['frames']} "
                    f"frames: calibration {spec}), which is never scored; {_fit_summary(state)}; {CALIBRATION_FILE}")
            if note not in ck.runs.notes:
                ck.runs.notes.append(note)
            if rank == 0:
                log.info("note: %s", note)

    # -- knobs for --target-lcr / the main protocol's bands --------------------------------------
    probe = Simulator(task, all_streams, trace, None, sim_cfg, keep_lines=False)
    searches: dict[str, dict] = {}
    items, later = [], []
    for it in ck.runs.items:
        if it.target is None:
            items.append(it)
        elif it.spec.cls.lcr_knob.by_score:
            later.append(it)
        else:
            res = search(probe, it.spec, it.target)
            searches[it.spec.run_id] = {"target": it.target.label(), **res.to_json()}
            it.spec = res.spec
            items.append(it)
    # a by-score knob is tuned on the scores of the reference run (SVLM only on the same frames)
    ref_cls = next(c for c in BUILTIN.values() if c.reference)
    probe_added = False
    if later and not any(it.spec.cls is ref_cls for it in items):
        items.insert(0, PlanItem(Run(ref_cls, ref_cls.Knobs()), None, "probe",
                                 f"{ref_cls.display_label()} (probe for the score-tuned runs)"))
        probe_added = True
    ordered = ([items[0]] if probe_added else []) + ck.runs.items
    latency: dict = {}
    calib_summary = None
    if calibration_doc is not None:
        calib_summary = {**calibration_doc["split"], "fits": {
            k: {f: v.get(f) for f in ("model", "n", "hard", "hard_rule", "train_auc", "cv_auc_by_stream", "note")
                if v.get(f) is not None} for k, v in calibration_doc["states"].items()}}

    def write_run_json(svlm_info=None):
        if rank == 0:
            folder.write_run_json(_run_json(ck, chash, ordered, searches, probe_added, stream_info, trace_meta,
                                            latency, svlm_info, calib_summary))

    writer = folder.log_writer(chash, rank, world)
    total = sum(len(s) for s in mine) * (len(items) + len(later))
    t0 = time.perf_counter()
    try:
        with Progress(total, f"{task.name}: {ck.runs.name}") as prog:
            # logged frames (resume) are counted by the simulator as it passes them
            sim = Simulator(task, mine, trace, svlm, sim_cfg, log=writer, done=done, keep_lines=False)
            write_run_json()
            sim.run([it.spec for it in items], progress=prog.advance)
            latency.update(sim.latency_info())
            if later:
                writer.flush()
                barrier(world)
                ref_id = next(it.spec.run_id for it in items if it.spec.cls is ref_cls)
                probe_lines = [ln for ln in folder.lines() if ln.run == ref_id]
                for it in later:
                    res = search(None, it.spec, it.target, scores=_scores(it.spec, probe_lines, all_streams, sim_cfg),
                                 n_frames=len(probe_lines))
                    searches[it.spec.run_id] = {"target": it.target.label(), **res.to_json()}
                    it.spec = res.spec
                write_run_json()
                sim2 = Simulator(task, mine, trace, svlm, sim_cfg, log=writer, done=done, keep_lines=False)
                sim2.run([it.spec for it in later], progress=prog.advance)
                latency.update(sim2.latency_info())
    finally:
        writer.close()
    wall = time.perf_counter() - t0
    svlm_info = svlm.describe() if svlm is not None else None
    write_run_json(portable_paths(redact(svlm_info)) if svlm_info else None)
    barrier(world)
    if rank != 0:
        return {}
    return results_from_folder(folder, task, extra={"wall_s": round(wall, 3), "world": world,
                                                    "latency_sources": latency}, svlm_info=svlm_info)


# ---------------------------------------------------------------------------------------------
# the command


def exit_code(doc: dict) -> int:
    return EXIT_COMPROMISED if (doc.get("status") or {}).get("compromised") else EXIT_OK


def plot(folder: RunFolder) -> None:
    """The figures the run's results support; a plot that fails never loses the results."""
    try:
        files = plot_results([folder.results_json], folder.plots, formats=("png",), include_paper=False)
    except Exception as e:  # noqa: BLE001 - plotting must not lose a finished run
        log.warning("plots: not written (%s: %s)", type(e).__name__, e)
        return
    if files:
        print(f"plots: {folder.plots} ({len(files)} files)")


def main(cfg: RunConfig, *, task: TaskConfig | None = None, streams: list[Stream] | None = None,
         stream_info: dict | None = None, calibration_streams: list[Stream] | None = None) -> int:
    """The main command. `task`/`streams` (with `stream_info`) let a caller that already holds the
    streams (a library user, the tests) skip loading and converting them; `calibration_streams`
    likewise for the task's calibration split."""

    ck = check(cfg, task)
    if cfg.rescore:
        doc = results_from_folder(ck.folder, ck.task, extra={"rescored": True})
        print_report(doc, ck.task)
        print(f"results: {ck.folder.results_json} (re-scored from the per-frame log)")
        return exit_code(doc)
    if streams is None:
        task, streams, info = load_task_and_streams(cfg.task, tasks_dir=cfg.tasks_dir, data_root=cfg.data_root,
                                                    no_cache=cfg.no_cache, limit=cfg.limit,
                                                    max_frames=cfg.max_frames, task=ck.task)
        console().print(summary_line(task, streams) + (" (from cache)" if info["cache_hit"] else ""))
    else:
        task, info = ck.task, {"cache_hit": False, **(stream_info or {})}
    calib = None
    if ck.runs.needs.calibration:  # before the trace: a missing split fails before anything expensive
        if calibration_streams is not None:
            check_disjoint(streams, calibration_streams, task)
            calib = calibration_streams
        else:
            calib = load_calibration_streams(task, cfg, streams)
    rank, world = dist()
    trace_info = None
    if ck.runs.needs.trace or cfg.trace:
        trace_info = ensure_trace(cfg, task, streams, rank=rank, world=world, barrier=lambda: barrier(world))
        if trace_info.failed:
            log.warning("the LVLM trace has %d failed frames of %d (%s)%s", trace_info.failed, trace_info.frames,
                        ", ".join(f"{k}: {v}" for k, v in sorted(trace_info.failed_by_kind.items())),
                        "" if cfg.keep_failed else "; they are re-asked when the run is started again")
    doc = execute(ck, streams, trace_info, info, calib)
    if rank != 0:
        return EXIT_OK
    print_report(doc, task)
    print(f"results: {ck.folder.results_json}")
    if cfg.plots:
        plot(ck.folder)
    return exit_code(doc)


def rescore_folder(path, task_ref: str, tasks_dir=()) -> int:
    """results.json of a run folder from its per-frame log, without models or the dataset."""
    task = load_task(task_ref, list(tasks_dir))
    folder = RunFolder.at(path)
    doc = results_from_folder(folder, task, extra={"rescored": True})
    print_report(doc, task)
    print(f"results: {folder.results_json} (re-scored from the per-frame log)")
    return exit_code(doc)


def cli_main(args) -> int:
    """The main command from parsed arguments (edgevlm_eval.app.cli)."""
    return main(build_config(args))


def rescore_arguments(p) -> None:
    p.add_argument("folder", help="run folder (holds run.json and frames*.jsonl)")
    p.add_argument("--task", required=True, help="task name or YAML path (for its labels and metrics)")
    add_tasks_dir_arg(p)


def rescore_main(args) -> int:
    return rescore_folder(args.folder, args.task, args.tasks_dir)
