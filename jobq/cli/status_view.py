"""``jobq status``: counts by status, the backlog's wait, workers and running jobs.

By default it reads by index seeks only (:meth:`Engine.rough_counts`, :meth:`Engine.oldest_due`,
:meth:`Engine.next_waiting`), so it answers at once on a queue of a million jobs; ``--exact``
counts every job and reads every waiting one, as it did before rough counts.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import TextIO

from .. import listing
from ..ago import ago
from ..queue import Queue
from ..state import Status
from . import render
from .commands import _group
from .worker_view import Census


def status(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    now = time.time()
    w = Waiting.exact(q, now) if args.exact else Waiting.rough(q, now)
    running = q.engine.rows(Status.RUNNING, limit=args.limit)
    quarantined = q.engine.damage()
    old_keys = q.engine.old_keys_pending()
    census = Census.of(q)
    warning = census.warning(w.oldest_due is not None, q.location)
    for row in running:
        row["worker_state"] = (census.state_of(row["owner"]) or "unknown") if row["owner"] \
            else None
    if args.json:
        retry = w.waiting.get((Status.FAILED, False))
        render.as_json({"path": q.location, "shared_group": _group(q), "counts": w.counts,
                        "counts_capped": w.capped(),
                        "running": running,
                        "oldest_waiting_age": None if w.oldest_due is None
                        else now - w.oldest_due,
                        "next_retry_in": None if retry is None else retry - now,
                        "quarantined": quarantined, "old_keys_pending": old_keys,
                        "workers": census.as_json(),
                        "warnings": [warning] if warning else []}, out)
        return 0
    shared = "" if q.shared_group is None else f" (shared with group {_group(q)})"
    print(f"queue {q.location}{shared}", file=out)
    capped = w.capped()
    for name, n in w.counts.items():
        note = census.running_note() if name == "running" else _waiting_note(name, w.waiting, now)
        shown = f"{n}+" if name in capped else str(n)
        print(f"  {name:<10} {shown:>8}{note}", file=out)
    if capped:
        print(f"  (counted up to {listing.ROUGH_CAP} each: jobq status --exact counts them all)",
              file=out)
    print(census.line(), file=out)
    if warning:
        print(f"\nwarning: {warning}", file=out)
    if quarantined:
        print(f"\nwarning: {len(quarantined)} damaged log range(s) were skipped and copied to"
              f" {os.path.join(q.path, 'quarantine')} (last: {quarantined[-1]['reason']})",
              file=out)
    if old_keys:
        print(f"\nkey rotation: {old_keys} old secret key(s) may still have signed records;"
              " jobq verify counts them, jobq rekey re-signs them with the current key",
              file=out)
    if running:
        print("\nrunning:", file=out)
        render.table(["JOB ID", "TASK", "ATTEMPT", "PROGRESS", "UPDATED", "WORKER"],
                     [(r["job_id"], r["task"], r["attempts"], render.percent(r["progress"]),
                       ago(r["updated_at"]),
                       (r["owner"] or "-") + (" (dead)" if r["worker_state"] == "dead" else ""))
                      for r in running], out)
    return 0


@dataclass(frozen=True)
class Waiting:
    """What ``jobq status`` says of the backlog: counts per status, and ``waiting`` as
    :meth:`Engine.waiting` gives it ((status, due) -> earliest run-at), due ones summed up in
    ``oldest_due`` (the run-at of the longest-waiting due job)."""

    counts: dict[str, int]
    waiting: dict[tuple[Status, bool], float]
    oldest_due: float | None
    rough: bool

    @classmethod
    def exact(cls, q: Queue, now: float) -> Waiting:
        """Every job counted and every waiting one read: time grows with the backlog."""
        waiting = q.engine.waiting(now)
        due = [t for (_, is_due), t in waiting.items() if is_due]
        return cls(q.counts(), waiting, min(due) if due else None, False)

    @classmethod
    def rough(cls, q: Queue, now: float) -> Waiting:
        """Index seeks only, so it answers at once on a million jobs: counts stop at
        ROUGH_CAP, and the oldest due job is the oldest by arrival of each priority; it is
        shown as queued (or, if none is queued, as a failed job's retry)."""
        counts = q.engine.rough_counts()
        age = q.engine.oldest_due()
        waiting = {(s, False): t for s, t in q.engine.next_waiting(now).items()}
        oldest = None if age is None else now - age
        if oldest is not None:
            waiting[(Status.QUEUED if counts.get("queued") or not counts.get("failed")
                     else Status.FAILED, True)] = oldest
        return cls(counts, waiting, oldest, True)

    def capped(self) -> list[str]:
        """The statuses whose count stopped at the cap: that many or more."""
        return [s for s, n in self.counts.items() if self.rough and n >= listing.ROUGH_CAP]


def _waiting_note(name: str, waiting: dict[tuple[Status, bool], float], now: float) -> str:
    """When the oldest queued job became due, else when the next is; when a retry is due."""
    if name not in ("queued", "failed"):
        return ""
    status = Status(name)
    if (status, True) in waiting:
        what = "oldest waiting" if status is Status.QUEUED else "a retry waiting"
        return f"  {what} since {ago(waiting[status, True], now)}"
    if (status, False) in waiting:
        what = "next due" if status is Status.QUEUED else "next retry"
        return f"  {what} {ago(waiting[status, False], now)}"
    return ""
