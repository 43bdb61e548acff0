"""Helpers of the PostgreSQL engine's tests: URLs, engines, framed job records.

The engine's tables live in a database made for these tests (conftest.py); each test gets a
queue name of its own in it, so every test also checks that queues sharing a database stay
apart.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from jobq import job_record, record, transitions
from jobq.engine import Change
from jobq.pickling import PickleRules
from jobq.postgres import PgEngine, open_engine

KEY = b"k" * 32
_names = itertools.count()


def url_of(dsn: str) -> str:
    """The postgresql:// URL of a key=value DSN (the engine takes URLs, as Queue does)."""
    d = psycopg.conninfo.conninfo_to_dict(dsn)
    return (f"postgresql://{d.get('user', 'postgres')}@{d['host']}:{d.get('port', 5432)}"
            f"/{d['dbname']}")


def new_queue_url(dsn: str) -> str:
    """A URL of a queue no other test uses, in the database of ``dsn``."""
    return f"{url_of(dsn)}?queue=t{next(_names)}_{time.monotonic_ns()}"


def database_as_of(url: str, version: int) -> None:
    """Make the jobq tables of ``url``'s database as the jobq of schema ``version`` made them."""
    from jobq.postgres import parse, schema
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        for statements in schema.MIGRATIONS[:version]:
            for sql in statements:
                conn.execute(sql)
        conn.execute("CREATE TABLE jobq_schema (version integer NOT NULL)")
        conn.execute("INSERT INTO jobq_schema VALUES (%s)", (version,))


def rewind(conn: psycopg.Connection[Any], version: int) -> None:
    """Take the jobq tables of ``conn``'s database back to schema ``version``, keeping the rows
    of the tables that version had: undo what every later migration created or added."""
    from jobq.postgres import schema
    later = [sql for statements in schema.MIGRATIONS[version:] for sql in statements]
    for sql in reversed(later):
        words = sql.split()
        if words[:2] == ["CREATE", "TABLE"]:
            conn.execute(f"DROP TABLE IF EXISTS {words[2]} CASCADE")
        elif words[0] == "CREATE" and "INDEX" in words[1:3]:
            name = words[words.index("INDEX") + 1]
            conn.execute(f"DROP INDEX IF EXISTS {name}")
        elif words[:2] == ["ALTER", "TABLE"] and words[3:5] == ["ADD", "COLUMN"]:
            conn.execute(f"ALTER TABLE {words[2]} DROP COLUMN IF EXISTS {words[5]}")
        elif words[:2] == ["ALTER", "INDEX"] and words[3] == "SET":
            conn.execute(f"ALTER INDEX {words[2]} RESET ({sql.split('(')[1].split()[0]})")
        elif words[:2] == ["DROP", "INDEX"]:  # made again as the version that made it did
            earlier = [sql for statements in schema.MIGRATIONS[:version] for sql in statements]
            conn.execute(next(sql for sql in earlier if sql.split()[:3] == ["CREATE", "INDEX",
                                                                             words[2]]))
    conn.execute("UPDATE jobq_schema SET version = %s", (version,))


def open_url(url: str, key: bytes | None = None, **options: Any) -> PgEngine:
    options.setdefault("max_record_size", 1 << 20)
    return open_engine(url, secret_key=key, rules=PickleRules.build(), **options)


def frame(job_id: str, *, priority: int = 0, delay: float = 0.0, created: float | None = None,
          max_attempts: int = 3, args: tuple[Any, ...] = (), key: bytes | None = None,
          task: str = "jobtasks:noop") -> bytes:
    """The framed record of one job, as Queue makes it."""
    created = time.time() if created is None else created
    body = job_record.encode_fields(job_id, task, args, {}, priority, max_attempts, None,
                                    created + delay, created)
    return record.encode(record.KIND_JOB, body, key)


def frames(ids: Sequence[str], **options: Any) -> list[bytes]:
    return [frame(job_id, **options) for job_id in ids]


def succeed(result: object = None) -> Change:
    return lambda state, now, max_attempts: transitions.succeeded(state, result, now)


def fail(error: str = "boom", delay: float = 0.0) -> Change:
    return lambda state, now, max_attempts: transitions.failed(
        state, error, now, max_attempts=max_attempts, retry_delay=delay)
