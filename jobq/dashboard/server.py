"""Serving a :class:`~jobq.dashboard.Dashboard` with the standard library (``wsgiref``): no
extra service and no dependency, for one operator's browser. Behind many users or the internet,
mount the WSGI app in a production server instead (the CPython docs say as much of
``http.server``)."""

from __future__ import annotations

import ipaddress
import os
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .._logging import get_logger
from ..errors import InvalidArgument
from .app import Dashboard

log = get_logger(__name__)

PASSWORD_ENV = "JOBQ_DASHBOARD_PASSWORD"


def password_from_env() -> str | None:
    """The dashboard's password, from the environment only (never a command-line argument,
    which other users of the machine can read in the process list)."""
    return os.environ.get(PASSWORD_ENV) or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, allow_actions: bool, password: str | None) -> None:
    """Actions reachable from other machines need a password: InvalidArgument if there is none."""
    if allow_actions and password is None and not is_loopback(host):
        raise InvalidArgument(f"--allow-actions on {host}, which other machines can reach, needs"
                              f" a password: set {PASSWORD_ENV}")


class _QuietHandler(WSGIRequestHandler):
    """Requests are logged as debug events, not written to stderr one line each."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dashboard.request", line=format % args)


def serve(app: Dashboard, host: str, port: int) -> WSGIServer:
    """A server bound to ``host:port`` (port 0: a free one); call ``serve_forever`` on it.
    StorageError-like OSErrors (address in use, no such address) propagate."""
    return make_server(host, port, app, handler_class=_QuietHandler)
