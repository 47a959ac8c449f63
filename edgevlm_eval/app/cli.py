"""The `edgevlm-eval` command line.

    edgevlm-eval --task T --svlm S --lvlm L [--strategy X] ...   the main command (evaluate)
    edgevlm-eval tasks | models | streams | record | serve | leaderboard | plot | compare

Subcommands that belong to other parts of the toolkit live in their own modules, each exposing
`add_arguments(parser)` and `main(args) -> int`; this file only wires them up, so that `--help`
stays fast and a missing optional part says so instead of crashing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from edgevlm_eval import __version__
from edgevlm_eval.core.errors import EdgeVLMError

# name -> (module, one-line help). Modules are imported only when their subcommand runs.
PLUGIN_COMMANDS: dict[str, tuple[str, str]] = {
    "record": ("edgevlm_eval.app.record", "run the LVLM on every frame of a task and write an LVLM trace"),
    "serve": ("edgevlm_eval.model_adapters.serve", "serve a local model as an OpenAI-compatible endpoint"),
    "leaderboard": ("edgevlm_eval.app.leaderboard", "collect results JSONs into one table"),
    "plot": ("edgevlm_eval.app.plotting", "plot results (metric vs LCR, sweeps, latency)"),
    "compare": ("edgevlm_eval.app.compare", "paired bootstrap: is run A better than run B on the same frames"),
}
CORE_COMMANDS = {
    "run": "evaluate strategies on a task (the default command)",
    "tasks": "list the tasks with their label space, rate and whether their data was found",
    "models": "list the model registry entries with their capabilities",
    "streams": "convert a task's dataset and write its streams, one frame per line",
}

EPILOG = """commands:
  (none)/run   evaluate: edgevlm-eval --task demo --svlm demo-svlm --lvlm demo-lvlm
""" + "".join(f"  {k:<12} {v}\n" for k, v in {**{k: v for k, v in CORE_COMMANDS.items() if k != 'run'},
                                              **{k: h for k, (_, h) in PLUGIN_COMMANDS.items()}}.items()) + """
Run `edgevlm-eval COMMAND --help` for a command's options.
Dataset roots come from --data-root or the environment variable each task names (see `edgevlm-eval tasks`).
"""


def _console(stderr: bool = False):
    from edgevlm_eval.app.console import console

    return console(stderr=stderr)


def _import_plugin(module: str):
    """The module of an optional part, or None if that part is not installed yet."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            return None
        raise


# ---------------------------------------------------------------------------------------------
# parsers


def _add_task_args(p: argparse.ArgumentParser, *, required: bool = True):
    p.add_argument("--task", required=required, metavar="T",
                   help="task name (see `edgevlm-eval tasks`) or path to a task YAML")
    p.add_argument("--data-root", dest="data_root", metavar="R",
                   help="dataset root folder (default: the env var the task names)")
    p.add_argument("--tasks-dir", dest="tasks_dir", action="append", default=[], metavar="D",
                   help="extra folder of task YAMLs (repeatable; also $EDGEVLM_TASKS_PATH)")
    p.add_argument("--no-cache", dest="no_cache", action="store_true",
                   help="convert the dataset again instead of reading the stream cache")


