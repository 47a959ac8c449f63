"""Small I/O helpers: atomic writes (a crash never leaves a half-written results file)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import EdgeVLMError


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would (shared result folders)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def disk_error(e: OSError, path: str | os.PathLike) -> "EdgeVLMError":
    """An OSError met while writing `path`, as an error the command line prints without a
    traceback: disk full, read-only file system, no permission."""
    import errno

    why = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
           errno.EACCES: "permission denied", errno.EDQUOT: "the disk quota is exceeded"}.get(e.errno, e.strerror or str(e))
    return EdgeVLMError(f"cannot write {path}: {why} ({type(e).__name__} errno {e.errno}); what was written "
                        "before is kept, free space and run the same command again to resume")
