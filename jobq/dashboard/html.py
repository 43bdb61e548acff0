"""HTML built so that nothing from a job can become markup: every value is escaped unless it is
:class:`Safe`, and only this module makes Safe text.

Job arguments, results, errors, tracebacks, task names and ids are attacker-controlled text:
dashboards that pasted them into templates unescaped had stored XSS (rq-dashboard#526,
Flower CVE-2022-30034, Sidekiq CVE-2024-32887). Building elements with :func:`el` escapes by
default, so forgetting to escape is not a way to get it wrong.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from ..ago import ago
from ..listing import ROUGH_CAP

__all__ = ["Safe", "el", "esc", "join", "layout", "when", "count", "table", "job_url", "url"]


class Safe(str):
    """Markup made here: not escaped again."""

    __slots__ = ()


def esc(value: Any) -> Safe:
    return value if isinstance(value, Safe) else Safe(html.escape(str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Safe:
    return Safe(esc(sep).join(esc(p) for p in parts if p is not None))


_VOID = frozenset({"input", "meta", "link", "br"})


def el(tag: str, *children: Any, **attrs: Any) -> Safe:
    """``<tag attrs>children</tag>``: children and attribute values escaped unless Safe.
    ``class_`` is ``class``, ``data_x`` is ``data-x``; an attribute of None or False is left out,
    one of True is written bare."""
    out = [f"<{tag}"]
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        name = name.rstrip("_").replace("_", "-")
        out.append(f" {name}" if value is True else f' {name}="{esc(value)}"')
    out.append(">")
    if tag in _VOID:
        return Safe("".join(out))
    out.extend(esc(c) for c in children if c is not None)
    out.append(f"</{tag}>")
    return Safe("".join(out))


def url(path: str, **query: Any) -> str:
    """A path with a query string; empty values are left out."""
    kept = {k: v for k, v in query.items() if v not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


def job_url(job_id: str, action: str = "") -> str:
    """A job's page (or action): the id percent-encoded whole, ``/`` included."""
    return f"/jobs/{quote(job_id, safe='')}" + (f"/{action}" if action else "")


def when(t: float | None, now: float) -> Safe:
    """A time as "3m ago", with the exact UTC time in its title; "-" for none."""
    if t is None:
        return Safe("-")
    exact = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(
        timespec="seconds")
    return el("time", ago(t, now), datetime=exact, title=exact)  # as the command line says it


def count(n: int) -> str:
    """A rough count: at the cap it is "10,000+"."""
    return f"{n:,}+" if n >= ROUGH_CAP else f"{n:,}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str = "none",
          **attrs: Any) -> Safe:
    body = [el("tr", *(el("td", c) for c in row)) for row in rows]
    if not body:
        body = [el("tr", el("td", empty, colspan=len(headers), class_="empty"))]
    return el("table", el("thead", el("tr", *(el("th", h) for h in headers))),
              el("tbody", *body), **attrs)


def layout(title: str, body: Safe, *, live: bool = False, refresh: float = 2.0,
           queue: str = "", read_only: bool = True) -> Safe:
    """The page around ``body``. ``live``: the script refreshes the ``#live`` part every
    ``refresh`` seconds while the tab is visible."""
    nav = el("nav", el("a", "jobq", href="/", class_="brand"), el("a", "Overview", href="/"),
             el("a", "Jobs", href="/jobs"), el("a", "Dead", href="/jobs?status=dead"),
             el("a", "Schedules", href="/schedules"),
             el("a", "Metrics", href="/metrics"),
             el("span", queue, class_="queue", title="queue"),
             el("span", "read-only" if read_only else "actions on", class_="mode"))
    head = el("head", el("meta", charset="utf-8"),
              el("meta", name="viewport", content="width=device-width, initial-scale=1"),
              el("title", f"{title} - jobq"),
              el("link", rel="stylesheet", href="/static/dashboard.css"),
              el("script", src="/static/dashboard.js", defer=True))
    return Safe("<!doctype html>\n" + el(
        "html", head, el("body", nav, el("main", el("h1", title), body),
                         data_refresh=str(refresh) if live else None), lang="en"))
