"""The dashboard as a WSGI application, to serve with ``jobq dashboard`` or mount in any WSGI
server: ``Dashboard(Queue(...))``.

Safe by default: read-only unless ``allow_actions``; every action is a POST carrying this run's
token and is refused when ``Sec-Fetch-Site`` or ``Origin`` say another site sent it; HTTP basic
auth when a password is given; a Content-Security-Policy with no inline script, no framing, no
referrer sent elsewhere. Requests are served one at a time (a lock): the queue's connections are
not shared between threads.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import importlib.resources
import secrets
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from .._logging import get_logger
from ..errors import InvalidArgument, JobNotFound, JobqError
from ..queue import Queue
from . import bulk, metrics, pages, views
from .html import Safe, job_url, layout, url

__all__ = ["Dashboard"]

log = get_logger(__name__)

HEADERS = [("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self';"
            " img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none';"
            " base-uri 'none'"),
           ("X-Frame-Options", "DENY"), ("Referrer-Policy", "same-origin"),
           ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")]
STATIC = {"dashboard.js": "text/javascript; charset=utf-8",
          "dashboard.css": "text/css; charset=utf-8"}
ACTIONS = ("retry", "cancel")
MAX_FORM = 64 * 1024
HTML = "text/html; charset=utf-8"
StartResponse = Callable[..., Any]


class _Refused(Exception):
    def __init__(self, status: str, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


class Dashboard:
    """A WSGI app showing one queue. ``allow_actions``: retry and cancel buttons (POST with a
    per-run token); ``password``: HTTP basic auth (any user name) on every page but /health."""

    def __init__(self, queue: Queue, *, allow_actions: bool = False, password: str | None = None,
                 refresh: float = 2.0) -> None:
        if not isinstance(queue, Queue):
            raise InvalidArgument(f"Dashboard takes a jobq.Queue, not {type(queue).__name__}")
        if password == "":
            raise InvalidArgument("an empty dashboard password: give one, or none")
        if not refresh > 0:
            raise InvalidArgument(f"refresh is seconds above 0, not {refresh!r}")
        self.queue, self.allow_actions, self.refresh = queue, allow_actions, refresh
        self._password = password
        self.token = secrets.token_urlsafe(32)  # this run's: a page from another run is refused
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8")
        except UnicodeError:
            path = ""
        try:
            if self._password is not None and path != "/health" and not self._authorised(environ):
                status, headers, body = "401 Unauthorized", [
                    ("WWW-Authenticate", 'Basic realm="jobq dashboard", charset="UTF-8"'),
                    ("Content-Type", "text/plain; charset=utf-8")], b"a password is needed\n"
            else:
                with self._lock:
                    status, headers, body = self._route(method, path, environ)
        except _Refused as exc:
            status, headers, body = exc.status, [("Content-Type", HTML)], self._page(
                exc.status.split(" ", 1)[1], pages.message(exc.text))
        start_response(status, headers + HEADERS + [("Content-Length", str(len(body)))])
        return [b"" if method == "HEAD" else body]

    # -- routing --------------------------------------------------------------------------------
    def _route(self, method: str, path: str, environ: dict[str, Any]
               ) -> tuple[str, list[tuple[str, str]], bytes]:
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if method == "POST":
            head, _, action = path.rpartition("/")
            if head.startswith("/jobs/") and action in ACTIONS:
                return self._act(head[len("/jobs/"):], action, environ)
            if head == "/bulk" and action in bulk.CAPS:
                return self._bulk(action, environ)
            raise _Refused("405 Method Not Allowed", "only actions are posted")
        if method not in ("GET", "HEAD"):
            raise _Refused("405 Method Not Allowed", f"{method} is not served")
        try:
            return self._read(path, query)
        except _Refused:
            raise
        except JobNotFound as exc:
            raise _Refused("404 Not Found", str(exc)) from exc
        except InvalidArgument as exc:
            raise _Refused("400 Bad Request", str(exc)) from exc
        except JobqError as exc:
            log.error("dashboard.read_failed", path=path, error=str(exc))
            raise _Refused("500 Internal Server Error", f"cannot read the queue: {exc}") from exc
        except Exception as exc:  # a bug: say so in the log, never a traceback to the browser
            log.error("dashboard.error", path=path, traceback=traceback.format_exc())
            raise _Refused("500 Internal Server Error", "internal error (see the log)") from exc

    def _read(self, path: str, query: dict[str, str]) -> tuple[str, list[tuple[str, str]], bytes]:
        q = self.queue
        if path == "/":
            body = pages.overview(views.overview(q))
            return self._ok(self._page("Overview", body, live=True))
        if path == "/jobs":
            if query.get("id"):
                return self._jump(query["id"].strip())
            v = views.jobs(q, views.Filters.parse(query))
            body = pages.jobs(v)
            if self.allow_actions:
                body = Safe(bulk.links(v.filters) + body)
            if query.get("done"):  # what a bulk action did: "retry:12"
                action, _, n = query["done"].partition(":")
                if action in bulk.CAPS and n.isdigit():
                    body = Safe(pages.message(f"{bulk.DONE[action]} {int(n):,} jobs.",
                                              back="/jobs") + body)
            return self._ok(self._page("Jobs", body, live=v.filters.after is None))
        if path.startswith("/bulk/") and path[len("/bulk/"):] in bulk.CAPS:
            action = path[len("/bulk/"):]
            self._actions_on()
            found = bulk.matching(q, action, bulk.parse(action, query))
            return self._ok(self._page(f"{bulk.LABELS[action]} all matching",
                                       bulk.confirm(found, self.token)))
        if path.startswith("/jobs/") and len(path) > len("/jobs/"):
            v = views.job(q, path[len("/jobs/"):])
            body = pages.job(v, actions=self.allow_actions, token=self.token)
            if query.get("not") in ACTIONS:  # the action found the job in a state it skips
                body = Safe(pages.message(f"nothing to {query['not']}: the job is"
                                          f" {v.row['status']}", back=job_url(v.row['job_id']))
                            + body)
            return self._ok(self._page(f"Job {v.row['job_id']}", body, live=True))
        if path == "/schedules":
            body = pages.schedules(*views.schedules(q))
            return self._ok(self._page("Schedules", body, live=True))
        if path == "/metrics":
            return "200 OK", [("Content-Type", metrics.CONTENT_TYPE)], \
                metrics.render(q).encode()
        if path == "/health":
            q.engine.now()  # reaches the storage (the server, for PostgreSQL)
            return "200 OK", [("Content-Type", "text/plain; charset=utf-8")], b"ok\n"
        if path == "/favicon.ico":  # browsers ask for it: none, rather than a 404 logged
            return "204 No Content", [], b""
        if path.startswith("/static/") and path[len("/static/"):] in STATIC:
            name = path[len("/static/"):]
            data = importlib.resources.files(__package__).joinpath("static", name).read_bytes()
            return "200 OK", [("Content-Type", STATIC[name])], data
        raise _Refused("404 Not Found", f"no page {path!r}")

    def _jump(self, text: str) -> tuple[str, list[tuple[str, str]], bytes]:
        """``/jobs?id=``: the job with that id, or the one id that starts with it."""
        found = [text] if self.queue.engine.exists(text) else \
            self.queue.engine.ids_starting_with(text, 2) if text else []
        if len(found) != 1:
            raise JobNotFound(f"no job with id {text!r}" + (
                " (several start with it: give more of it)" if found else ""), job_id=text)
        return self._redirect(job_url(found[0]))

    # -- actions --------------------------------------------------------------------------------
    def _actions_on(self) -> None:
        if not self.allow_actions:
            raise _Refused("403 Forbidden", "actions are off: start the dashboard with"
                                            " --allow-actions to retry or cancel jobs")

    def _posted(self, environ: dict[str, Any]) -> dict[str, str]:
        """The form of an action: refused unless actions are on, the request is same-site
        and it carries this run's token."""
        self._actions_on()
        self._same_site(environ)
        form = self._form(environ)
        if not hmac.compare_digest(form.get("token", "").encode(), self.token.encode()):
            raise _Refused("403 Forbidden", "this form is from another run of the dashboard,"
                                            " or forged: reload the page and try again")
        return form

    def _bulk(self, action: str, environ: dict[str, Any]
              ) -> tuple[str, list[tuple[str, str]], bytes]:
        form = self._posted(environ)
        try:
            filters = bulk.parse(action, form)
            done = bulk.run(self.queue, bulk.matching(self.queue, action, filters))
        except InvalidArgument as exc:
            raise _Refused("400 Bad Request", str(exc)) from exc
        except JobqError as exc:
            log.error("dashboard.bulk_failed", action=action, error=str(exc))
            raise _Refused("500 Internal Server Error", f"cannot {action}: {exc}") from exc
        log.info("dashboard.bulk", action=action, done=done, status=str(filters.status),
                 task=filters.task, id_contains=filters.id_contains)
        return self._redirect(url("/jobs", **filters.query(after=None), done=f"{action}:{done}"))

    def _act(self, job_id: str, action: str, environ: dict[str, Any]
             ) -> tuple[str, list[tuple[str, str]], bytes]:
        self._posted(environ)
        try:
            done = (self.queue.retry if action == "retry" else self.queue.cancel)(job_id)
        except JobNotFound as exc:
            raise _Refused("404 Not Found", str(exc)) from exc
        except JobqError as exc:
            raise _Refused("409 Conflict", f"cannot {action} job {job_id!r}: {exc}") from exc
        log.info("dashboard.action", action=action, job_id=job_id, done=done)
        return self._redirect(job_url(job_id) + ("" if done else f"?not={quote(action)}"))

    @staticmethod
    def _same_site(environ: dict[str, Any]) -> None:
        """Refuse a request another site made the browser send (CSRF), by what browsers say."""
        site = environ.get("HTTP_SEC_FETCH_SITE")
        if site is not None and site not in ("same-origin", "none"):
            raise _Refused("403 Forbidden", f"refused: a {site} request")
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and urlsplit(origin).netloc != environ.get("HTTP_HOST"):
            raise _Refused("403 Forbidden", "refused: a request from another origin")

    @staticmethod
    def _form(environ: dict[str, Any]) -> dict[str, str]:
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            size = -1
        if not 0 <= size <= MAX_FORM:
            raise _Refused("400 Bad Request", "a form of a bad size")
        text = environ["wsgi.input"].read(size).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(text).items()}

    def _authorised(self, environ: dict[str, Any]) -> bool:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, encoded = auth.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            _, _, given = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeError):
            return False
        assert self._password is not None
        return hmac.compare_digest(given.encode(), self._password.encode())

    # -- responses ------------------------------------------------------------------------------
    def _page(self, title: str, body: Safe, *, live: bool = False) -> bytes:
        return layout(title, body, live=live, refresh=self.refresh, queue=self.queue.location,
                      read_only=not self.allow_actions).encode()

    @staticmethod
    def _ok(body: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
        return "200 OK", [("Content-Type", HTML)], body

    @staticmethod
    def _redirect(to: str) -> tuple[str, list[tuple[str, str]], bytes]:
        return "303 See Other", [("Location", to), ("Content-Type", "text/plain")], b""
