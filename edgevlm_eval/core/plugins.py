"""Loading a user's class by reference: the one home for `package.module:Name` and
`path/to/file.py:Name` (user strategies, third-party model adapters). A file is imported once per
version of it (path, modification time, size), under a module name of its own, so that dataclasses
and pickling find it."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError

_loaded: dict[tuple, Any] = {}


def load_attr(ref: str, *, what: str, key: str, path: str | None = None, base: Path | None = None) -> Any:
    """The object `ref` names. `what` ("strategy", "adapter"...) and `key`/`path` name where the
    reference was given in errors; a relative file path is read from `base` (default: the current
    folder)."""
    target, sep, name = ref.rpartition(":")
    if not sep or not target or not name:
        raise ConfigError(f"{what} {ref!r}: expected package.module:Name or path/to/file.py:Name", path=path, key=key)
    try:
        if target.endswith(".py") or "/" in target or "\\" in target:
            file = Path(target).expanduser()
            if not file.is_absolute() and base is not None:
                file = base / file
            if not file.is_file():
                raise ConfigError(f"{what} {ref!r}: file not found: {file}", path=path, key=key)
            st = file.stat()
            cache_key = (str(file.resolve()), st.st_mtime_ns, st.st_size, name)
            if cache_key in _loaded:
                return _loaded[cache_key]
            mod_name = "edgevlm_user_" + hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
            spec = importlib.util.spec_from_file_location(mod_name, file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(mod_name, None)
                raise
        else:
            cache_key = (target, name)
            if cache_key in _loaded:
                return _loaded[cache_key]
            module = importlib.import_module(target)
        obj = getattr(module, name)
    except ConfigError:
        raise
    except AttributeError:
        raise ConfigError(f"{what} {ref!r}: {target} has no {name!r}", path=path, key=key) from None
    except Exception as e:  # noqa: BLE001 - a user's module failing to import: say which and why
        raise ConfigError(f"{what} {ref!r}: importing {target} failed: {type(e).__name__}: {e}", path=path,
                          key=key) from None
    _loaded[cache_key] = obj
    return obj
