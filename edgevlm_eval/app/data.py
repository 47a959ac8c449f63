"""A task's streams as a command asks for them: converted (or read from the stream cache), then
cut to --limit streams and --max-frames frames, with progress."""

from __future__ import annotations

import logging

from edgevlm_eval.core.taskconfig import TaskConfig
from edgevlm_eval.tasks import load_task
from edgevlm_eval.tasks.streams import load_streams

from .progress import Progress

log = logging.getLogger(__name__)


def load_task_and_streams(task_ref: str, *, tasks_dir=(), data_root=None, no_cache: bool = False,
                          limit: int | None = None, max_frames: int | None = None,
                          task: TaskConfig | None = None) -> tuple:
    """(task, streams, info); `task`: the TaskConfig when the caller has already loaded it."""
    task = task or load_task(task_ref, list(tasks_dir))
    with Progress(None, f"converting {task.name}") as prog:
        streams, info = load_streams(task, data_root, use_cache=not no_cache, progress=prog.advance)
    if info.get("cache_rebuilt"):
        log.warning("stream cache not used, converted again: %s", info["cache_rebuilt"])
    if info.get("cache_warning"):
        log.warning("warning: %s", info["cache_warning"])
    if limit is not None:
        streams = streams[:limit]
    if max_frames is not None:
        for s in streams:
            s.frames = s.frames[:max_frames]
    return task, streams, info


def load_from_args(args) -> tuple:
    """(task, streams, info) for a command's --task/--data-root/--tasks-dir/--no-cache/--limit/--max-frames."""
    return load_task_and_streams(args.task, tasks_dir=args.tasks_dir, data_root=args.data_root, no_cache=args.no_cache,
                                 limit=getattr(args, "limit", None), max_frames=getattr(args, "max_frames", None))


def summary_line(task, streams) -> str:
    n = sum(len(s) for s in streams)
    per = [len(f.labels) for s in streams for f in s.frames if f.scored]
    lab = f", {sum(per) / len(per):.2f} labels per scored frame" if per and task.label_space.multi_label else ""
    return f"{task.name}: {len(streams)} streams, {n} frames at {task.fps:g} FPS{lab}"
