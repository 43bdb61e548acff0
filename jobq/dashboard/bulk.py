"""Retry or purge every dead (or cancelled) job a jobs filter matches: the confirmation page
that says how many, and the work, bounded per click.

Each click handles at most :data:`CAPS` jobs of its action, oldest first, so that a million dead
jobs cannot hang the server (it serves one request at a time): a retry is a transaction of its
own (durable: a commit each), a purge deletes a batch of ids per transaction. The page says so,
and a click again takes the next ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidArgument, JobNotFound
from ..listing import MAX_PAGE
from ..queue import Queue
from ..state import Status
from . import views
from .html import Safe, el, url

__all__ = ["CAPS", "Bulk", "parse", "matching", "run", "confirm"]

CAPS = {"retry": 1_000, "purge": 10_000}
LABELS = {"retry": "Retry", "purge": "Purge"}
DONE = {"retry": "Retried", "purge": "Purged"}
WHAT = {"retry": "queued again with a fresh budget of attempts",
        "purge": "deleted for good (their arguments, results and errors with them)"}
STATUSES = (Status.DEAD, Status.CANCELLED)


@dataclass(frozen=True)
class Bulk:
    action: str
    filters: views.Filters
    ids: list[str]  # the jobs this click handles, oldest first
    more: bool  # more match than the cap: a click again takes the next


def parse(action: str, form: dict[str, str]) -> views.Filters:
    """The filter a bulk action applies to: status dead or cancelled, a task, an id text."""
    if action not in CAPS:
        raise InvalidArgument(f"no bulk action {action!r}: retry or purge")
    filters = views.Filters.parse({k: v for k, v in form.items()
                                   if k in ("status", "task", "q", "group")})
    if filters.status not in STATUSES:
        raise InvalidArgument(f"{LABELS[action].lower()} all applies to dead or cancelled jobs:"
                              " filter the jobs by one of those statuses")
    return filters


def matching(q: Queue, action: str, filters: views.Filters) -> Bulk:
    """The oldest jobs the filter matches, up to the action's cap (paged by key)."""
    cap, ids, after = CAPS[action], [], None
    while len(ids) <= cap:  # one more than the cap: whether more match
        limit = min(MAX_PAGE, cap + 1 - len(ids))
        page = q.engine.rows(filters.status, limit, False, after=after,
                             task=filters.task or None, id_contains=filters.id_contains or None,
                             group=filters.group or None)
        ids += [r["job_id"] for r in page]
        if len(page) < limit:
            break
        after = page[-1]["job_id"]
    return Bulk(action, filters, ids[:cap], len(ids) > cap)


def run(q: Queue, bulk: Bulk) -> int:
    """Do it; how many jobs it changed (one retried or purged meanwhile is skipped)."""
    if bulk.action == "purge":
        assert bulk.filters.status is not None
        return q.engine.purge_jobs(bulk.ids, frozenset({bulk.filters.status}))
    done = 0
    for job_id in bulk.ids:
        try:
            done += q.retry(job_id)
        except JobNotFound:  # purged since it was listed
            continue
    return done


def confirm(bulk: Bulk, token: str) -> Safe:
    """How many jobs, which, what will become of them, and the form that does it."""
    f, n, label = bulk.filters, len(bulk.ids), LABELS[bulk.action]
    status = f.status.value if f.status else ""
    which = [el("li", "status ", el("strong", status))]
    if f.task:
        which.append(el("li", "task ", el("code", f.task)))
    if f.id_contains:
        which.append(el("li", "id contains ", el("code", f.id_contains)))
    back = el("a", "Back to the jobs", href=url("/jobs", **f.query(after=None)))
    if not n:
        return Safe(el("p", "No job matches: nothing to do.", id="bulk-count") + el("p", back))
    cap = CAPS[bulk.action]
    more = el("p", f"More than {cap:,} jobs match: this click takes the oldest {cap:,}"
                   " (at most this many per click); click again for the next.",
              class_="problem", id="bulk-more") if bulk.more else ""
    form = el("form", el("input", type="hidden", name="token", value=token),
              el("input", type="hidden", name="status", value=status),
              el("input", type="hidden", name="task", value=f.task),
              el("input", type="hidden", name="q", value=f.id_contains),
              el("button", f"{label} {n:,} jobs", type="submit"),
              action=f"/bulk/{bulk.action}", method="post", class_=f"bulk {bulk.action}")
    return Safe(el("p", f"{label} ", el("strong", f"{n:,}", id="bulk-n"),
                   f" job{'s' if n != 1 else ''} matching:", id="bulk-count")
                + el("ul", *which, class_="bulk-filter")
                + el("p", f"They will be {WHAT[bulk.action]}. At most {cap:,} jobs per click.")
                + more + el("div", form, back, class_="actions"))


def links(filters: views.Filters) -> Safe:
    """The jobs page's links to the confirmation pages (only for dead or cancelled jobs)."""
    if filters.status not in STATUSES:
        return Safe("")
    query = {"status": filters.status.value if filters.status else None,
             "task": filters.task, "q": filters.id_contains}
    return el("p", *(el("a", f"{LABELS[a]} all matching...", href=url(f"/bulk/{a}", **query),
                        class_=f"bulk-link {a}", id=f"bulk-{a}") for a in CAPS),
              class_="actions")
