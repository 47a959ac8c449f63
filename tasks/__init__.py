"""Tasks: one YAML per task in this folder (plus user folders), and the converters that turn a
dataset's on-disk layout into Streams of Frames.

A converter is a small class registered by name; a task YAML names it under `converter:`.
Converter modules live next to the YAMLs (nuscenes.py, bdd100k.py, ...) and are imported on
first use, so a heavy optional dependency (nuscenes-devkit) is only needed by its own task.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

from edgevlm_eval.core.errors import ConfigError, DatasetError, UnknownNameError
from edgevlm_eval.core.taskconfig import TaskConfig, load_task_file
from edgevlm_eval.core.types import Box, Frame, Stream

TASKS_DIR = Path(__file__).resolve().parent
TASKS_PATH_ENV = "EDGEVLM_TASKS_PATH"  # extra folders of task YAMLs, os.pathsep-separated

# Converter modules shipped with the toolkit, imported lazily on first lookup.
_CONVERTER_MODULES = ("nuscenes", "bdd100k", "ipn_hand", "ace", "demo", "generic")
_CONVERTERS: dict[str, type["Converter"]] = {}


@dataclass
class ConvertContext:
    """What a converter gets: the task, its resolved data root, options, a work folder."""

    task: TaskConfig
    root: Path | None
    work_dir: Path  # for files a converter generates (the demo world's images); inside the cache
    progress: Callable[[int], None] | None = None  # called with the number of frames just converted
    options: dict[str, Any] = field(default_factory=dict)

    def frame(self, stream_id: str, index: int, timestamp_s: float, images: Iterable[str | Path],
              labels: Iterable[str], *, boxes: Iterable[Box] = (), meta: dict | None = None) -> Frame:
        """A Frame carrying the task's query, with its labels checked against the label space.
        A frame whose only label is the space's none_label is unscored unless the task says
        `score_none: true`."""
        try:
            labels = self.task.label_space.check(labels, f"{self.task.name} stream {stream_id} frame {index}")
        except ValueError as e:
            raise DatasetError(str(e), path=str(self.root) if self.root else None) from None
        none = self.task.label_space.none_label
        scored = True
        if none is not None and labels == (none,):
            scored = self.task.score_none
        return Frame(stream_id=stream_id, index=index, timestamp_s=float(timestamp_s),
                     images=tuple(str(p) for p in images), query=self.task.query, labels=labels,
                     boxes=tuple(boxes), scored=scored, meta=dict(meta or {}))

    def advance(self, n: int = 1):
        if self.progress:
            self.progress(n)


class Converter:
    """Base class. Subclasses set `name`, `layout` (the expected on-disk layout, shown in errors)
    and `version` (bump it when the output changes, so cached streams are rebuilt)."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    layout: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}  # known converter_options and their defaults

    def inputs(self, ctx: ConvertContext) -> list[Path]:
        """Annotation files whose size and mtime key the stream cache (images are not hashed)."""
        return []

    def convert(self, ctx: ConvertContext) -> list[Stream]:
        raise NotImplementedError

    def resolved_options(self, task: TaskConfig) -> dict[str, Any]:
        unknown = set(task.converter_options) - set(self.options)
        if unknown:
            raise ConfigError(f"unknown option(s) {sorted(unknown)} for converter '{self.name}'; "
                              f"known: {sorted(self.options) or 'none'}", path=task.source,
                              key="converter_options." + sorted(unknown)[0])
        return {**self.options, **task.converter_options}


def register_converter(cls: type[Converter]) -> type[Converter]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _CONVERTERS[cls.name] = cls
    return cls


def _import_all():
    for mod in _CONVERTER_MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{mod}":
                raise


def get_converter(name: str) -> Converter:
    """A registered converter by name, or a user's class given as `package.module:ClassName`."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except Exception as e:  # noqa: BLE001 - a user's module may fail to import in any way (SyntaxError, ...)
            raise ConfigError(f"cannot load converter '{name}': {type(e).__name__}: {e}", key="converter") from None
        if not (isinstance(cls, type) and issubclass(cls, Converter)):
            raise ConfigError(f"'{name}' is not a Converter subclass", key="converter")
        return cls()
    if name not in _CONVERTERS:
        _import_all()
    if name not in _CONVERTERS:
        raise UnknownNameError("converter", name, _CONVERTERS)
    return _CONVERTERS[name]()


def converter_names() -> list[str]:
    _import_all()
    return sorted(_CONVERTERS)


# ---------------------------------------------------------------------------------------------
# Task discovery


def task_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    """The folders searched for task YAMLs: `extra` (--tasks-dir, which must exist), then
    $EDGEVLM_TASKS_PATH (folders that do not exist are skipped), then the shipped tasks."""
    dirs = [Path(p) for p in extra]
    for d in dirs:
        if not d.is_dir():
            raise ConfigError("task folder (--tasks-dir) not found or not a folder", path=str(d))
    env = os.environ.get(TASKS_PATH_ENV, "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(TASKS_DIR)
    return dirs


def discover(extra_dirs: Iterable[str | Path] = ()) -> dict[str, Path]:
    """Task name -> YAML file. Earlier folders win (a user's folder can override a shipped
    task); '_*.yaml' files are include-only."""
    found: dict[str, Path] = {}
    for d in task_dirs(extra_dirs):
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.yaml")):
            if path.name.startswith("_"):
                continue
            found.setdefault(path.stem, path)
    return found


def load_task(name_or_path: str, extra_dirs: Iterable[str | Path] = ()) -> TaskConfig:
    """A task by registered name, or by the path of a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return load_task_file(p)
    tasks = discover(extra_dirs)
    if name_or_path not in tasks:
        raise UnknownNameError("task", name_or_path, tasks)
    cfg = load_task_file(tasks[name_or_path])
    if cfg.name != tasks[name_or_path].stem:
        raise ConfigError(f"task name '{cfg.name}' differs from the file name '{tasks[name_or_path].stem}'",
                          path=str(tasks[name_or_path]), key="name")
    return cfg


def all_tasks(extra_dirs: Iterable[str | Path] = ()) -> list[TaskConfig]:
    return [load_task_file(p) for _, p in sorted(discover(extra_dirs).items())]
