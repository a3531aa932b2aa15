"""Lines for a person: the one place cpv's commands print through, and their exit codes."""

from __future__ import annotations

import os
import sys

import click

from cpv_core.trust import visible_lines

#: exit status after Ctrl-C (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130
#: exit status of ``cpv verify`` when stored content is damaged
EXIT_DAMAGED = 12


def out(line: str, *, err: bool = False, fg: str | None = None) -> None:
    """Print a human-readable line: control characters in it (which can only
    come from values cpv did not write itself: tag messages, names, metrics)
    are shown escaped, so nothing read from a repository can drive the terminal.
    ``fg`` colours it, on a terminal only and never when ``NO_COLOR`` is set."""
    text = visible_lines(line)
    if fg and colour_wanted(err):
        text = click.style(text, fg=fg)
    click.echo(text, err=err)


def colour_wanted(err: bool) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (no-color.org)."""
    stream = sys.stderr if err else sys.stdout
    return not os.environ.get("NO_COLOR") and bool(getattr(stream, "isatty", lambda: False)())
