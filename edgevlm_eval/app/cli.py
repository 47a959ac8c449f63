"""The `edgevlm-eval` command line.

    edgevlm-eval --task T --svlm S --lvlm L [--strategy X] ...   the main command (evaluate)
    edgevlm-eval tasks | models | streams | record | serve | leaderboard | plot | compare | rescore | plan

Subcommands that live in their own modules expose `add_arguments(parser)` and `main(args) -> int`;
they are imported only when they run, so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from edgevlm_eval import __version__
from edgevlm_eval.core.errors import EdgeVLMError

# name -> (module, one-line help). Modules are imported only when their subcommand runs.
MODULE_COMMANDS: dict[str, tuple[str, str]] = {
    "record": ("edgevlm_eval.app.record", "run the LVLM on every frame of a task and write an LVLM trace"),
    "serve": ("edgevlm_eval.model_adapters.serve", "serve a local model as an OpenAI-compatible endpoint"),
    "leaderboard": ("edgevlm_eval.app.leaderboard", "collect results JSONs into one table"),
    "plot": ("edgevlm_eval.app.plotting", "plot results (metric vs LCR, sweeps, latency)"),
    "compare": ("edgevlm_eval.app.compare", "paired bootstrap: is run A better than run B on the same frames"),
    "plan": ("edgevlm_eval.app.plan", "the keyframe policy without a model: LCR and history lag per K_call"),
}
CORE_COMMANDS = {
    "run": "evaluate strategies on a task (the default command)",
    "tasks": "list the tasks with their label space, rate and whether their data was found",
    "models": "list the model registry entries with their capabilities",
    "streams": "convert a task's dataset and write its streams, one frame per line",
    "rescore": "recompute a run folder's results.json from its per-frame log (no model, no dataset)",
}

EPILOG = """commands:
  (none)/run   evaluate: edgevlm-eval --task demo --svlm demo-svlm --lvlm demo-lvlm
""" + "".join(f"  {k:<12} {v}\n" for k, v in {**{k: v for k, v in CORE_COMMANDS.items() if k != 'run'},
                                              **{k: h for k, (_, h) in MODULE_COMMANDS.items()}}.items()) + """
