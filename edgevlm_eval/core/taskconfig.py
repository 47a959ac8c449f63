"""Task YAML: loading (with lmms-eval style `include:`), validation, and the TaskConfig type.

Every key is checked: an unknown key or a value of the wrong type is an error naming the file and
the key. Files whose name starts with '_' are include-only defaults, never tasks of their own.
"""

from __future__ import annotations

import copy
import math
import os
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edgevlm_eval.core.errors import ConfigError, DatasetError
from edgevlm_eval.core.labels import LabelSpace, normalize
from edgevlm_eval.core.metrics import DEFAULT_MACRO_F1_LABEL_SET, KNOWN_METRICS, MACRO_F1_LABEL_SETS
from edgevlm_eval.core.yamlfile import read_yaml_mapping

# key -> (type(s), required). Nested mappings are checked by their own tables below.
_TOP_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "name": ((str,), True),
    "include": ((str, list), False),
    "description": ((str,), False),
    "version": ((int, str), False),
    "converter": ((str,), True),
    "converter_options": ((dict,), False),
    "dataset": ((dict,), True),
    "fps": ((int, float), True),
    "images_per_query": ((int,), False),
    "query_template": ((str,), True),
    "label_space": ((dict,), True),
    "history_template": ((str,), True),
    "history_rounding": ((int,), False),
    "empty_answer": ((str,), False),
    "metrics": ((list,), True),
    "primary_metric": ((str,), False),
    "macro_f1_label_set": ((str,), False),
    "tags": ((list,), False),
    "calibration": ((dict,), False),
}
# `calibration:` the task's calibration split (docs/method.md, LAECIPS' classifier reading): the
# task's own converter run with these overrides, deep-merged; its streams are never scored.
_CALIBRATION_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "converter_options": ((dict,), False),
    "dataset": ((dict,), False),
    "limit": ((int,), False),
}
_DATASET_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "root": ((str, type(None)), False),
    "root_env": ((str,), False),
    "split": ((str,), False),
    "layout": ((str,), False),
    "required": ((bool,), False),
}
_LABEL_SPACE_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "multi_label": ((bool,), False),
    "labels": ((list,), True),
    "none_label": ((str, type(None)), False),
    "score_none": ((bool,), False),
}


@dataclass
class TaskConfig:
    """A resolved task: what a YAML file says after includes are merged."""

    name: str
    converter: str
    dataset: dict[str, Any]
    fps: float
    query_template: str
    label_space: LabelSpace
    history_template: str
    metrics: list[str]
    images_per_query: int = 1
    history_rounding: int = 0
    empty_answer: str = "nothing"
    converter_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    version: str = "1"
    primary_metric: str | None = None
    # The labels Macro-F1 averages over: gt | union | all (core/metrics.py, docs/results.md);
    # pass it to metrics.compute(..., macro_f1_label_set=...).
    macro_f1_label_set: str = DEFAULT_MACRO_F1_LABEL_SET
    score_none: bool = False
    tags: list[str] = field(default_factory=list)
    # the calibration split (`calibration:` in the YAML): converter_options / dataset overrides and
    # `limit` (streams, the first by id); None: the task has none
    calibration: dict[str, Any] | None = None
    source: str = ""  # the YAML file it came from
    raw: dict[str, Any] = field(default_factory=dict)  # the merged YAML, for provenance

    # -- rendering the task's texts --------------------------------------------------------

    @property
    def query(self) -> str:
        """The query sent with every frame: the template with the label list filled in."""
        return self.query_template.format(labels=", ".join(self.label_space.names))

    def history_snippet(self, age_s: float, answer_labels: tuple[str, ...] | list[str]) -> str:
        """CRM's compressed snippet for an earlier frame (paper §3.2)."""
        d = round(age_s, self.history_rounding) if self.history_rounding else int(round(age_s))
        return self.history_template.format(d=d, answer=self.label_space.render(answer_labels, self.empty_answer))

    # -- calibration split -------------------------------------------------------------------

    def calibration_task(self) -> "TaskConfig":
        """The task whose streams are the calibration split: the same YAML with the calibration's
        `converter_options` and `dataset` merged over its own (another seed of a generated world,
        another split of a dataset). Its `limit` is applied by the caller."""
        if not self.calibration:
            raise ConfigError(f"task '{self.name}' has no calibration split (no `calibration:` key)", path=self.source,
                              key="calibration")
        over = {k: self.calibration[k] for k in ("converter_options", "dataset") if k in self.calibration}
        data = _deep_merge({k: v for k, v in self.raw.items() if k != "calibration"}, over)
        return task_from_dict(data, source=self.source)

    # -- data root ---------------------------------------------------------------------------

    @property
    def needs_data(self) -> bool:
        return bool(self.dataset.get("required", True))

    def resolve_root(self, data_root: str | os.PathLike | None = None) -> Path | None:
        """--data-root, else the env var the YAML names, else the YAML's own `root`.
        Raises a DatasetError that names what was tried when none is set or the folder is missing."""
        if not self.needs_data:
            return None
        env = self.dataset.get("root_env")
        tried = []
        if data_root is not None and not str(data_root).strip():
            # `--data-root "$UNSET"`: falling back to the env var would read another dataset silently
            raise DatasetError(f"task '{self.name}': the dataset root given (--data-root) is an empty string",
                               expected=self.dataset.get("layout"))
        if data_root:
            root, how = Path(data_root).expanduser(), "--data-root"
        elif env and os.environ.get(env):
            root, how = Path(os.environ[env]).expanduser(), f"${env}"
        elif self.dataset.get("root"):
            root, how = Path(self.dataset["root"]).expanduser(), f"dataset.root in {self.source}"
        else:
            hint = f"pass --data-root or set ${env}" if env else "pass --data-root"
            raise DatasetError(f"task '{self.name}': no dataset root given ({hint})",
                               expected=self.dataset.get("layout"))
        tried.append(how)
        if not root.is_dir():
            raise DatasetError(f"task '{self.name}': dataset root from {how} does not exist or is not a folder",
                               path=str(root), expected=self.dataset.get("layout"))
        return root.resolve()

    def data_found(self, data_root: str | None = None) -> bool | None:
        """True/False whether the root resolves to a folder; None when the task needs no data."""
        if not self.needs_data:
            return None
        try:
            self.resolve_root(data_root)
            return True
        except DatasetError:
            return False


