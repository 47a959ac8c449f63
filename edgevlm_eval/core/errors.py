"""Errors that tell the user what went wrong, where, and what was expected."""

from __future__ import annotations

import difflib
from typing import Iterable


class EdgeVLMError(Exception):
    """Base class: errors the CLI prints without a traceback."""


class ConfigError(EdgeVLMError):
    """A malformed YAML file, an unknown key, a bad value. Names the file and the key."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        where = []
        if path:
            where.append(str(path))
        if key:
            where.append(f"key '{key}'")
        prefix = (": ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)
        self.path = path
        self.key = key


class DatasetError(EdgeVLMError):
    """A missing dataset root or file, or a file in an unexpected format."""

    def __init__(self, message: str, *, path: str | None = None, expected: str | None = None):
        text = message
        if path:
            text += f"\n  path tried: {path}"
        if expected:
            text += f"\n  expected layout: {expected}"
        super().__init__(text)
        self.path = path
        self.expected = expected


class ModelUnavailable(EdgeVLMError):
    """A model endpoint or checkpoint that cannot answer (wrong key, unknown model, unreachable,
    failing after its retries, unusable replies): found before anything is recorded against it.
    `cause` is a short word (auth, permission, not_found, bad_request, connection, timeout, ...)."""

    def __init__(self, message: str, *, spec: str, cause: str):
        super().__init__(message)
        self.spec = spec
        self.cause = cause


class UnknownNameError(EdgeVLMError, KeyError):
    """An unknown task / model / strategy name. Lists the known names, nearest first."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(set(known))
        ordered = nearest(name, known)
        super().__init__(f"unknown {kind} '{name}'. Known {kind}s (nearest first): {', '.join(ordered) or '(none)'}")
        self.kind = kind
        self.name = name
        self.known = ordered

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def nearest(name: str, known: Iterable[str]) -> list[str]:
    """All `known` names, the ones most similar to `name` first."""
    known = list(known)
    low = name.lower()

    def score(k: str) -> tuple:
        kl = k.lower()
        return (
            -difflib.SequenceMatcher(None, low, kl).ratio() - (0.5 if low in kl or kl in low else 0.0),
            k,
        )

    return sorted(known, key=score)
