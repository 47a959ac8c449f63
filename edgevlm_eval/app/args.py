"""Argument groups the commands share (task and selection, models path, output), in one home."""

from __future__ import annotations

import argparse

from edgevlm_eval.core.errors import nearest


def positive_count(text: str) -> int:
    """argparse type for a count that must be 1 or more (--limit, --max-frames): 0 or -1 would
    silently select nothing or drop the last stream."""
    try:
        value = int(str(text).strip())
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number (1 or more), got {text!r}")
    return value


def add_tasks_dir_arg(p):
    """--tasks-dir, the same for every command that reads a task (p: a parser or an argument group)."""
    p.add_argument("--tasks-dir", dest="tasks_dir", action="append", default=[], metavar="D",
                   help="extra folder of task YAMLs (repeatable; also $EDGEVLM_TASKS_PATH)")


def add_task_args(p):
    p.add_argument("--task", required=True, metavar="T",
                   help="task name (see `edgevlm-eval tasks`) or path to a task YAML")
    p.add_argument("--data-root", dest="data_root", metavar="R",
                   help="dataset root folder (default: the env var the task names)")
    add_tasks_dir_arg(p)
    p.add_argument("--no-cache", dest="no_cache", action="store_true",
                   help="convert the dataset again instead of reading the stream cache")


def add_selection_args(p):
    p.add_argument("--limit", type=positive_count, metavar="N", help="use only the first N streams (sorted by id)")
    p.add_argument("--max-frames", dest="max_frames", type=positive_count, metavar="N",
                   help="use only the first N frames of each stream")


def add_models_dir_arg(p):
    p.add_argument("--models-dir", dest="models_dir", action="append", default=[], metavar="D",
                   help="extra folder of user models.yaml files, or one such file (repeatable; also "
                        "$EDGEVLM_MODELS_PATH, os.pathsep-separated)")


def add_output_args(p):
    p.add_argument("--quiet", action="store_true", help="no progress, warnings and errors only")
    p.add_argument("--verbose", action="store_true", help="debug logging")


def suggest_on_error(p: argparse.ArgumentParser) -> None:
    """An unknown switch (`--no-crmm`) gets the nearest known options in the error message."""
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


