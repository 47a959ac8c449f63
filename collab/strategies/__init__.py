"""The built-in strategies (one file each) and how any strategy is found by reference.

    resolve_strategy("edgevlm")                       a built-in (BUILTIN)
    resolve_strategy("my_pkg.my_mod:MyStrategy")      a class in an importable module
    resolve_strategy("path/to/file.py:MyStrategy")    a class in a Python file
    resolve_strategy("mine")                          an installed package's entry point in the
                                                      group `edgevlm_eval.strategies`
"""

from __future__ import annotations

import importlib
import pkgutil

from edgevlm_eval.core.errors import ConfigError, UnknownNameError
from edgevlm_eval.core.plugins import load_attr

from ..strategy import Run, Strategy


def _builtins() -> dict[str, type[Strategy]]:
    """Every Strategy class defined in this package's modules, ordered by its `order`: adding a
    built-in strategy is adding one file here."""
    found: dict[str, type[Strategy]] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, Strategy) and obj.__module__ == module.__name__
                    and obj.name):
                found[obj.name] = obj
    return dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))


BUILTIN: dict[str, type[Strategy]] = _builtins()
ENTRY_POINT_GROUP = "edgevlm_eval.strategies"
DEFAULT = "edgevlm"  # the main command's strategy when none is given: the paper's method


def _entry_points() -> dict:
    """name -> the distinct entry points of that name (two installed packages may declare one)."""
    from importlib.metadata import entry_points

    out: dict[str, list] = {}
    try:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if all(ep.value != e.value for e in out.get(ep.name, ())):
                out.setdefault(ep.name, []).append(ep)
    except Exception:  # noqa: BLE001 - a broken installed package must not break the built-ins
        return {}
    return out


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


def resolve_strategy(ref: str) -> type[Strategy]:
    """The Strategy class a reference names (module docstring)."""
    ref = ref.strip()
    if ref in BUILTIN:
        return BUILTIN[ref]
    if ":" in ref:
        return _check_class(load_attr(ref, what="strategy", key="--strategy"), ref)
    eps = _entry_points()
    if ref in eps:
        if len(eps[ref]) > 1:
            raise ConfigError(f"strategy {ref!r}: installed packages declare it {len(eps[ref])} times "
                              f"({', '.join(e.value for e in eps[ref])}); name the class as module:Class, or "
                              "uninstall one", key="--strategy")
        try:
            obj = eps[ref][0].load()
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"strategy {ref!r}: loading its entry point failed: {type(e).__name__}: {e}",
                              key="--strategy") from None
        return _check_class(obj, ref)
    raise UnknownNameError("strategy", ref, [*BUILTIN, *eps, "<file.py>:<Class>", "<module>:<Class>"])


__all__ = ["BUILTIN", "DEFAULT", "ENTRY_POINT_GROUP", "resolve_strategy", "run_of"]


def run_of(strategy, *, name: str | None = None, latency: str | None = None, **knobs) -> "Run":
    """A Run of a strategy (a reference or a class) with knob values: `run_of("edgevlm", K_call=2)`."""

    cls = resolve_strategy(strategy) if isinstance(strategy, str) else strategy
    return Run(cls, cls.Knobs.from_mapping(knobs, f"strategy {cls.name}: "), name=name, latency=latency)
