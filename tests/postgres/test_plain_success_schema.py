"""Schema version 11 stores a plain success without its snapshot (``jobq_done.blob`` NULL):
its state read back is the one the settle made; any other finished state keeps its snapshot;
a version-10 database is upgraded on open, and a jobq of version 10 refuses version 11."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import psycopg
import pytest

import pg

from jobq import Queue
from jobq.errors import IncompatibleFormat
from jobq.postgres import PgEngine, schema
from jobq.postgres.url import parse
from jobq.state import JobState, Status
from jobq.testing import run_burst

from .pgq import fail, frames, rewind, succeed, url_of

# Every field of JobState: a field added must be added to jobq.state.plain_success's test (a
# plain success keeps nothing but its row's columns).
FIELDS = {"job_id", "task", "status", "attempts", "crashes", "progress", "checkpoint", "result",
          "error", "errors", "enqueued_at", "run_at", "started_at", "finished_at", "updated_at",
          "cancel_requested", "checkpoint_token"}


@pytest.fixture
def fresh_url(pg_server: pg.Server) -> Iterator[str]:
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_plain") as dsn:
        yield url_of(dsn) + "?queue=q"


def _blobs(engine: PgEngine) -> dict[str, bool]:
    """Whether each finished job's row holds a snapshot."""
    conn = engine._db.conn  # noqa: SLF001 - the test reads the stored rows
    return {job_id: blob for job_id, blob in conn.execute(
        "SELECT job_id, blob IS NOT NULL FROM jobq_done WHERE queue = %s",
        (engine._queue,)).fetchall()}  # noqa: SLF001


def test_schema_11_is_the_plain_success() -> None:
    assert schema.VERSION >= 11
    assert "jobq_done.blob" in schema.MIGRATIONS[10][0]
    assert {f.name for f in dataclasses.fields(JobState)} == FIELDS


def test_a_plain_success_is_stored_without_its_snapshot_and_read_back_whole(
        engine: PgEngine) -> None:
    engine.append(frames(["plain", "result"]))
    _, claims = engine.settle([], "w1", 2)
    changes = {"plain": succeed(None), "result": succeed({"n": 1})}
    states, _ = engine.settle([(c.job_id, c.token, changes[c.job_id]) for c in claims], "w1", 0)
    made = {s.job_id: s for s in states if s is not None}
    assert _blobs(engine) == {"plain": False, "result": True}
    for job_id in ("plain", "result"):
        assert engine.get(job_id) == made[job_id]
    got = engine.get("plain")
    assert got.status is Status.SUCCEEDED and got.finished_at == got.updated_at is not None
    assert got.result is None and got.progress == 1.0 and got.started_at is not None


def test_a_success_after_a_failed_attempt_or_a_checkpoint_keeps_its_snapshot(
        engine: PgEngine) -> None:
    engine.append(frames(["retried", "saved"]))
    _, claims = engine.settle([], "w1", 2)
    engine.save_checkpoint("saved", {c.job_id: c for c in claims}["saved"].token, 3, 0.5)
    changes = {"retried": fail(), "saved": succeed()}
    engine.settle([(c.job_id, c.token, changes[c.job_id]) for c in claims], "w1", 0)
    (again,) = engine.settle([], "w1", 1)[1]
    (state,), _ = engine.settle([("retried", again.token, succeed())], "w1", 0)
    assert _blobs(engine) == {"retried": True, "saved": True}
    assert engine.get("retried") == state and engine.get("retried").errors == ["boom"]
    assert engine.get("saved").checkpoint == 3


def test_a_version_10_database_is_upgraded_and_a_version_10_jobq_refuses_11(
        fresh_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Queue(fresh_url) as q:
        done = q.enqueue("jobtasks:add", 1, 2)
        run_burst(q)
        waiting = q.enqueue("jobtasks:add", 3, 4)
    with psycopg.connect(parse(fresh_url).conninfo, autocommit=True) as conn:
        rewind(conn, 10)
    with Queue(fresh_url) as q:
        assert q.result(done) == 3
        run_burst(q)
        assert q.state(waiting).status is Status.SUCCEEDED and q.result(waiting) == 7
    with psycopg.connect(parse(fresh_url).conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM jobq_schema").fetchone()[0] == schema.VERSION
    monkeypatch.setattr(schema, "VERSION", 10)
    with pytest.raises(IncompatibleFormat, match=f"version {len(schema.MIGRATIONS)}"):
        Queue(fresh_url)
