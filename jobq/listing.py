"""What the paged reads of a monitor (``jobq dashboard``) share on every engine.

Pages go by key (the last job shown), never by offset, and counts stop at :data:`ROUGH_CAP`,
so that a page of a queue holding a million jobs costs what a page of a small one costs:
dashboards that counted or skipped every row died on big queues (rq-dashboard#91, Oban#1140).
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidArgument

__all__ = ["MAX_PAGE", "ROUGH_CAP", "SCAN_LIMIT", "Page", "check_page", "shown"]

ROUGH_CAP = 10_000  # rough_counts() stops counting here: shown as "10,000+"
MAX_PAGE = 1_000
SCAN_LIMIT = 20_000  # a dashboard page's filter reads this many jobs past its cursor at most


class Page(list):  # type: ignore[type-arg]
    """The rows of a page (a list), and ``resume``: when a ``scan_limit`` ran out before the
    page filled, the id of the last job examined, to page on from (``after=``) and go on
    searching; None when the page filled or the search reached the end."""

    resume: str | None = None

    def __init__(self, rows: Any = (), resume: str | None = None) -> None:
        super().__init__(rows)
        self.resume = resume


def check_page(limit: int, id_contains: str | None, scan_limit: int | None = None,
               group: str | None = None) -> str | None:
    """Validate a page request; the id filter as the engines take it (None: no filter)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidArgument(f"a page holds 1 to {MAX_PAGE} jobs, not {limit!r}")
    if scan_limit is not None and (isinstance(scan_limit, bool) or not isinstance(
            scan_limit, int) or scan_limit < 1):
        raise InvalidArgument(f"scan_limit is a number of jobs above 0, not {scan_limit!r}")
    if group is not None and (not isinstance(group, str) or not group):
        raise InvalidArgument(f"group must be a group id, not {group!r}")
    if id_contains is not None and not isinstance(id_contains, str):
        raise InvalidArgument(f"id_contains must be a string, not {id_contains!r}")
    return id_contains or None


def shown(counts: dict[str, int]) -> dict[str, int]:
    """Counts per status as every engine reports them: each status, zero or not, except
    ``waiting`` (for parents: ``depends_on``), present only while some job waits, so that a
    queue that never uses dependencies reports the statuses it always did."""
    if not counts.get("waiting"):
        counts.pop("waiting", None)
    return counts
