"""``jobq show GID`` of a group (``q.map``): its members by status, progress and final job; and
``jobq list --group GID``: its members."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from .. import group_ids
from ..ago import ago
from ..errors import JobNotFound
from ..queue import Queue
from . import render


def is_group(q: Queue, name: str) -> bool:
    """Is ``name`` the whole id of a group (``jobq show`` then shows the group)?"""
    from ..errors import GroupNotFound
    if not name.startswith(group_ids.PREFIX) or group_ids.group_of(name) is not None \
            or group_ids.is_then(name):
        return False
    try:
        q.group(name)
    except GroupNotFound:
        return False
    return True


def show_group(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    st = q.group(args.job_id)
    then: dict[str, Any] | None = None
    if st.then_job is not None:
        try:
            then = {"job_id": st.then_job, "status": q.engine.status(st.then_job).value}
        except JobNotFound:
            then = {"job_id": st.then_job, "status": "purged"}
    if args.json:
        render.as_json({"group_id": st.id, "jobs": st.jobs, "items": st.items,
                        "chunk_size": st.chunk_size, "counts": st.counts, "ended": st.ended,
                        "finished": st.finished, "progress": st.progress, "done": st.done,
                        "then": then, "created_at": st.created_at, "done_at": st.done_at}, out)
        return 0
    jobs = "still being enqueued" if st.jobs is None else str(st.jobs)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(st.counts.items())) or "none"
    lines = [("group", st.id), ("jobs", jobs),
             ("items", "-" if st.items is None else f"{st.items} (chunks of {st.chunk_size})"),
             ("members", counts),
             ("progress", f"{render.bar(st.progress)} {render.percent(st.progress)}"),
             ("done", ago(st.done_at) if st.done else "no"), ("created", ago(st.created_at)),
             ("then", "none" if then is None else f"{then['job_id']} ({then['status']})")]
    for name, value in lines:
        print(f"{name + ':':<10} {value}", file=out)
    return 0


def member_rows(q: Queue, group_id: str, status: Any, limit: int) -> list[dict[str, Any]]:
    """The group's members (newest first), for ``jobq list --group``; GroupNotFound if none."""
    q.group(group_id)
    return q.engine.rows(status, limit=limit, group=group_id)  # a range seek, not a scan