def positive_int(text: str) -> int:
    """argparse type for a count that must be 1 or more (--limit, --max-frames): 0 or -1 would
    silently select nothing or drop the last stream."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number (1 or more), got {text!r}")
    return value


def _add_selection_args(p: argparse.ArgumentParser):
    p.add_argument("--limit", type=positive_int, metavar="N", help="use only the first N streams (sorted by id)")
    p.add_argument("--max-frames", dest="max_frames", type=positive_int, metavar="N",
                   help="use only the first N frames of each stream")


def build_run_parser(prog: str = "edgevlm-eval") -> argparse.ArgumentParser:
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
    _add_task_args(g)
    g.add_argument("--svlm", metavar="S", help="edge model: a registry name (see `edgevlm-eval models`) or adapter:path")
    g.add_argument("--lvlm", metavar="L", help="cloud model: a registry name or adapter:path")
    _add_selection_args(g)
    g.add_argument("--output-dir", dest="output_dir", default="runs", metavar="D",
                   help="where results JSON, per-frame log and plots go (default: ./runs)")
    runner = _import_plugin("edgevlm_eval.app.runner")
    if runner is not None:
        runner.add_run_arguments(p)
    return p


def build_parser(command: str) -> argparse.ArgumentParser:
    prog = f"edgevlm-eval {command}"
    if command == "run":
        return build_run_parser(prog)
    if command == "tasks":
        p = argparse.ArgumentParser(prog=prog, allow_abbrev=False, description=CORE_COMMANDS["tasks"])
        p.add_argument("--tasks-dir", dest="tasks_dir", action="append", default=[], metavar="D")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        return p
    if command == "models":
        p = argparse.ArgumentParser(prog=prog, allow_abbrev=False, description=CORE_COMMANDS["models"])
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        return p
    if command == "streams":
        p = argparse.ArgumentParser(prog=prog, allow_abbrev=False, description=CORE_COMMANDS["streams"] +
                                    ". The file starts with a header line, then one frame per line "
                                    "(stream, index, timestamp_s, images, query, labels).")
        _add_task_args(p)
        _add_selection_args(p)
        p.add_argument("--out", required=True, metavar="F.jsonl", help="output file")
        p.add_argument("--check-images", dest="check_images", action="store_true",
                       help="decode every frame image and report missing or corrupt ones")
        return p
    module, help_ = PLUGIN_COMMANDS[command]
    p = argparse.ArgumentParser(prog=prog, allow_abbrev=False, description=help_)
    mod = _import_plugin(module)
    if mod is not None:
        mod.add_arguments(p)
    return p


# ---------------------------------------------------------------------------------------------
# commands


def _progress_counter(description: str):
    """A rich progress bar for work of unknown size; returns (context manager, advance(n))."""
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    prog = Progress(SpinnerColumn(), TextColumn("{task.description}"), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=True, disable=not sys.stderr.isatty())
    tid = prog.add_task(description, total=None)
    return prog, (lambda n=1: prog.advance(tid, n))


def load_task_and_streams(args, task=None) -> tuple:
    """(task, streams, info) for the --task/--data-root/--limit/--max-frames arguments (`task`:
    the TaskConfig when the caller has already loaded it)."""
    from edgevlm_eval.tasks.streams import load_streams
    from edgevlm_eval.tasks import load_task

    task = task or load_task(args.task, args.tasks_dir)
    prog, advance = _progress_counter(f"converting {task.name}")
    with prog:
        streams, info = load_streams(task, args.data_root, use_cache=not args.no_cache, progress=advance)
    if info.get("cache_rebuilt") or info.get("cache_warning"):
        from rich.markup import escape

        warn = _console(stderr=True)
        if info.get("cache_rebuilt"):
            warn.print(f"[yellow]stream cache not used, converted again: {escape(info['cache_rebuilt'])}[/yellow]",
                       highlight=False)
        if info.get("cache_warning"):
            warn.print(f"[yellow]warning: {escape(info['cache_warning'])}[/yellow]", highlight=False)
    if getattr(args, "limit", None) is not None:
        streams = streams[: args.limit]
    if getattr(args, "max_frames", None) is not None:
        for s in streams:
            s.frames = s.frames[: args.max_frames]
    return task, streams, info


def _summary_line(task, streams) -> str:
    n = sum(len(s) for s in streams)
    per = [len(f.labels) for s in streams for f in s.frames if f.scored]
    lab = f", {sum(per) / len(per):.2f} labels per scored frame" if per and task.label_space.multi_label else ""
    return f"{task.name}: {len(streams)} streams, {n} frames at {task.fps:g} FPS{lab}"


def cmd_run(args) -> int:
    con = _console()
    from edgevlm_eval.tasks import load_task

    task = load_task(args.task, args.tasks_dir)  # fail fast on a bad task before checking models
    registry = _import_plugin("edgevlm_eval.model_adapters.registry")
    missing = []
    for role in ("svlm", "lvlm"):
        spec = getattr(args, role)
        if spec and registry is not None:
            registry.resolve(spec)  # unknown name -> UnknownNameError with the known names
    task, streams, info = load_task_and_streams(args, task)
    con.print(_summary_line(task, streams) + (" (from cache)" if info["cache_hit"] else ""))
    runner = _import_plugin("edgevlm_eval.app.runner")
    if registry is None:
        missing.append("model adapters (edgevlm_eval.model_adapters.registry)")
    if runner is None:
        missing.append("the collaboration engine (edgevlm_eval.app.runner)")
    if missing:
        con.print("[yellow]The task converts, but this installation lacks " + " and ".join(missing) +
                  "; nothing was evaluated.[/yellow]")
        return 2
    return runner.run_main(args, task, streams, info)


def cmd_tasks(args) -> int:
    import json

    from rich.table import Table

    from edgevlm_eval.tasks import discover, get_converter, load_task_file

    rows = []
    for name, path in sorted(discover(args.tasks_dir).items()):
        try:
            t = load_task_file(path)
            get_converter(t.converter).resolved_options(t)  # an unknown converter or option shows here
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
    # a task whose YAML (or converter) is broken is listed with its error, and the exit status says so
    status = 1 if any("error" in r for r in rows) else 0
    if args.json:
        print(json.dumps(rows, indent=2))
        return status
    from rich.markup import escape  # YAML text and error messages may hold [brackets]

    table = Table(title="edgevlm-eval tasks")
    for col in ("task", "rate", "img/q", "labels", "metrics", "data"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if "error" in r:
            table.add_row(escape(r["name"]), "", "", f"[red]{escape(r['error'])}[/red]", "", "")
            continue
        kind = "multi" if r["multi_label"] else "single"
        data = r["data"] + (f" (${r['root_env']})" if r["root_env"] and r["data"] != "not needed" else "")
        table.add_row(escape(r["name"]), f"{r['fps']:g} FPS", str(r["images_per_query"]),
                      escape(f"{len(r['labels'])} ({kind}): " + ", ".join(r["labels"])), ", ".join(r["metrics"]),
                      escape(data))
    _console().print(table)
    return status


def cmd_models(args) -> int:
    import json

    registry = _import_plugin("edgevlm_eval.model_adapters.registry")
    if registry is None:
        print("No model adapters are installed in this build (edgevlm_eval.model_adapters.registry is missing).")
        return 2
    entries = registry.list_models()
    rows = [registry.entry_summary(e) if hasattr(registry, "entry_summary") else vars(e) for e in entries]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    from rich.table import Table

    table = Table(title="edgevlm-eval models")
    for col in ("name", "adapter", "checkpoint", "capabilities", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        caps = r.get("capabilities") or {}
        if not isinstance(caps, dict):
            caps = caps.to_json() if hasattr(caps, "to_json") else vars(caps)
        flags = ", ".join(k for k, v in caps.items() if v is True)
        table.add_row(str(r.get("name")), str(r.get("adapter")), str(r.get("checkpoint") or ""), flags,
                      str(r.get("description") or ""))
    _console().print(table)
    return 0


def cmd_streams(args) -> int:
    from edgevlm_eval.core.images import check_image
    from edgevlm_eval.tasks.streams import write_streams

    from rich.markup import escape

    task, streams, info = load_task_and_streams(args)
    extra = {"cache_key": info["cache_key"], "root": info["root"]}
    bad = []
    if args.check_images:
        prog, advance = _progress_counter("checking images")
        seen: dict[str, str | None] = {}  # two-image queries repeat the previous frame's image
        with prog:
            for s in streams:
                for f in s.frames:
                    for img in f.images:
                        if img not in seen:
                            seen[img] = check_image(img)
                        reason = seen[img]
                        if reason:
                            bad.append({"stream": f.stream_id, "frame": f.index, "reason": reason})
                    advance(1)
        extra["bad_images"] = len(bad)
    write_streams(args.out, task, streams, extra)
    con = _console()
    con.print(escape(_summary_line(task, streams) + f" -> {args.out}" + (" (from cache)" if info["cache_hit"] else "")))
    if args.check_images:
        con.print(f"{len(bad)} frame images missing, corrupt or too large" + (":" if bad else "."))
        for b in bad[:20]:
            con.print(escape(f"  {b['stream']} frame {b['frame']}: {b['reason']}"))
        if len(bad) > 20:
            con.print(f"  ... and {len(bad) - 20} more")
    return 0


CORE_HANDLERS: dict[str, Callable] = {"run": cmd_run, "tasks": cmd_tasks, "models": cmd_models, "streams": cmd_streams}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "run"
    explicit = bool(argv) and argv[0] in (*CORE_COMMANDS, *PLUGIN_COMMANDS)
    if explicit:
        command = argv.pop(0)
    # `edgevlm-eval --task ...` is the main command: its usage line reads `edgevlm-eval`
    parser = build_parser(command) if explicit else build_run_parser("edgevlm-eval")
    args = parser.parse_args(argv)
    args.command = command
    try:
        if command in CORE_HANDLERS:
            return CORE_HANDLERS[command](args)
        mod = _import_plugin(PLUGIN_COMMANDS[command][0])
        if mod is None:
            print(f"edgevlm-eval {command}: not available in this build ({PLUGIN_COMMANDS[command][0]} is missing).",
                  file=sys.stderr)
            return 2
        return int(mod.main(args) or 0)
    except EdgeVLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; a run resumes from its per-frame log when started again", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