def _deep_merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def shipped_tasks_dir() -> Path | None:
    """The folder of the toolkit's own task YAMLs (found without importing the tasks package)."""
    import importlib.util

    spec = importlib.util.find_spec("edgevlm_eval.tasks")
    locs = list(spec.submodule_search_locations or []) if spec else []
    return Path(locs[0]) if locs else None


def _include_target(folder: Path, name: str) -> Path:
    """Where `include: name` points: next to the including file, else a shipped task file (a
    user's YAML may include a shipped base or task, `include: _multi_object.yaml` or `include:
    demo`, by its bare name; `.yaml` may be left off). The first existing candidate wins; when none
    exists, the path next to the including file (for the error message)."""
    names = [name] if name.endswith((".yaml", ".yml")) else [name, name + ".yaml"]
    shipped = shipped_tasks_dir()
    for base in (folder, shipped):
        for n in names:
            if base is not None and (base / n).is_file():
                return base / n
    return folder / name


def load_merged(path: str | os.PathLike, _stack: tuple[Path, ...] = ()) -> dict:
    """The YAML at `path` with its `include:` files merged under it (the including file wins).
    Includes are resolved relative to the including file."""
    path = Path(path).resolve()
    if path in _stack:
        chain = " -> ".join(str(p) for p in (*_stack, path))
        raise ConfigError(f"include cycle: {chain}", path=str(path), key="include")
    data = read_yaml_mapping(path)
    inc = data.pop("include", None)
    if inc is None:
        return data
    incs = [inc] if isinstance(inc, str) else inc
    if not isinstance(incs, list) or not all(isinstance(i, str) and i.strip() for i in incs):
        raise ConfigError(f"expected a file name or a list of file names, got {inc!r}", path=str(path), key="include")
    merged: dict = {}
    for i in incs:
        target = _include_target(path.parent, i)
        if not target.is_file():
            what = "is a folder, not a YAML file" if target.is_dir() else "not found"
            raise ConfigError(f"included file '{i}' {what} (looked at {path.parent / i} and the shipped tasks)",
                              path=str(path), key="include")
        merged = _deep_merge(merged, load_merged(target, (*_stack, path)))
    return _deep_merge(merged, data)


def _check_keys(d: Mapping, table: Mapping, path: str, prefix: str = ""):
    for k, v in d.items():
        if k not in table:
            raise ConfigError(f"unknown key; known keys: {', '.join(sorted(table))}", path=path, key=prefix + k)
        types, _ = table[k]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            names = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"expected {names}, got {type(v).__name__} ({v!r})", path=path, key=prefix + k)
    for k, (_, required) in table.items():
        if required and k not in d:
            raise ConfigError("required key is missing", path=path, key=prefix + k)


