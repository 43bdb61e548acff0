"""jobq on PostgreSQL: the same queue API, its jobs in a database shared by many hosts.

Needs psycopg 3 (``pip install 'jobq[postgres]'``), imported only when a queue is opened: telling
a URL from a directory (:func:`is_url`) works without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..pickling import PickleRules
from .url import is_url, parse

if TYPE_CHECKING:
    from .engine import PgEngine

__all__ = ["PgEngine", "open_engine", "is_url", "parse"]

INSTALL_HINT = "pip install 'jobq[postgres]'"


def open_engine(url: str, *, secret_key: bytes | None, rules: PickleRules,
                max_record_size: int, clock: Callable[[], float] | None = None,
                catch_up: bool = True, old_secret_keys: tuple[bytes, ...] = ()) -> PgEngine:
    """Open the queue ``url`` names (see :func:`jobq.postgres.engine.open_engine`)."""
    try:
        from . import engine
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith("psycopg"):
            raise
        raise ConfigError(f"{url.split('?')[0].rsplit('@', 1)[-1]} is a PostgreSQL queue, and"
                          f" psycopg 3 is not installed: {INSTALL_HINT}") from exc
    return engine.open_engine(url, secret_key=secret_key, rules=rules,
                              max_record_size=max_record_size, clock=clock, catch_up=catch_up,
                              old_secret_keys=old_secret_keys)


def __getattr__(name: str) -> object:
    if name == "PgEngine":
        from .engine import PgEngine
        return PgEngine
    raise AttributeError(name)
