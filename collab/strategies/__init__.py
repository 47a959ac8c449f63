"""The built-in strategies (one file each) and how any strategy is found by reference.

    resolve_strategy("edgevlm")                       a built-in (BUILTIN)
    resolve_strategy("my_pkg.my_mod:MyStrategy")      a class in an importable module
    resolve_strategy("path/to/file.py:MyStrategy")    a class in a Python file
    resolve_strategy("mine")                          an installed package's entry point in the
                                                      group `edgevlm_eval.strategies`
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from edgevlm_eval.core.errors import ConfigError, UnknownNameError

from ..strategy import Strategy
from .adas import ADAS
from .distributed_vlm import DistributedVLM
from .edgevlm import EdgeVLM
from .laecips import LAECIPS
from .laecips_clf import LAECIPSClf
from .lvlm_only import LVLMOnly
from .parallel import Parallel
from .svlm_only import SVLMOnly

BUILTIN: dict[str, type[Strategy]] = {c.name: c for c in (SVLMOnly, LVLMOnly, DistributedVLM, Parallel, LAECIPS,
                                                          LAECIPSClf, ADAS, EdgeVLM)}
ENTRY_POINT_GROUP = "edgevlm_eval.strategies"


def _entry_points() -> dict:
    from importlib.metadata import entry_points

    try:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # noqa: BLE001 - a broken installed package must not break the built-ins
        return {}


def _check_class(obj, ref: str) -> type[Strategy]:
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        raise ConfigError(f"strategy {ref!r}: {obj!r} is not a subclass of edgevlm_eval.collab.strategy.Strategy",
                          key="--strategy")
    if not obj.name:
        raise ConfigError(f"strategy {ref!r}: the class sets no `name`", key="--strategy")
    if obj.name in BUILTIN and BUILTIN[obj.name] is not obj:
        raise ConfigError(f"strategy {ref!r}: its name {obj.name!r} is a built-in strategy's; choose another",
                          key="--strategy")
    return obj


def _load_file(path: Path, ref: str):
    if not path.is_file():
        raise ConfigError(f"strategy {ref!r}: file not found", path=str(path), key="--strategy")
    mod_name = f"edgevlm_user_strategy_{abs(hash(str(path.resolve())))}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[mod_name]
        raise ConfigError(f"strategy {ref!r}: importing {path} failed: {type(e).__name__}: {e}",
                          key="--strategy") from None
    return module


def resolve_strategy(ref: str) -> type[Strategy]:
    """The Strategy class a reference names (module docstring)."""
    ref = ref.strip()
    if ref in BUILTIN:
        return BUILTIN[ref]
    if ":" in ref:
        where, _, cls_name = ref.rpartition(":")
        if where.endswith(".py") or "/" in where or "\\" in where:
            module = _load_file(Path(where).expanduser(), ref)
        else:
            try:
                module = importlib.import_module(where)
            except ImportError as e:
                raise ConfigError(f"strategy {ref!r}: cannot import module {where!r} ({e})", key="--strategy") from None
        obj = getattr(module, cls_name, None)
        if obj is None:
            raise ConfigError(f"strategy {ref!r}: module {where!r} has no {cls_name!r}", key="--strategy")
        return _check_class(obj, ref)
    eps = _entry_points()
    if ref in eps:
        try:
            obj = eps[ref].load()
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"strategy {ref!r}: loading its entry point failed: {type(e).__name__}: {e}",
                              key="--strategy") from None
        return _check_class(obj, ref)
    raise UnknownNameError("strategy", ref, [*BUILTIN, *eps, "<file.py>:<Class>", "<module>:<Class>"])


__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "resolve_strategy", "run_of", "SVLMOnly", "LVLMOnly", "DistributedVLM", "Parallel",
           "LAECIPS", "LAECIPSClf", "ADAS", "EdgeVLM"]


def run_of(strategy, *, name: str | None = None, latency: str | None = None, **knobs) -> "Run":
    """A Run of a strategy (a reference or a class) with knob values: `run_of("edgevlm", K_call=2)`."""
    from ..strategy import Run

    cls = resolve_strategy(strategy) if isinstance(strategy, str) else strategy
    return Run(cls, cls.Knobs.from_mapping(knobs, f"strategy {cls.name}: "), name=name, latency=latency)
