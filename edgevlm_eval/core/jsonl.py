"""JSONL with a header line: the one implementation behind the LVLM trace and the per-frame log.

A file is a header `{"format": "<id>", ...}` on line 1, then one JSON object per line, appended
and flushed as work finishes. A process killed mid-write leaves at most a torn last line (no
newline after it): readers ignore it and `JsonlAppender` cuts it off before appending, so a resumed
run writes no line twice. A last line that is whole but lacks its newline (the kill fell right
before it) is read, and the appender completes it rather than cutting it (resume counts it done).
A file whose header itself was torn (killed while writing line 1) holds nothing: it is started
again. Any other damage is an error naming the file and the line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from .errors import DatasetError
from .io import write_error


def read_jsonl(path: str | os.PathLike, fmt: str, *, what: str = "file") -> tuple[dict, list[dict]]:
    """(header, lines) of a JSONL file whose header has `format` == fmt. A torn last line is
    dropped; a torn header gives ({}, [])."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise DatasetError(f"{what} not found", path=str(path)) from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{what} is not UTF-8 text ({e.reason} at byte {e.start})", path=str(path)) from None
    lines = text.split("\n")
    if not lines[0].strip():
        return {}, []
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        if len(lines) == 1:  # killed while writing the header: nothing was recorded
            return {}, []
        raise DatasetError(f"line 1: the {what} header is not JSON", path=str(path)) from None
    if not isinstance(header, dict) or header.get("format") != fmt:
        got = header.get("format") if isinstance(header, dict) else None
        article = "an" if what[:1].lower() in "aeiou" or what.startswith(("LVLM", "SVLM")) else "a"
        raise DatasetError(f"line 1: not {article} {what} (format {got!r}, expected {fmt!r})", path=str(path))
    out = []
    last = len(lines) - 1
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            if i - 1 == last:  # no newline after it: the write was cut off
                break
            raise DatasetError(f"line {i}: not JSON", path=str(path)) from None
        if not isinstance(d, dict):
            raise DatasetError(f"line {i}: expected a JSON object, got {type(d).__name__}", path=str(path))
        d["_line"] = i
        out.append(d)
    return header, out


class JsonlAppender:
    """Appends lines to a JSONL-with-header file, resuming an existing one.

    `check(old_header)` may raise when an existing file belongs to something else; `resume=False`
    starts the file again. `flush()` makes what was written durable (after every step)."""

    def __init__(self, path: str | os.PathLike, header: dict, *, resume: bool = True,
                 check: Callable[[dict], None] | None = None, what: str = "file"):
        self.path = Path(path)
        self.what = what
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append = False
        if resume and self.path.exists() and self.path.stat().st_size > 0:
            self._cut_torn_tail()
            old, _ = read_jsonl(self.path, header["format"], what=what)
            if old:
                if check is not None:
                    check(old)
                append = True
        try:
            self.fh = open(self.path, "a" if append else "w", encoding="utf-8")
            if not append:
                self.fh.write(json.dumps(header, sort_keys=True) + "\n")
                self.fh.flush()
        except OSError as e:
            raise write_error(self.path, e) from None
        self._dumps = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False).encode

    def _cut_torn_tail(self) -> None:
        """A last line without its newline: whole (the kill fell right before the newline) it is
        what `read_jsonl` reads, so it is kept and given its newline; else it is cut off."""
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                start = data.rfind(b"\n") + 1
                try:
                    json.loads(data[start:].decode("utf-8"))
                    whole = True
                except (ValueError, UnicodeDecodeError):
                    whole = False
                if whole:
                    fh.write(b"\n")
                else:
                    fh.truncate(start)

    def write(self, obj: Any) -> None:
        try:
            self.fh.write(self._dumps(obj) + "\n")
        except OSError as e:
            raise write_error(self.path, e) from None

    def write_sorted(self, obj: Any) -> None:
        """A line with sorted keys (traces: stable, diffable files)."""
        try:
            self.fh.write(json.dumps(obj, sort_keys=True) + "\n")
        except OSError as e:
            raise write_error(self.path, e) from None

    def flush(self) -> None:
        try:
            self.fh.flush()
        except OSError as e:
            raise write_error(self.path, e) from None

    def close(self) -> None:
        if not self.fh.closed:
            try:
                self.fh.flush()
            finally:
                self.fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
