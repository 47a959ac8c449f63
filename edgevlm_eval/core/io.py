"""Small I/O helpers.

Writes are atomic: the data goes to a temporary file in the same folder, which then replaces the
target, so a crash or a full disk never leaves a half-written file: the previous file stays as it
was. A failed write raises WriteError, which names the file and the cause.

Reads of annotation files go through `read_text`, which turns a missing, unreadable or non-UTF-8
file into a DatasetError naming the file (and, for bad bytes, the line).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from edgevlm_eval.core.errors import DatasetError, EdgeVLMError


class WriteError(EdgeVLMError, OSError):
    """A file could not be written (disk full, no permission, a folder in the way, ...).
    The message names the file and the cause; the previous file, if any, is unchanged.
    An OSError too, so code that already handles OSError keeps working."""

    def __init__(self, message: str, *, path: str | None = None, code: int | None = None):
        super().__init__(message)
        self.path = path
        self.errno = code

    def __str__(self) -> str:  # OSError would format it as "[Errno n] ..."
        return self.args[0]


def write_error(path: str | os.PathLike, cause: BaseException) -> WriteError:
    """The WriteError for a failed write of `path`: the file, the cause, and what is on disk now."""
    code = getattr(cause, "errno", None)
    if isinstance(cause, OSError) and cause.strerror:
        name = errno.errorcode.get(code or -1)
        why = cause.strerror + (f" [{name}]" if name else "")
    else:
        why = f"{type(cause).__name__}: {cause}"
    after = "the previous file is unchanged" if Path(path).is_file() else "nothing was written"
    return WriteError(f"cannot write {path}: {why}; {after}", path=str(path), code=code)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> None:
    """Write to a temporary file in the same folder, (fsync,) then rename over `path`.
    `fsync=False` for files that can be made again (generated images): the rename still keeps
    a failed write from leaving a half-written file, without paying a disk flush per file."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))  # replace the file the link points to; the link stays a link
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        # a device, pipe or socket (--out /dev/stdout, /dev/null): stream into it; replacing it with a
        # regular file would break it (and as root, would replace /dev/null itself)
        try:
            with open(path, "wb") as fh:
                fh.write(data)
        except OSError as e:
            raise write_error(path, e) from None
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would (shared result folders)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`text` as UTF-8, written atomically (see atomic_write_bytes)."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise write_error(path, e) from None
    atomic_write_bytes(path, data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def utf8_error(data: bytes, e: UnicodeDecodeError) -> str:
    """Where a decode failed, for a message: 'byte 0xe9 at line 3, column 5'."""
    line = data.count(b"\n", 0, e.start) + 1
    col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
    return f"byte 0x{data[e.start]:02x} at line {line}, column {col}"


def read_text(path: str | os.PathLike, *, what: str = "file", expected: str | None = None,
              error: type[EdgeVLMError] = DatasetError) -> str:
    """The UTF-8 text of an annotation or configuration file (a leading byte-order mark is dropped).
    A missing, unreadable or non-UTF-8 file raises `error` (a DatasetError by default; a
    ConfigError for configuration files) naming it; `what` says what the file is ("labels file"),
    `expected` is the layout shown with a DatasetError."""
    path = Path(path)

    def fail(message: str):
        extra = {"expected": expected} if expected is not None else {}
        return error(message, path=str(path), **extra)

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise fail(f"{what} not found") from None
    except IsADirectoryError:
        raise fail(f"{what} is a folder, not a file") from None
    except OSError as e:
        raise fail(f"cannot read the {what}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise fail(f"{what} is not UTF-8 text ({utf8_error(data, e)}); save it as UTF-8") from None
