"""Relative times as people read them ("3m ago", "in 10s"), shared by the command line and the
dashboard so that both say a time the same way."""

from __future__ import annotations

import time


def ago(when: float | None, now: float | None = None) -> str:
    """'3s ago', '4m ago', '2h ago', '5d ago'; 'in 10s' for the future; '-' for nothing."""
    if when is None:
        return "-"
    delta = (time.time() if now is None else now) - when
    future, delta = delta < 0, abs(delta)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if delta >= size or unit == "s":
            text = f"{int(delta // size)}{unit}"
            return f"in {text}" if future else f"{text} ago"
    raise AssertionError("unreachable")