Run `edgevlm-eval COMMAND --help` for a command's options.
Dataset roots come from --data-root or the environment variable each task names (see `edgevlm-eval tasks`).
Exit codes: 0 done, 2 error (nothing scored), 3 done but compromised (failed LVLM or SVLM replies; see the notes).
"""


def _console():
    from .console import console

    return console()


# ---------------------------------------------------------------------------------------------
# parsers


def _count(v: str) -> int:
    """--limit / --max-frames: a positive integer."""
    from .options import positive_int

    try:
        return positive_int(v, "")
    except EdgeVLMError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}") from None


def add_task_args(p):
    p.add_argument("--task", required=True, metavar="T",
                   help="task name (see `edgevlm-eval tasks`) or path to a task YAML")
    p.add_argument("--data-root", dest="data_root", metavar="R",
                   help="dataset root folder (default: the env var the task names)")
    p.add_argument("--tasks-dir", dest="tasks_dir", action="append", default=[], metavar="D",
                   help="extra folder of task YAMLs (repeatable; also $EDGEVLM_TASKS_PATH)")
    p.add_argument("--no-cache", dest="no_cache", action="store_true",
                   help="convert the dataset again instead of reading the stream cache")


def add_selection_args(p):
    p.add_argument("--limit", type=_count, metavar="N", help="use only the first N streams (sorted by id)")
    p.add_argument("--max-frames", dest="max_frames", type=_count, metavar="N",
                   help="use only the first N frames of each stream")


def add_models_dir_arg(p):
    p.add_argument("--models-dir", dest="models_dir", action="append", default=[], metavar="D",
                   help="extra folder of user models.yaml files, or one such file (repeatable; also "
                        "$EDGEVLM_MODELS_PATH, os.pathsep-separated)")


def add_output_args(p):
    p.add_argument("--quiet", action="store_true", help="no progress, warnings and errors only")
    p.add_argument("--verbose", action="store_true", help="debug logging")


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


def build_run_parser(prog: str = "edgevlm-eval") -> argparse.ArgumentParser:
    from .options import add_engine_arguments

    p = argparse.ArgumentParser(
        prog=prog,
        allow_abbrev=False,  # --K-cal must not silently mean --K-call
        description="Evaluate cloud-edge collaboration of a small edge VLM (SVLM) and a large cloud VLM (LVLM) "
                    "on real-time video: edgeVLM (Context Transfer) and the baselines, replayed on recorded "
                    "cloud latency.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"edgevlm-eval {__version__}")
    g = p.add_argument_group("what to evaluate")
    add_task_args(g)
    g.add_argument("--svlm", metavar="S", help="edge model: a registry name (see `edgevlm-eval models`) or adapter:path")
    g.add_argument("--lvlm", metavar="L", help="cloud model: a registry name or adapter:path")
    add_models_dir_arg(g)
    add_selection_args(g)
    g.add_argument("--output-dir", dest="output_dir", default="runs", metavar="D",
                   help="where runs go: D/<task>/<svlm>__<lvlm>/<run>/ (default: ./runs)")
    add_output_args(g)
    add_engine_arguments(p)
    _suggest_on_error(p)
    return p


def build_parser(command: str) -> argparse.ArgumentParser:
    prog = f"edgevlm-eval {command}"
    if command == "run":
        return build_run_parser(prog)
    if command in CORE_COMMANDS:
        p = argparse.ArgumentParser(prog=prog, allow_abbrev=False, description=CORE_COMMANDS[command])
        if command == "tasks":
            p.add_argument("--tasks-dir", dest="tasks_dir", action="append", default=[], metavar="D")
            p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        elif command == "models":
            p.description += ". User entries come from models.yaml files (docs/models.md)."
            p.add_argument("--json", action="store_true", help="print JSON instead of a table")
            add_models_dir_arg(p)
            p.add_argument("--check", metavar="SPEC",
                           help="load this model (a name or spec) and answer one real request about a small "
                                "generated image; exit 2 with the cause when it cannot")
        elif command == "streams":
            p.description += (". The file starts with a header line, then one frame per line "
                              "(stream, index, timestamp_s, images, query, labels).")
            add_task_args(p)
            add_selection_args(p)
            p.add_argument("--out", required=True, metavar="F.jsonl", help="output file")
            p.add_argument("--check-images", dest="check_images", action="store_true",
                           help="decode every frame image and report missing or corrupt ones")
        elif command == "rescore":
            p.add_argument("folder", help="run folder (holds run.json and frames*.jsonl)")
            p.add_argument("--task", required=True, help="task name or YAML path (for its labels and metrics)")
            p.add_argument("--tasks-dir", dest="tasks_dir", action="append", default=[])
        add_output_args(p)
        return p
    module, help_ = MODULE_COMMANDS[command]
    p = argparse.ArgumentParser(prog=prog, allow_abbrev=False, description=help_)
    importlib.import_module(module).add_arguments(p)
    if not any("--quiet" in a.option_strings for a in p._actions):
        add_output_args(p)
    return p


# ---------------------------------------------------------------------------------------------
# commands


def load_task_and_streams(args, task=None) -> tuple:
    """(task, streams, info) for the --task/--data-root/--limit/--max-frames arguments."""
    from .data import load_task_and_streams as load

    return load(args.task, tasks_dir=args.tasks_dir, data_root=args.data_root, no_cache=args.no_cache,
                limit=getattr(args, "limit", None), max_frames=getattr(args, "max_frames", None), task=task)


def cmd_run(args) -> int:
    from .options import build_config
    from .pipeline import main as run_pipeline

    return run_pipeline(build_config(args))


def cmd_rescore(args) -> int:
    from .pipeline import rescore_folder

    return rescore_folder(args.folder, args.task, args.tasks_dir)


def cmd_tasks(args) -> int:
    import json

    from rich.table import Table

    from edgevlm_eval.tasks import discover, load_task_file

    rows = []
    for name, path in sorted(discover(args.tasks_dir).items()):
        try:
            t = load_task_file(path)
        except EdgeVLMError as e:
            rows.append({"name": name, "error": str(e), "file": str(path)})
            continue
        found = t.data_found()
        env = t.dataset.get("root_env")
        rows.append({
            "name": t.name, "converter": t.converter, "fps": t.fps, "images_per_query": t.images_per_query,
            "multi_label": t.label_space.multi_label, "labels": t.label_space.names,
            "metrics": t.metrics, "data": {None: "not needed", True: "found", False: "not found"}[found],
            "root_env": env, "file": str(path),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="edgevlm-eval tasks")
    for col in ("task", "rate", "img/q", "labels", "metrics", "data"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if "error" in r:
            table.add_row(r["name"], "", "", f"[red]{r['error']}[/red]", "", "")
            continue
        kind = "multi" if r["multi_label"] else "single"
        data = r["data"] + (f" (${r['root_env']})" if r["root_env"] and r["data"] != "not needed" else "")
        table.add_row(r["name"], f"{r['fps']:g} FPS", str(r["images_per_query"]),
                      f"{len(r['labels'])} ({kind}): " + ", ".join(r["labels"]), ", ".join(r["metrics"]), data)
    _console().print(table)
    return 0


def cmd_models(args) -> int:
    import json

    from rich.table import Table

    from edgevlm_eval.model_adapters import registry

    saved = [p for p, by in registry.models_path() if by == "--models-dir"]
    registry.set_models_path(args.models_dir)
    try:
        if args.check:
            return _check_model(args.check, as_json=args.json)
        rows = [registry.entry_summary(e) for e in registry.list_models()]
    finally:
        registry.set_models_path(saved)  # in-process callers (tests) keep their own search path
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    table = Table(title="edgevlm-eval models")
    for col in ("name", "adapter", "checkpoint", "capabilities", "edge s", "price $/1M in/out", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        caps = r.get("capabilities") or {}
        flags = ", ".join(k for k, v in caps.items() if v is True)
        if "error" in r:
            flags = f"[red]{r['error']}[/red]"
        edge = f"{r['edge_latency_s']:g}" if r.get("edge_latency_s") is not None else ""
        price = r.get("price")
        cost = f"{price['input_usd_per_mtok']:g} / {price['output_usd_per_mtok']:g}" if price else ""
        desc = str(r.get("description") or "")
        if r.get("source") not in (None, "built-in"):
            desc += f" [dim](from {r['source']})[/dim]"
        table.add_row(str(r.get("name")), str(r.get("adapter")), str(r.get("checkpoint") or ""), flags, edge, cost,
                      desc)
    _console().print(table)
    return 0


def _check_model(spec: str, *, as_json: bool) -> int:
    """`models --check SPEC`: one real request through the preflight check (never prints a key)."""
    import json

    from edgevlm_eval.model_adapters.check import check_model

    rep = check_model(spec)
    r = rep.reply
    opts = rep.adapter.get("options") or {}
    found = {
        "spec": spec, "name": rep.entry.get("name"), "source": rep.entry.get("source"),
        "adapter": rep.entry.get("adapter"), "checkpoint": rep.adapter.get("checkpoint", rep.entry.get("checkpoint")),
        "endpoint": opts.get("base_url"), "capabilities": rep.adapter.get("capabilities") or rep.entry.get(
            "capabilities"),
        "key_env": rep.key_env, "key_set": rep.key_set, "reply": r.raw_text or r.text,
        "latency_s": round(rep.latency_s, 4), "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
        "cost_usd": rep.cost_usd, "price": rep.entry.get("price"), "edge_latency_s": rep.entry.get("edge_latency_s"),
        "edge_latency_basis": rep.entry.get("edge_latency_basis"),
    }
    if as_json:
        print(json.dumps(found, indent=2, default=str))
        return 0
    caps = ", ".join(k for k, v in (found["capabilities"] or {}).items() if v is True) or "none"
    key = "none" if not rep.key_env else f"${rep.key_env} ({'set' if rep.key_set else 'not set'})"
    usage = "not reported" if r.prompt_tokens is None and r.completion_tokens is None else \
        f"{r.prompt_tokens} prompt + {r.completion_tokens} completion tokens"
    lines = [f"model:        {found['name']} ({found['source']})", f"adapter:      {found['adapter']}",
             f"checkpoint:   {found['checkpoint']}"]
    if found["endpoint"]:
        lines.append(f"endpoint:     {found['endpoint']}")
    lines += [f"capabilities: {caps}", f"key:          {key}", f"reply:        {found['reply']!r}",
              f"latency:      {rep.latency_s:.3f} s", f"usage:        {usage}"]
    if rep.cost_usd is not None:
        lines.append(f"cost:         ${rep.cost_usd:.6f}")
    if found["edge_latency_s"] is not None:
        lines.append(f"edge latency: {found['edge_latency_s']:g} s ({found['edge_latency_basis']})")
    print("\n".join(lines))
    print(f"ok: {spec} answers")
    return 0


def cmd_streams(args) -> int:
    from edgevlm_eval.core.images import check_image
    from edgevlm_eval.tasks.streams import write_streams

    from .data import summary_line
    from .progress import Progress

    task, streams, info = load_task_and_streams(args)
    extra = {"cache_key": info["cache_key"], "root": info["root"]}
    bad = []
    if args.check_images:
        with Progress(sum(len(s) for s in streams), "checking images") as prog:
            for s in streams:
                for f in s.frames:
                    for img in f.images:
                        reason = check_image(img)
                        if reason:
                            bad.append({"stream": f.stream_id, "frame": f.index, "reason": reason})
                    prog.advance(1)
        extra["bad_images"] = len(bad)
    write_streams(args.out, task, streams, extra)
    con = _console()
    con.print(summary_line(task, streams) + f" -> {args.out}" + (" (from cache)" if info["cache_hit"] else ""))
    if args.check_images:
        con.print(f"{len(bad)} frame images missing or corrupt" + (":" if bad else "."))
        for b in bad[:20]:
            con.print(f"  {b['stream']} frame {b['frame']}: {b['reason']}")
        if len(bad) > 20:
            con.print(f"  ... and {len(bad) - 20} more")
    return 0


CORE_HANDLERS: dict[str, Callable] = {"run": cmd_run, "tasks": cmd_tasks, "models": cmd_models, "streams": cmd_streams,
                                      "rescore": cmd_rescore}


def main(argv: Sequence[str] | None = None) -> int:
    from .progress import setup_output

    argv = list(sys.argv[1:] if argv is None else argv)
    command = "run"
    explicit = bool(argv) and argv[0] in (*CORE_COMMANDS, *MODULE_COMMANDS)
    if explicit:
        command = argv.pop(0)
    # `edgevlm-eval --task ...` is the main command: its usage line reads `edgevlm-eval`
    parser = build_parser(command) if explicit else build_run_parser("edgevlm-eval")
    args = parser.parse_args(argv)
    args.command = command
    setup_output(quiet=getattr(args, "quiet", False), verbose=getattr(args, "verbose", False))
    try:
        if command in CORE_HANDLERS:
            return CORE_HANDLERS[command](args)
        return int(importlib.import_module(MODULE_COMMANDS[command][0]).main(args) or 0)
    except EdgeVLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; a run resumes from its per-frame log when started again", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
