"""The rich console every command prints through."""

from __future__ import annotations

import sys


def console(stderr: bool = False):
    """A rich Console. Piped or captured output gets a wide fixed width and no soft wrapping, so
    tables stay readable in logs and long paths stay greppable on one line."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(file=stream, soft_wrap=True, width=None if tty else 200)
