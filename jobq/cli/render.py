"""How the command line shows things: aligned tables, relative times, a progress bar, JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, TextIO

_PHRASES = {"queued": "is queued", "running": "is running",
            "failed": "failed its last attempt and waits for a retry",
            "succeeded": "has succeeded", "dead": "is dead", "cancelled": "was cancelled"}


def status_phrase(status: Any) -> str:
    """'is running', 'has succeeded', 'was cancelled': a status in a sentence about a job."""
    value = getattr(status, "value", status)
    return _PHRASES.get(value, f"is {value}")


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{math.floor(fraction * 100):d}%"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in cells) and bool(cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    print(line(headers), file=out)
    for row in cells:
        print(line(row), file=out)


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("%"))
    except ValueError:
        return False
    return True


def short(value: Any, width: int = 80) -> str:
    """A one-line repr, cut to ``width`` characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def bar(fraction: float, width: int = 30) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def as_json(value: Any, out: TextIO) -> None:
    """JSON for scripts; values JSON cannot hold are shown by their repr."""
    print(json.dumps(value, indent=2, sort_keys=True, default=_jsonable), file=out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)
