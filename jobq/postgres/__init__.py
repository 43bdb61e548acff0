"""jobq on PostgreSQL: the same queue API, its jobs in a database shared by many hosts.

Needs psycopg 3 (``pip install 'jobq[postgres]'``), imported only when a queue is opened: telling
a URL from a directory (:func:`is_url`) works without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..pickling import PickleRules
from .url import is_url, parse

if TYPE_CHECKING:
    from .engine import PgEngine

__all__ = ["PgEngine", "open_engine", "migrate", "is_url", "parse"]

INSTALL_HINT = "pip install 'jobq[postgres]'"


@contextmanager
def _psycopg_needed(url: str) -> Iterator[None]:
    """Importing the engine without psycopg is a ConfigError saying what to install."""
    try:
        yield
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith("psycopg"):
            raise
        raise ConfigError(f"{url.split('?')[0].rsplit('@', 1)[-1]} is a PostgreSQL queue, and"
                          f" psycopg 3 is not installed: {INSTALL_HINT}") from exc


def open_engine(url: str, *, secret_key: bytes | None, rules: PickleRules,
                max_record_size: int, clock: Callable[[], float] | None = None,
                catch_up: bool = True, old_secret_keys: tuple[bytes, ...] = ()) -> PgEngine:
    """Open the queue ``url`` names (see :func:`jobq.postgres.opening.open_engine`)."""
    with _psycopg_needed(url):
        from . import opening
    return opening.open_engine(url, secret_key=secret_key, rules=rules,
                               max_record_size=max_record_size, clock=clock, catch_up=catch_up,
                               old_secret_keys=old_secret_keys)


def migrate(url: str, *, check: bool = False) -> tuple[int, int]:
    """Bring the jobq schema of the database ``url`` names up to this jobq's, or with ``check``
    only read it: (the version found, this jobq's). IncompatibleFormat if it is newer.

    Opening a queue migrates too; this is for a deploy that upgrades before starting anything.
    """
    with _psycopg_needed(url):
        from . import schema
        from .db import Db
    loc = parse(url)
    db = Db(loc)
    try:
        with db.errors("read the jobq schema version"):
            found = schema.version(db.conn)
        schema.refuse_newer(found, loc)
        if not check:
            with db.errors("create or upgrade the jobq tables"):
                schema.migrate(db.conn, loc)
    finally:
        db.close()
    return found, schema.VERSION


def __getattr__(name: str) -> object:
    if name == "PgEngine":
        from .engine import PgEngine
        return PgEngine
    raise AttributeError(name)
