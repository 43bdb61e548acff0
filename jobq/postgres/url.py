"""A queue's PostgreSQL URL: ``postgresql://user@host:port/db?queue=NAME``.

The ``queue`` parameter names one of the queues that share the database (``default`` when it is
absent). ``wakeups`` says how idle workers learn of new jobs: ``listen`` (the default: LISTEN and
NOTIFY, see :mod:`jobq.postgres.wakeups`) or ``poll`` (neither: idle workers ask every
``poll_interval``; for a pooler in transaction mode). Both are jobq's, not libpq's, so they are
taken out before connecting; every other parameter goes to libpq as it is, byte for byte (libpq
decodes only %XX, so ``options=-c%20x=y`` re-encoded by ``urlencode`` would reach it as
``-c+x=y``). Messages name the server as ``host:port/db``, never with its password.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError

SCHEMES = ("postgresql", "postgres")
DEFAULT_QUEUE = "default"
MAX_QUEUE_NAME = 200
WAKEUPS = ("listen", "poll")
OURS = ("queue", "wakeups")  # parameters that are jobq's, not libpq's


@dataclass(frozen=True)
class PgLocation:
    """Where a queue lives: what to connect with, the queue's name, and how to name it."""

    conninfo: str  # the URL without ``queue``: for libpq
    queue: str
    server: str  # host:port/db, for messages (no user, no password)
    location: str  # the URL without its password, ``queue`` last: for messages and reopening
    wakeups: str = "listen"  # one of WAKEUPS


def is_url(path: str) -> bool:
    """Does ``path`` name a PostgreSQL queue rather than a directory?"""
    return any(path.startswith(f"{scheme}://") for scheme in SCHEMES)


def parse(url: str) -> PgLocation:
    """Split ``url`` into a libpq URL and a queue name; ConfigError for what cannot be one."""
    if not isinstance(url, str) or not is_url(url):
        raise ConfigError(f"not a PostgreSQL URL (postgresql://user@host/db?queue=NAME): {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad PostgreSQL URL: {exc}") from exc
    params = parse_qsl(parts.query, keep_blank_values=True)
    queue = _one(params, "queue", DEFAULT_QUEUE)
    if not queue or len(queue) > MAX_QUEUE_NAME or not queue.isprintable():
        raise ConfigError(f"bad queue name {queue!r} in the PostgreSQL URL: 1 to"
                          f" {MAX_QUEUE_NAME} printable characters")
    wakeups = _one(params, "wakeups", WAKEUPS[0])
    if wakeups not in WAKEUPS:
        raise ConfigError(f"bad wakeups={wakeups!r} in the PostgreSQL URL: listen (LISTEN/NOTIFY,"
                          " the default) or poll (idle workers ask every poll_interval, for"
                          " PgBouncer in transaction mode)")
    raw = [part for part in parts.query.split("&") if part]  # as written: never re-encoded
    rest = "&".join(part for part in raw if _key(part) not in OURS)
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment))
    host = parts.hostname or "localhost"
    database = parts.path.lstrip("/") or (parts.username or "")
    server = f"{host}:{port or 5432}/{database}"
    netloc = parts.netloc.rsplit("@", 1)
    if len(netloc) == 2:  # user[:password]@host: keep the user, never the password
        netloc = [netloc[0].split(":", 1)[0], netloc[1]]
    shown = "&".join([*(part for part in raw if _key(part) != "queue"),
                      urlencode([("queue", queue)])])
    location = urlunsplit((parts.scheme, "@".join(netloc), parts.path, shown, ""))
    return PgLocation(conninfo, queue, server, location, wakeups)


def _key(part: str) -> str:
    """The name of one ``name=value`` part of a query, decoded as parse_qsl decodes it."""
    return unquote(part.split("=", 1)[0].replace("+", " "))


def _one(params: list[tuple[str, str]], name: str, default: str) -> str:
    """The value of jobq's parameter ``name``; ConfigError if it is given twice."""
    values = [value for key, value in params if key == name]
    if len(values) > 1:
        raise ConfigError(f"the PostgreSQL URL gives ?{name}= twice")
    return values[0] if values else default
