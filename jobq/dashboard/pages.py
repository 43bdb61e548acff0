"""The pages, as HTML: views (:mod:`.views`) drawn with the escaping builders of :mod:`.html`.

Every action is an HTML form that works without JavaScript, a POST carrying the run's token;
forms are drawn only when actions are on.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .. import group_ids
from ..state import Status
from ..worker_info import WorkerState
from . import chart, views
from .timeline import timeline
from .html import Safe, count, el, esc, job_url, table, url, when

def overview(v: views.Overview) -> Safe:
    cells = [el("a", el("span", s.value, class_=f"status {s.value}"),
                el("strong", count(v.counts.get(s.value, 0))),
                href=url("/jobs", status=s.value), class_="count", data_status=s.value)
             for s in Status]
    live = [w for w in v.workers if w.alive]
    oldest = "none waiting" if v.oldest_due is None else _duration(v.oldest_due)
    workers = table(("worker", "state", "host", "pid", "started", "heartbeat", "doing"),
                    ([w.id, w.state.value, w.host or "-", w.pid or "-", when(w.started, v.now),
                      when(w.heartbeat, v.now), _doing(w, bool(live))] for w in v.workers),
                    empty="no workers", id="workers")
    failures = table(("job", "task", "status", "attempts", "updated"),
                     ([el("a", r["job_id"], href=job_url(r["job_id"])), r["task"],
                       _status(r["status"]), r["attempts"], when(r["updated_at"], v.now)]
                      for r in v.failures), empty="no dead jobs", id="failures")
    jump = el("form", el("label", "Job id ", el("input", name="id", required=True,
                                                   placeholder="job id")),
              el("button", "Open", type="submit"), action="/jobs", method="get", class_="jump")
    return Safe(el("div", el("section", *cells, class_="counts"),
                   el("p", "Oldest due job waiting: ", el("strong", oldest, id="oldest-due"),
                      Safe(" &middot; "), "Live workers: ",
                      el("strong", str(len(live)), id="live-workers")),
                   *([el("h2", "Jobs ended per minute, the last hour"),
                      chart.activity(v.activity)] if v.activity else []),
                   el("h2", "Workers"), workers, el("h2", "Recent dead jobs"), failures,
                   id="live") + jump)


def jobs(v: views.JobList) -> Safe:
    f = v.filters
    status = el("select", el("option", "any status", value=""),
                *(el("option", s.value, value=s.value, selected=f.status is s) for s in Status),
                name="status")
    order = el("select", el("option", "newest first", value="newest"),
               el("option", "oldest first", value="oldest", selected=f.oldest_first), name="order")
    form = el("form", el("label", "Status ", status), el("label", "Task ", el(
        "input", name="task", value=f.task, placeholder="module:function")),
        el("label", "Id contains ", el("input", name="q", value=f.id_contains)),
        el("label", "Group ", el("input", name="group", value=f.group, placeholder="grp-...")),
        el("label", "Order ", order), el("button", "Filter", type="submit"),
        action="/jobs", method="get", class_="filters")
    rows = table(("job", "task", "status", "priority", "attempts", "progress", "enqueued",
                  "updated"),
                 ([el("a", r["job_id"], href=job_url(r["job_id"])), r["task"],
                   _status(r["status"]), r["priority"], r["attempts"],
                   _progress(r["progress"]), when(r["enqueued_at"], v.now),
                   when(r["updated_at"], v.now)] for r in v.rows),
                 empty="no jobs match", id="jobs")
    links = [el("a", "First page", href=url("/jobs", **f.query(after=None)))] \
        if f.after else []
    if v.searched:
        links.append(el("span", f"searched {v.searched:,} more jobs: {len(v.rows):,} found;"
                                " Next page continues the search", id="searched"))
    if v.next_after is not None:
        links.append(el("a", "Next page", href=url("/jobs", **f.query(after=v.next_after)),
                        rel="next", id="next-page"))
    return Safe(form + el("div", rows, el("p", *links, class_="pager"), id="live"))


def job(v: views.JobPage, *, actions: bool, token: str) -> Safe:
    row, s, jid = v.row, v.state, v.row["job_id"]
    status = Status(row["status"])
    facts: list[tuple[str, Any]] = [
        ("job", jid), ("task", row["task"]), ("status", _status(status.value)),
        ("priority", row["priority"]), ("attempts", row["attempts"]),
        ("progress", _progress(row["progress"]))]
    group = group_ids.group_of(jid)
    if group is not None:
        facts.append(("group", el("a", group, href=url("/jobs", group=group), id="group")))
    if row.get("owner") and status is Status.RUNNING:
        facts.append(("held by", row["owner"]))
    if s is not None:
        facts += [("crashes", s.crashes), ("cancel", "requested" if s.cancel_requested else "-")]
    if v.parents:
        facts.append(("depends on", el("ul", *(el("li", el("a", p, href=job_url(p)), " ",
                                                     _parent_status(st)) for p, st in v.parents),
                                       class_="parents", id="parents")))
    parts = [el("section", _facts(facts), class_="facts", id="live")]
    for problem in v.problems:
        parts.append(el("p", problem, class_="problem"))
    if v.payload is not None:
        p = v.payload
        parts += [el("h2", "Payload"), _facts([
            ("args", _shown(p["args"])), ("kwargs", _shown(p["kwargs"])),
            ("max attempts", p["max_attempts"]),
            ("timeout", "-" if p["timeout"] is None else f"{p['timeout']}s"),
            ("created", when(p["created_at"] or None, v.now))])]
    history = [("enqueued", row["enqueued_at"]), ("run at", row["run_at"]),
               ("started", s.started_at if s else None),
               ("finished", s.finished_at if s else None), ("updated", row["updated_at"])]
    parts += [el("h2", "Timeline"), _timeline(row, s, v.now),
              el("h2", "History"), table(("event", "when"), (
                  (name, when(t, v.now)) for name, t in sorted(
                      (h for h in history if h[1] is not None), key=lambda h: h[1])),
                  id="history")]
    if s is not None:
        parts += [el("h2", "Attempts' errors"), el("ol", *(
            el("li", el("pre", e), id=f"error-{i}") for i, e in enumerate(s.errors, 1)),
            id="errors") if s.errors
            else el("p", "no errors", id="errors"),
            el("h2", "Checkpoint"), _facts([("checkpoint", _shown(views.Shown.of(s.checkpoint))
                                            if s.checkpoint is not None else "-"),
                                           ("result", _shown(views.Shown.of(s.result))
                                            if s.result is not None else "-")])]
    if actions:
        forms = []
        if status in (Status.DEAD, Status.CANCELLED, Status.FAILED):
            forms.append(_action(jid, "retry", "Retry", token))
        if not status.finished:
            forms.append(_action(jid, "cancel", "Cancel", token))
        if forms:
            parts += [el("h2", "Actions"), el("div", *forms, class_="actions")]
    return Safe("".join(parts))


def _timeline(row: dict[str, Any], s: Any, now: float) -> Safe:
    """Each step of the job (jobq.dashboard.timeline): when, what, its outcome, and a failed
    attempt's cause linked to its traceback (in the attempts' errors below)."""
    items = []
    for e in timeline(row, s):
        cause = None
        if e.error is not None:
            cause = el("a", el("code", e.cause), href=f"#error-{e.error + 1}")
        elif e.cause:
            cause = el("code", e.cause)
        items.append(el("li", when(e.at, now) if e.at is not None else
                        el("span", "time not kept", class_="untimed"), " ",
                        el("span", e.what, class_=f"status {e.outcome}" if e.outcome else None),
                        *([" ", cause] if cause else []), class_="event"))
    return el("ol", *items, id="timeline", class_="timeline")


def schedules(found: list[views.ScheduleRow], now: float) -> Safe:
    """Each schedule: what it runs and when, how long its jobs are kept, its next fire time in
    its own zone and in UTC, and the last firing's job with its status."""
    rows = ([el("span", r.schedule.name, class_="name"), el("code", r.schedule.when),
             r.schedule.tz, el("code", r.schedule.task), el("code", _arguments(r.schedule)),
             r.schedule.misfire,
             r.schedule.overlap, r.schedule.kept, _local(r.next_at, r.schedule.zone()),
             Safe(el("span", _utc(r.next_at)) + " " + when(r.next_at, now)),
             when(r.last_at, now) if r.last_job else "never", _last(r)] for r in found)
    return Safe(el("div", table(
        ("schedule", "cron", "time zone", "task", "arguments", "misfire", "overlap", "kept",
         "next (local)",
         "next (UTC)", "last fired", "last outcome"), rows,
        empty="no schedules (jobq schedule add, or @jobq.periodic)", id="schedules"),
        id="live"))


