"""The settings of every jobq session: a worker cut off by the network notices within ~30 s.

Left to the operating system, a connection whose peer vanished (a cut network, a host gone
without closing its sockets) is given up only after some 15 minutes of retransmissions, or two
hours of idle keepalive. Both ends are set to give up within about 25 s instead:

- the client (libpq parameters, :data:`CLIENT`): keepalives after 5 s idle, every 2 s, 3 unanswered
  ones end the connection; ``tcp_user_timeout`` ends it when sent data stays unacknowledged 25 s
  (on Linux it also caps the keepalives' count). A worker waiting on a statement learns then
  that its storage is gone, instead of waiting on a dead socket;
- the server (:data:`SERVER`, set after connecting): the same keepalives and user timeout for its
  side, so that a worker's liveness lock (:mod:`jobq.postgres.liveness`) is let go about 25 s
  after its host vanished, and ``client_connection_check_interval`` (PostgreSQL 14+) so that a
  backend in the middle of a statement looks for its client every 5 s. ``jit`` is off: compiling
  a batch insert's plan took longer than running it (170 ms for 20,000 jobs), and jobq's
  statements are short.

The server's are sent with the connection's start-up packet (libpq's ``options``,
:func:`startup_options`): no round trip, and none of the ~2 ms of server CPU a statement setting
them cost each connection (a process's first connection to a server still runs it, finding them
set, in case a pooler dropped them: :func:`first_on`; where it finds them missing, that server's
connections are all configured by the statement). A server that refuses one of them at
start-up (unknown to its version, as ``client_connection_check_interval`` is to PostgreSQL 13, or
not permitted; a pooler that takes no ``options``) refuses the connection: the connection is made
again without them and they are applied one statement later (:func:`configure`), where a refused
one is skipped and logged once per process as ``postgres.setting_refused``; that server's later
connections go that way at once.

What the user set wins: a libpq parameter given in the URL (or libpq's environment variable,
for ``connect_timeout`` and ``application_name``), and a server setting given in ``options``
(URL or PGOPTIONS: sent after jobq's, and the last of a name is the one kept; the server reports
those as set by the client, which :func:`configure` leaves alone).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import psycopg

from .._logging import get_logger

log = get_logger(__name__)

# libpq's: seconds, except tcp_user_timeout (ms).
CLIENT: Mapping[str, Any] = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                             "keepalives_count": 3, "tcp_user_timeout": 25_000,
                             "connect_timeout": 10, "application_name": "jobq"}
_CLIENT_ENV = {"connect_timeout": "PGCONNECT_TIMEOUT", "application_name": "PGAPPNAME"}
# The server's: seconds, except tcp_user_timeout and client_connection_check_interval (ms).
SERVER: Mapping[str, str] = {"jit": "off", "tcp_keepalives_idle": "5",
                             "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3",
                             "tcp_user_timeout": "25000",
                             "client_connection_check_interval": "5000"}

# One statement for all: a setting the client gave at start-up (options, PGOPTIONS) is kept.
_APPLY = ("SELECT CASE WHEN s.source = 'client' THEN NULL"
          " ELSE set_config(d.name, d.value, false) END"
          " FROM unnest(%s::text[], %s::text[]) AS d(name, value)"
          " LEFT JOIN pg_settings s ON s.name = d.name")
_refused: set[tuple[int, str]] = set()  # (pid, setting) already logged
_no_startup: set[str] = set()  # servers that refused a setting of start-up options
_checked: set[str] = set()  # servers whose start-up options this process saw applied


def client_settings(conninfo: str) -> dict[str, Any]:
    """The libpq parameters of :data:`CLIENT` that neither ``conninfo`` nor the environment sets."""
    given = psycopg.conninfo.conninfo_to_dict(conninfo)
    return {name: value for name, value in CLIENT.items()
            if name not in given and os.environ.get(_CLIENT_ENV.get(name, "")) is None}


def startup_options(conninfo: str, server: str) -> str | None:
    """libpq's ``options`` setting :data:`SERVER` at start-up, then those the user gave (the URL's
    ``options``, else PGOPTIONS), which win; None where the server refused them before (see
    :func:`refused_at_start`): the connection is then configured by :func:`configure`."""
    if server in _no_startup:
        return None
    given = psycopg.conninfo.conninfo_to_dict(conninfo).get("options")
    if given is None:
        given = os.environ.get("PGOPTIONS", "")
    ours = " ".join(f"-c {name}={value}" for name, value in SERVER.items())
    return f"{ours} {given}".strip()


def refused_at_start(exc: psycopg.Error, server: str) -> bool:
    """Did the server refuse the connection for its start-up options (a setting it does not
    know or allow; or a pooler, as PgBouncer, that takes no ``options``)? Its connections are
    then configured after they start (remembered for the process)."""
    if "parameter" not in str(exc):
        return False
    _no_startup.add(server)
    return True


def first_on(server: str) -> bool:
    """Is this the process's first connection to ``server`` with start-up options? It is then
    configured once more by :func:`configure` (settings already given change nothing): a pooler
    told to ignore ``options`` (PgBouncer's ``ignore_startup_parameters``) drops them silently.
    A forked child has its parent's answer."""
    if server in _checked:
        return False
    _checked.add(server)
    return True


def configure(conn: psycopg.Connection[Any], server: str,
              settings: Mapping[str, str] | None = None) -> bool:
    """Apply the server ``settings`` (:data:`SERVER`) the client did not give itself; a refused
    one is skipped (the others are applied one by one) and logged once per process. True if
    any had to be applied here (none had come with the start-up packet)."""
    settings = SERVER if settings is None else settings
    try:
        rows = conn.execute(_APPLY, (list(settings), list(settings.values()))).fetchall()
        return any(value is not None for value, in rows)
    except psycopg.Error:
        if conn.broken:
            raise
    for name, value in settings.items():
        try:
            conn.execute(_APPLY, ([name], [value]))
        except psycopg.Error as exc:
            if conn.broken:
                raise
            _log_refused(name, value, server, exc)
    return True


def dropped_at_start(server: str) -> None:
    """The start-up options of a connection to ``server`` did not arrive (a pooler dropped them:
    :func:`first_on`): its later connections are configured after they start, as where they
    were refused."""
    _no_startup.add(server)


def _log_refused(name: str, value: str, server: str, exc: psycopg.Error) -> None:
    if (os.getpid(), name) in _refused:
        return
    _refused.add((os.getpid(), name))
    why = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    log.warning("postgres.setting_refused", setting=name, value=value, server=server,
                error=why)
