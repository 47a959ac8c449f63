"""The `edgevlm-eval` command line: parsing and dispatch only.

    edgevlm-eval --task T --svlm S --lvlm L [--strategy X] ...   the main command (evaluate)
    edgevlm-eval tasks | models | streams | rescore | record | serve | leaderboard | plot | compare | plan

Every command lives in its own module, named in COMMANDS with the functions that add its arguments
and run it; a module is imported only when its command runs, so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from edgevlm_eval import __version__
from edgevlm_eval.core.errors import EdgeVLMError

from .args import add_models_dir_arg, add_output_args, add_selection_args, add_task_args, suggest_on_error
from .options import add_engine_arguments
from .progress import setup_output

# name -> (module, its add-arguments function, its main function, one-line help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "run": ("edgevlm_eval.app.pipeline", "", "cli_main", "evaluate strategies on a task (the default command)"),
    "tasks": ("edgevlm_eval.app.catalog", "tasks_arguments", "tasks_main",
              "list the tasks with their label space, rate and whether their data was found"),
    "models": ("edgevlm_eval.app.catalog", "models_arguments", "models_main",
               "list the model registry entries with their capabilities (--check SPEC: one real request)"),
    "streams": ("edgevlm_eval.app.catalog", "streams_arguments", "streams_main",
                "convert a task's dataset and write its streams, one frame per line"),
    "rescore": ("edgevlm_eval.app.pipeline", "rescore_arguments", "rescore_main",
                "recompute a run folder's results.json from its per-frame log (no model, no dataset)"),
    "record": ("edgevlm_eval.app.record", "add_arguments", "main",
               "run the LVLM on every frame of a task and write an LVLM trace"),
    "serve": ("edgevlm_eval.model_adapters.serve", "add_arguments", "main",
              "serve a local model as an OpenAI-compatible endpoint"),
    "leaderboard": ("edgevlm_eval.app.leaderboard", "add_arguments", "main", "collect results JSONs into one table"),
    "plot": ("edgevlm_eval.app.plotting", "add_arguments", "main", "plot results (metric vs LCR, sweeps, latency)"),
    "compare": ("edgevlm_eval.app.compare", "add_arguments", "main",
                "paired bootstrap: is run A better than run B on the same frames"),
    "plan": ("edgevlm_eval.app.plan", "add_arguments", "main",
             "the keyframe policy without a model: LCR and history lag per K_call"),
}

EPILOG = """commands:
  (none)/run   evaluate: edgevlm-eval --task demo --svlm demo-svlm --lvlm demo-lvlm
""" + "".join(f"  {k:<12} {h}\n" for k, (_, _, _, h) in COMMANDS.items() if k != "run") + """
Run `edgevlm-eval COMMAND --help` for a command's options.
Dataset roots come from --data-root or the environment variable each task names (see `edgevlm-eval tasks`).
Exit codes: 0 done, 2 error (nothing scored), 3 done but compromised (failed LVLM or SVLM replies; see the notes).
"""


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
    add_task_args(g)
    g.add_argument("--svlm", metavar="S", help="edge model: a registry name (see `edgevlm-eval models`) or adapter:path")
    g.add_argument("--lvlm", metavar="L", help="cloud model: a registry name or adapter:path")
    add_models_dir_arg(g)
    add_selection_args(g)
    g.add_argument("--output-dir", dest="output_dir", default="runs", metavar="D",
                   help="where runs go: D/<task>/<svlm>__<lvlm>/<run>/ (default: ./runs)")
    add_output_args(g)
    add_engine_arguments(p)
    suggest_on_error(p)
    return p


def build_parser(command: str) -> argparse.ArgumentParser:
    prog = f"edgevlm-eval {command}"
    if command == "run":
        return build_run_parser(prog)
    module, add, _, help_ = COMMANDS[command]
    p = argparse.ArgumentParser(prog=prog, allow_abbrev=False, description=help_)
    getattr(importlib.import_module(module), add)(p)
    if not any("--quiet" in a.option_strings for a in p._actions):
        add_output_args(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "run"
    explicit = bool(argv) and argv[0] in COMMANDS
    if explicit:
        command = argv.pop(0)
    # `edgevlm-eval --task ...` is the main command: its usage line reads `edgevlm-eval`
    parser = build_parser(command) if explicit else build_run_parser("edgevlm-eval")
    args = parser.parse_args(argv)
    args.command = command
    setup_output(quiet=getattr(args, "quiet", False), verbose=getattr(args, "verbose", False))
    module, _, run, _ = COMMANDS[command]
    try:
        return int(getattr(importlib.import_module(module), run)(args) or 0)
    except EdgeVLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; a run resumes from its per-frame log when started again", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
