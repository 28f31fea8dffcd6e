"""What every ``taskq`` sub-command shares: the Group shape, ``--json``, tables and times."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

Handler = Callable[[BaseCommand, dict[str, Any]], None]


class Group:
    """One ``taskq`` sub-command and its own sub-commands."""

    name = ""
    help = ""

    def add_parsers(self, parser: CommandParser) -> None:
        """Add the actions; each parser sets a ``handler`` default (see ``Command.handle``)."""
        raise NotImplementedError


def add_json(parser: argparse.ArgumentParser) -> None:
    """The ``--json`` flag every action takes."""
    parser.add_argument("--json", action="store_true", dest="json",
                        help="print machine-readable JSON instead of text")


def write_json(command: BaseCommand, value: Any, *, compact: bool = False) -> None:
    """``value`` as one JSON document (times as ISO 8601, anything else as its repr);
    ``compact``: on one line (a stream of frames, one per line)."""
    command.stdout.write(json.dumps(value, indent=None if compact else 2, sort_keys=True,
                                    default=_plain))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    return repr(value)


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as aligned text lines; the first row is the header; the last column is not padded."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)),
                       row[-1]]).rstrip() for row in rows]


def positive(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def seconds(text: str) -> float:
    """argparse type: a number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above zero, got {text!r}")
    return value


def when(moment: datetime | None) -> str:
    """A time in UTC, to the second ("-" when it is not known)."""
    if moment is None:
        return "-"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def ago(moment: datetime | None, now: datetime) -> str:
    """How long before ``now``: "4s ago", "3m ago", "2h ago", "5d ago"."""
    if moment is None:
        return "-"
    left = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= size:
            return f"{left // size}{unit} ago"
    return f"{left}s ago"


def indent(text: str) -> str:
    return "\n".join("  " + line for line in str(text).splitlines() or [""])