def _arguments(s: Any) -> str:
    text = ", ".join([*map(repr, s.args), *(f"{k}={v!r}" for k, v in s.kwargs.items())])
    return text if len(text) <= views.SHORT else text[:views.SHORT - 3] + "..."


def _last(r: views.ScheduleRow) -> Safe:
    if r.last_job is None:
        return Safe("-")
    if r.last_status == "gone":
        return el("span", "purged", class_="status gone", title=r.last_job)
    return el("a", _status(str(r.last_status)), href=job_url(r.last_job), title=r.last_job,
              class_="last-job")


def _local(t: float, zone: Any) -> str:
    return datetime.fromtimestamp(t, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def message(text: str, *, back: str = "/") -> Safe:
    return Safe(el("p", text, class_="problem", id="message") + el("p", el("a", "Back",
                                                                          href=back)))


def _action(job_id: str, action: str, label: str, token: str) -> Safe:
    return el("form", el("input", type="hidden", name="token", value=token),
              el("button", label, type="submit", name="action", value=action),
              action=job_url(job_id, action), method="post", class_=f"action {action}")


def _facts(pairs: list[tuple[str, Any]]) -> Safe:
    return el("dl", *(Safe(el("dt", k) + el("dd", v)) for k, v in pairs))


def _shown(value: views.Shown) -> Safe:
    if value.short == value.full:
        return el("code", value.short, title=value.kind)
    return el("details", el("summary", el("code", value.short, title=value.kind)),
              el("pre", value.full))


def _parent_status(value: str) -> Safe:
    return el("span", "purged", class_="status gone") if value == "purged" else _status(value)


def _status(value: str) -> Safe:
    return el("span", value, class_=f"status {value}")


def _progress(fraction: float | None) -> Safe:
    f = max(0.0, min(1.0, fraction or 0.0))
    return el("progress", f"{int(f * 100)}%", value=f"{f:.3f}", max="1",
              title=f"{int(f * 100)}%")


def _doing(w: Any, anyone_alive: bool) -> Safe:
    """A live worker's running jobs; a dead one runs none (its children died with it): what it
    held, and whether it was reclaimed yet, as ``jobq workers`` says."""
    if w.state is WorkerState.REAPED:
        by = f"reaped by {w.reaped_by or '?'}"
        return Safe(esc(f"{by}, which reclaimed: ") + _links(w.held) if w.held
                    else esc(f"{by}: it held no job"))
    if w.state is WorkerState.DEAD:
        if not w.held:
            return Safe("held no job")
        reclaim = "being reclaimed" if anyone_alive else "reclaimed when a worker starts"
        return Safe(f"held, {reclaim}: " + _links(w.held))
    busy = [c for c in w.children if c.job_id]
    if not busy:
        return Safe("idle")
    return Safe(", ".join(el("a", c.task or c.job_id, href=job_url(c.job_id)) for c in busy))


def _links(job_ids: Any) -> str:
    return ", ".join(el("a", j, href=job_url(j)) for j in job_ids)


def _duration(seconds: float) -> str:
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"