def _template_fields(template: str, path: str, key: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise ConfigError(f"bad template: {e}", path=path, key=key) from None


def _check_template(template: str, allowed: dict[str, list], path: str, key: str):
    """Only the allowed placeholders, and the template fills in with every kind of value it will
    get (a format spec like {d:d} fails on a float, {labels!z} on anything)."""
    bad = _template_fields(template, path, key) - set(allowed)
    if bad:
        shown = ", ".join("{" + f + "}" for f in sorted(bad))
        raise ConfigError(f"unknown placeholders {shown}; allowed: " + ", ".join("{" + a + "}" for a in allowed),
                          path=path, key=key)
    n = max(len(v) for v in allowed.values())
    for i in range(n):
        values = {k: v[min(i, len(v) - 1)] for k, v in allowed.items()}
        try:
            template.format(**values)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            names = ", ".join("{" + a + "}" for a in allowed)
            raise ConfigError(f"cannot be filled in ({type(e).__name__}: {e}); placeholders are plain "
                              f"{{name}}s, e.g. {names}", path=path, key=key) from None


# At most this many images per query: the previous sampled frames are sent with the current one,
# and a larger number is far beyond what an edge VLM takes (the paper sends 1 or 2).
MAX_IMAGES_PER_QUERY = 32
_BAD_NAME_CHARS = set("/\\") | {chr(c) for c in range(32)}


def _finite_positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _check_labels(ls: Mapping, source: str):
    """Each label a non-empty name (or a mapping with one and a list of synonyms); at least one."""
    items = ls["labels"]
    if not items:
        raise ConfigError("a task needs at least one label", path=source, key="label_space.labels")
    for i, item in enumerate(items):
        where = f"label_space.labels[{i}]"
        if isinstance(item, dict):
            extra = set(item) - {"name", "synonyms"}
            if "name" not in item or extra:
                raise ConfigError("each label is a name or a mapping with 'name' and optional 'synonyms'",
                                  path=source, key=where)
            name, syn = item["name"], item.get("synonyms")
            if syn is not None and (not isinstance(syn, list) or
                                    not all(isinstance(x, str) and normalize(x).strip() for x in syn)):
                raise ConfigError(f"synonyms of {name!r}: expected a list of words or phrases, got {syn!r}",
                                  path=source, key=where + ".synonyms")
        else:
            name = item
        if not isinstance(name, str):
            raise ConfigError(f"expected a label name (text), got {name!r}", path=source, key=where)
        if not normalize(name).strip():
            raise ConfigError(f"label {name!r} has no letters or digits, so no answer could name it", path=source,
                              key=where)
    none = ls.get("none_label")
    if none is not None:
        if ls.get("multi_label", True):
            raise ConfigError("none_label is for single-label tasks (multi_label: false); in a multi-label task a "
                              "frame with nothing is the empty set", path=source, key="label_space.none_label")
        if not normalize(none).strip():
            raise ConfigError(f"expected a name for the 'no label' ground truth, got {none!r}", path=source,
                              key="label_space.none_label")
        phrases = {normalize(x if isinstance(x, str) else x["name"]).strip() for x in items}
        phrases |= {normalize(s).strip() for x in items if isinstance(x, dict) for s in (x.get("synonyms") or [])}
        if normalize(none).strip() in phrases:
            raise ConfigError(f"none_label {none!r} is also a label (or a synonym of one): a frame of that label "
                              "would count as 'no label'", path=source, key="label_space.none_label")
    if ls.get("score_none") and none is None:
        raise ConfigError("score_none: true needs a label_space.none_label to score", path=source,
                          key="label_space.score_none")


def task_from_dict(data: dict, source: str = "<dict>") -> TaskConfig:
    """Validate a merged task mapping and build the TaskConfig."""
    _check_keys(data, _TOP_KEYS, source)
    _check_keys(data["dataset"], _DATASET_KEYS, source, "dataset.")
    _check_keys(data["label_space"], _LABEL_SPACE_KEYS, source, "label_space.")
    name = data["name"]
    if not name.strip() or name.startswith(".") or _BAD_NAME_CHARS & set(name):
        raise ConfigError(f"bad task name {name!r}: the name is part of file names (the stream cache, results), "
                          "so it must be non-empty, not start with '.', and hold no '/', '\\' or control characters",
                          path=source, key="name")
    if not data["converter"].strip():
        raise ConfigError("expected a converter name, got an empty string", path=source, key="converter")
    if not _finite_positive(data["fps"]):
        raise ConfigError(f"must be a positive finite number (frames per second), got {data['fps']}", path=source,
                          key="fps")
    ipq = data.get("images_per_query", 1)
    if not 1 <= ipq <= MAX_IMAGES_PER_QUERY:
        raise ConfigError(f"must be 1..{MAX_IMAGES_PER_QUERY}, got {ipq}", path=source, key="images_per_query")
    rounding = data.get("history_rounding", 0)
    if rounding < 0:
        raise ConfigError(f"must be >= 0 (decimals of {{d}}), got {rounding}", path=source, key="history_rounding")
    _check_template(data["query_template"], {"labels": ["car, bus"]}, source, "query_template")
    # {d} is an int with history_rounding 0 and a float otherwise
    _check_template(data["history_template"], {"d": [2 if not rounding else 1.5], "answer": ["car, bus"]},
                    source, "history_template")
    _check_labels(data["label_space"], source)
    try:
        space = LabelSpace.from_config(data["label_space"])
    except ValueError as e:
        raise ConfigError(str(e), path=source, key="label_space") from None
    if not data["metrics"]:
        raise ConfigError(f"a task needs at least one metric; known: {', '.join(KNOWN_METRICS)}", path=source,
                          key="metrics")
    metrics = [str(m) for m in data["metrics"]]
    unknown = [m for m in metrics if m not in KNOWN_METRICS]
    if unknown:
        raise ConfigError(f"unknown metrics {unknown}; known: {', '.join(KNOWN_METRICS)}", path=source, key="metrics")
    twice = sorted({m for m in metrics if metrics.count(m) > 1})
    if twice:
        raise ConfigError(f"metrics {twice} listed more than once", path=source, key="metrics")
    single = {"accuracy"}
    if space.multi_label and single & set(metrics) or not space.multi_label and set(metrics) - single:
        raise ConfigError(
            f"metrics {metrics} do not fit a {'multi' if space.multi_label else 'single'}-label task "
            "(multi-label: micro_f1, macro_f1, exact_match; single-label: accuracy)", path=source, key="metrics")
    label_set = data.get("macro_f1_label_set", DEFAULT_MACRO_F1_LABEL_SET)
    if label_set not in MACRO_F1_LABEL_SETS:
        raise ConfigError(f"expected one of {', '.join(MACRO_F1_LABEL_SETS)} (the labels Macro-F1 averages over), "
                          f"got {label_set!r}", path=source, key="macro_f1_label_set")
    if "macro_f1_label_set" in data and not space.multi_label:
        raise ConfigError("only a multi-label task has a Macro-F1; remove the key", path=source,
                          key="macro_f1_label_set")
    calibration = data.get("calibration")
    if calibration is not None:
        _check_keys(calibration, _CALIBRATION_KEYS, source, "calibration.")
        if not ({"converter_options", "dataset"} & set(calibration)):
            raise ConfigError("give converter_options (e.g. another seed) or dataset (e.g. split: train): without "
                              "them the calibration streams would be the evaluated ones", path=source,
                              key="calibration")
        if "dataset" in calibration:
            _check_keys(calibration["dataset"], {k: (t, False) for k, (t, _) in _DATASET_KEYS.items()}, source,
                        "calibration.dataset.")
        if "limit" in calibration and (isinstance(calibration["limit"], bool) or calibration["limit"] < 1):
            raise ConfigError(f"expected a number of streams >= 1, got {calibration['limit']!r}", path=source,
                              key="calibration.limit")
    primary = data.get("primary_metric", metrics[0])
    if primary not in metrics:
        raise ConfigError(f"'{primary}' is not one of the task's metrics {metrics}", path=source, key="primary_metric")
    return TaskConfig(
        name=data["name"],
        converter=data["converter"],
        dataset=dict(data["dataset"]),
        fps=float(data["fps"]),
        query_template=data["query_template"],
        label_space=space,
        history_template=data["history_template"],
        metrics=metrics,
        images_per_query=ipq,
        history_rounding=int(data.get("history_rounding", 0)),
        empty_answer=data.get("empty_answer", "nothing"),
        converter_options=dict(data.get("converter_options") or {}),
        description=data.get("description", ""),
        version=str(data.get("version", "1")),
        primary_metric=primary,
        macro_f1_label_set=label_set,
        score_none=bool(data["label_space"].get("score_none", False)),
        tags=[str(t) for t in data.get("tags", [])],
        calibration=dict(calibration) if calibration is not None else None,
        source=source,
        raw=data,
    )


def load_task_file(path: str | os.PathLike) -> TaskConfig:
    return task_from_dict(load_merged(path), source=str(path))
