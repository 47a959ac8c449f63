"""A run folder: `<output-dir>/<task>/<svlm>__<lvlm>/<run>/` (docs/results.md).

It owns `run.json` (what was asked, with the configuration hash), the per-frame logs, `results.json`
and `plots/`: resuming (the same configuration continues from the log), refusing a different
configuration, and `--overwrite`, which deletes this folder's files only (never another
pairing's or another run's). Pairings never collide: the models are part of the path.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from edgevlm_eval.core.errors import ConfigError, DatasetError
from edgevlm_eval.core.io import atomic_write_json
from edgevlm_eval.core.records import (
    LOG_GLOB,
    FrameLine,
    FrameLogWriter,
    log_name,
    read_logs,
)

RUN_FORMAT = "edgevlm-eval.run/1"
NONE = "none"


def slug(spec: str | None) -> str:
    """A model spec as a folder name: readable, and distinct for distinct specs (a short hash is
    added when characters had to be replaced or the name shortened)."""
    if not spec:
        return NONE
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("._") or "model"
    if s != spec or len(s) > 60:
        s = f"{s[:60]}-{hashlib.sha256(spec.encode()).hexdigest()[:6]}"
    return s


def config_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RunFolder:
    def __init__(self, output_dir: str | Path, task: str, svlm: str | None, lvlm: str | None, run: str):
        self.pairing = f"{slug(svlm)}__{slug(lvlm)}"
        self.path = Path(output_dir) / task / self.pairing / run
        self.run_json = self.path / "run.json"
        self.results_json = self.path / "results.json"
        self.plots = self.path / "plots"

    def __str__(self) -> str:
        return str(self.path)

    # -- starting or resuming -------------------------------------------------------------------

    def open(self, chash: str, *, overwrite: bool, resume: bool, rank: int = 0) -> list[FrameLine]:
        """Prepare the folder for a run with configuration hash `chash`; returns the frame lines
        already logged (resume)."""
        if rank == 0:
            if overwrite and self.path.exists():
                for p in [*self.path.glob(LOG_GLOB), self.results_json, self.run_json]:
                    p.unlink(missing_ok=True)
            if self.run_json.exists():
                old = self.read_run_json().get("config_hash")
                if old != chash:
                    raise ConfigError(f"the run folder {self.path} holds a run with another configuration (hash {old}, "
                                      f"this one {chash}); pass --overwrite to replace that run (this folder only), "
                                      "or --run-name NAME for a folder of its own", key="--run-name")
            self.path.mkdir(parents=True, exist_ok=True)
        return self.lines(chash)

    def lines(self, chash: str | None = None) -> list[FrameLine]:
        headers, lines = read_logs(self.path)
        for h in headers:
            if chash is not None and h.get("config_hash") not in (None, chash):
                raise ConfigError(f"{self.path}: a per-frame log was written by another configuration; "
                                  "use --overwrite (this folder only) or --run-name", key="--run-name")
        return lines

    def log_writer(self, chash: str, rank: int = 0, world: int = 1) -> FrameLogWriter:
        return FrameLogWriter(self.path / log_name(rank, world), {"config_hash": chash, "rank": rank, "world": world},
                              append=True)

    # -- run.json ---------------------------------------------------------------------------------

    def write_run_json(self, doc: dict[str, Any]) -> None:
        atomic_write_json(self.run_json, {"format": RUN_FORMAT, **doc})

    def read_run_json(self) -> dict:
        if not self.run_json.exists():
            raise DatasetError("not a run folder (run.json is missing)", path=str(self.path))
        try:
            doc = json.loads(self.run_json.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"run.json is damaged ({e}); --overwrite starts this run again", path=str(self.run_json)) \
                from None
        if not isinstance(doc, dict) or "runs" not in doc:
            raise DatasetError("run.json has no 'runs'; --overwrite starts this run again", path=str(self.run_json))
        return doc

    @classmethod
    def at(cls, path: str | Path) -> "RunFolder":
        """An existing run folder by its path (rescoring, compare)."""
        f = cls.__new__(cls)
        f.path = Path(path)
        f.pairing = f.path.parent.name
        f.run_json = f.path / "run.json"
        f.results_json = f.path / "results.json"
        f.plots = f.path / "plots"
        return f
