"""Progress a user can follow anywhere, and the standard logging set-up of the commands.

On a terminal: a rich progress bar (done/total, rate, time left). Off a terminal (SLURM, nohup,
CI, a pipe): a plain line every `every_pct` % of the work or every `every_s` seconds, whichever
comes first, with done/total, rate, ETA and failures. `--quiet` prints neither; `--verbose` adds
debug logging. Messages go through stdlib logging (`logging.getLogger("edgevlm_eval...")`), shown
with rich's handler on a terminal and as plain `edgevlm-eval: message` lines elsewhere.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from .console import console


@dataclass
class Reporter:
    mode: str = "auto"  # auto | tty | plain | quiet
    every_pct: float = 10.0
    every_s: float = 30.0
    stream: TextIO | None = None

    @property
    def out(self) -> TextIO:
        return self.stream or sys.stderr

    def resolved(self) -> str:
        if self.mode != "auto":
            return self.mode
        return "tty" if self.out.isatty() else "plain"


_REPORTER = Reporter()
QUIET_BELOW_S = 5.0  # a job done this fast with no line on the way prints no "done" line either


def setup_output(quiet: bool = False, verbose: bool = False) -> Reporter:
    """Configure logging and progress for a command (called once by the CLI)."""
    global _REPORTER
    _REPORTER = Reporter(mode="quiet" if quiet else "auto")
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    root = logging.getLogger("edgevlm_eval")
    for h in list(root.handlers):
        root.removeHandler(h)
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console(stderr=True), show_time=False, show_path=verbose,
                                               markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("edgevlm-eval: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return _REPORTER


def reporter() -> Reporter:
    return _REPORTER


def _dur(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """`with Progress(total, "replaying demo") as p: p.advance(n, failed=k)`."""

    def __init__(self, total: int | None, description: str, *, unit: str = "frames", reporter: Reporter | None = None):
        self.total, self.description, self.unit = total, description, unit
        self.rep = reporter or _REPORTER
        self.mode = self.rep.resolved()
        self.done = self.failed = 0
        self._t0 = self._last_t = time.monotonic()
        self._last_pct = 0.0
        self._printed = False
        self._bar = None

    def __enter__(self):
        if self.mode == "tty":
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TimeRemainingColumn(), transient=True,
                                     console=console(stderr=True))
            self._bar.__enter__()
            self._tid = self._bar.add_task(self.description, total=self.total)
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        elif self.mode == "plain" and exc[0] is None and self.done and (
                self._printed or time.monotonic() - self._t0 >= QUIET_BELOW_S):
            self._line(final=True)  # work done in a moment, with no line on the way, needs no report
        return False

    def advance(self, n: int = 1, *, failed: int = 0) -> None:
        self.done += n
        self.failed += failed
        if self._bar is not None:
            self._bar.advance(self._tid, n)
        elif self.mode == "plain":
            now = time.monotonic()
            pct = 100.0 * self.done / self.total if self.total else 0.0
            if now - self._last_t >= self.rep.every_s or (self.total and pct - self._last_pct >= self.rep.every_pct):
                self._line()
                self._last_t, self._last_pct = now, pct

    def _line(self, final: bool = False) -> None:
        el = time.monotonic() - self._t0
        rate = self.done / el if el > 0 else 0.0
        parts = [f"{self.description}: {self.done}" + (f"/{self.total} ({100 * self.done / self.total:.0f} %)"
                                                         if self.total else "")]
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total and not final and rate > 0:
            parts.append(f"ETA {_dur((self.total - self.done) / rate)}")
        if final:
            parts.append(f"done in {_dur(el)}")
        if self.failed:
            parts.append(f"{self.failed} failed")
        print(", ".join(parts), file=self.rep.out, flush=True)
        self._printed = True
