"""The results JSON (docs/results.md): provenance first, then per task and run (a strategy with its
knobs) the metrics, LCR, LHL, invalid and unmapped counts and a timing summary.

Keys are stable; the file is written atomically. Secrets never reach it: config keys that look
like credentials, and any value equal to a secret-looking environment variable, are redacted.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any, Mapping

from edgevlm_eval import __version__
from edgevlm_eval.core.io import atomic_write_json

FORMAT = "edgevlm-eval.results/1"
REDACTED = "***REDACTED***"
# A key is secret when its name ENDS with one of these words (api_key, HF_TOKEN, client_secret), so
# that knobs like token_focus, dvlm_tokens or api_key_env (the name of a variable) stay readable.
_SECRET_KEY = re.compile(r"(?:^|[_\-.])(?:api[_-]?key|apikey|token|secret|password|passwd|credentials?|"
                         r"authorization)$", re.I)


def _secret_env_values() -> set[str]:
    return {v for k, v in os.environ.items() if _SECRET_KEY.search(k) and v and len(v) >= 4}


def redact(obj: Any, _secrets: set[str] | None = None) -> Any:
    """A copy of `obj` with secret-looking keys and values equal to secret env vars redacted."""
    secrets = _secret_env_values() if _secrets is None else _secrets
    if isinstance(obj, Mapping):
        return {k: (REDACTED if _SECRET_KEY.search(str(k)) and v not in (None, "", False) else redact(v, secrets))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v, secrets) for v in obj]
    if isinstance(obj, str):
        for s in secrets:
            if s in obj:
                obj = obj.replace(s, REDACTED)
        return obj
    return obj


def git_hash(path: str | os.PathLike | None = None) -> str | None:
    """The commit of the toolkit's own checkout (None when installed from a wheel)."""
    here = Path(path) if path else Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    h = out.stdout.strip()
    if out.returncode != 0 or not h:
        return None
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return h + ("-dirty" if dirty else "")


def _version(mod: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:
        return None


def _toolkit_dirs() -> list[tuple[str, str]]:
    from edgevlm_eval import model_adapters, tasks

    return [(str(Path(model_adapters.__file__).resolve().parent), "<edgevlm_eval>/model_adapters"),
            (str(Path(tasks.__file__).resolve().parent), "<edgevlm_eval>/tasks")]


def portable_paths(obj: Any, _dirs: list[tuple[str, str]] | None = None) -> Any:
    """A copy of `obj` where paths inside the installed toolkit (the shipped demo checkpoints, task
    files) read `<edgevlm_eval>/...`: results and traces then say the same on every machine and
    carry no install path."""
    dirs = _toolkit_dirs() if _dirs is None else _dirs
    if isinstance(obj, Mapping):
        return {k: portable_paths(v, dirs) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable_paths(v, dirs) for v in obj]
    if isinstance(obj, str):
        for real, shown in dirs:
            if obj == real or obj.startswith(real + os.sep):
                return shown + obj[len(real):].replace(os.sep, "/")
    return obj


def provenance(*, config: Mapping, task=None, stream_info: Mapping | None = None, models: Mapping | None = None,
               trace: Mapping | None = None, seeds: Mapping | None = None, latency: Mapping | None = None,
               extra: Mapping | None = None) -> dict:
    p = {
        "toolkit_version": __version__,
        "git_hash": git_hash(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "config": redact(dict(config)),
        "seeds": dict(seeds or {}),
        "models": portable_paths(redact(dict(models or {}))),
        "trace": portable_paths(dict(trace or {})),
        "latency": dict(latency or {}),
    }
    if task is not None:
        info = {"version": task.version, "source": Path(task.source).name if task.source else None,
                "fps": task.fps, "labels": list(task.label_space.names), "metrics": list(task.metrics),
                "primary_metric": task.primary_metric, "multi_label": task.label_space.multi_label}
        if stream_info:
            info["cache_key"] = stream_info.get("cache_key")
        p["tasks"] = {task.name: info}
    if extra:
        p.update(redact(dict(extra)))
    return p


def build_results(prov: dict, task_name: str, runs: Mapping[str, dict], *, specs: Mapping[str, dict] | None = None,
                  n_streams: int | None = None, n_frames: int | None = None, protocol: dict | None = None) -> dict:
    """The whole document. `runs`: run id -> accounting summary; `specs`: run id -> RunSpec json."""
    block: dict = {"streams": n_streams, "frames": n_frames, "runs": {}}
    for rid, summ in runs.items():
        entry = {"spec": (specs or {}).get(rid, {"strategy": rid, "run": rid})}
        if entry["spec"].get("strategy") == "adas":
            entry["label"] = "ADAS (proxy)"
        entry.update(summ)
        block["runs"][rid] = entry
    doc = {"format": FORMAT, "provenance": prov, "tasks": {task_name: block}}
    if protocol:
        doc["protocol"] = protocol
    return doc


def write_results(path: str | os.PathLike, doc: dict) -> None:
    atomic_write_json(path, doc)
