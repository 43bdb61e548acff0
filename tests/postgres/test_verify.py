"""``jobq verify`` on a PostgreSQL queue, run as the command a user runs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

import pg
from conftest import child_env, jobq_command
from jobq.postgres import PgEngine
from jobq.postgres.url import parse
from .pgq import KEY, fail, frame, frames, open_url, succeed, url_of


def verify(url: str, *args: str, key: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = child_env()
    env.pop("JOBQ_SECRET_KEY", None)
    if key is not None:
        env["JOBQ_SECRET_KEY"] = key.decode()
    return subprocess.run([*jobq_command(), "verify", "--dir", url, *args], env=env, text=True,
                          capture_output=True, timeout=120)


def sql(url: str, statement: str, args: tuple[object, ...] = ()) -> None:
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        conn.execute(statement, args)


def every_kind_of_job(engine: PgEngine, key: bytes | None = None) -> None:
    """Queued, delayed, running with a checkpoint, failed and waiting, succeeded, dead."""
    engine.append([frame("ok", key=key), frame("retry", key=key),
                   frame("dies", max_attempts=1, key=key), frame("runs", key=key),
                   frame("later", delay=600, key=key), frame("queued", key=key)])
    claims = {c.job_id: c for c in engine.settle([], "w", 4)[1]}
    engine.finish("ok", claims["ok"].token, succeed(42))
    engine.finish("retry", claims["retry"].token, fail("boom", delay=600))
    engine.finish("dies", claims["dies"].token, fail("boom"))
    engine.save_checkpoint("runs", claims["runs"].token, {"step": 3}, 0.5)
    assert {s.value for s in map(engine.status, ["ok", "retry", "dies", "runs", "later"])} \
        == {"succeeded", "failed", "dead", "running", "queued"}


def test_a_clean_queue_verifies(pg_url: str, engine: PgEngine) -> None:
    every_kind_of_job(engine)
    done = verify(pg_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verify: OK" in done.stdout
    report = json.loads(verify(pg_url, "--json").stdout)
    assert report["ok"] and report["records_ok"] == 6 and report["rows_ok"] == 6
    assert report["snapshots_ok"] >= 3 and report["jobs_checked"] >= 3
    assert report["schema"] == [] and report["rows_failed"] == 0


def test_a_changed_byte_of_a_record_names_the_job(pg_url: str, engine: PgEngine) -> None:
    engine.append(frames(["fine", "hit", "other"]))
    sql(pg_url, "UPDATE jobq_payloads SET frame = overlay(frame placing '\\x00'::bytea"
        " from 45 for 1) WHERE queue = %s AND job_id = 'hit'", (parse(pg_url).queue,))
    done = verify(pg_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "hit  queued" in done.stdout and "body checksum mismatch" in done.stdout
    assert "verify: FAILED" in done.stdout
    report = json.loads(verify(pg_url, "--json").stdout)
    assert [j["job_id"] for j in report["unreadable_jobs"]] == ["hit"]
    assert (report["records_ok"], report["records_failed"]) == (2, 1)


def test_a_changed_byte_of_a_snapshot_names_the_job(pg_url: str) -> None:
    engine = open_url(pg_url, KEY)
    try:
        every_kind_of_job(engine, KEY)
    finally:
        engine.close()
    assert verify(pg_url, key=KEY).returncode == 0
    queue = parse(pg_url).queue
    sql(pg_url, "UPDATE jobq_done SET blob = overlay(blob placing '\\x00'::bytea from 50 for 1)"
        " WHERE queue = %s AND job_id = 'ok'", (queue,))
    sql(pg_url, "UPDATE jobq_snapshots SET blob = overlay(blob placing '\\x00'::bytea"
        " from 60 for 1) WHERE queue = %s AND job_id = 'runs'", (queue,))
    done = verify(pg_url, key=KEY)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "job ok: state snapshot 'ok' failed its signature check" in done.stdout
    report = json.loads(verify(pg_url, "--json", key=KEY).stdout)
    assert report["snapshots_failed"] == 2
    assert {e["where"] for e in report["examples"]} == {"job ok", "job runs"}


def test_rows_that_disagree_are_reported(pg_url: str, engine: PgEngine) -> None:
    engine.append(frames(["a", "b", "c"]))
    engine.settle([], "w", 1)
    queue = parse(pg_url).queue
    sql(pg_url, "UPDATE jobq_jobs SET owner = NULL WHERE queue = %s AND job_id = 'a'", (queue,))
    sql(pg_url, "UPDATE jobq_jobs SET status = 'succeeded' WHERE queue = %s AND job_id = 'b'",
        (queue,))
    sql(pg_url, "DELETE FROM jobq_payloads WHERE queue = %s AND job_id = 'c'", (queue,))
    done = verify(pg_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "job a: running without an owner" in done.stdout
    assert "job b: a finished job (succeeded) in jobq_jobs" in done.stdout
    assert "c  queued" in done.stdout and "no record" in done.stdout


@pytest.fixture
def fresh_url(pg_server: pg.Server) -> Iterator[str]:
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_verify") as dsn:
        yield url_of(dsn) + "?queue=q"


def test_a_missing_index_is_reported(fresh_url: str) -> None:
    engine = open_url(fresh_url)
    engine.append(frames(["a"]))
    engine.close()
    sql(fresh_url, "DROP INDEX jobq_jobs_plain_ready")
    sql(fresh_url, "ALTER TABLE jobq_done ALTER COLUMN task DROP NOT NULL")
    done = verify(fresh_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "index jobq_jobs_plain_ready is missing" in done.stdout
    assert "column jobq_done.task is text; expected text NOT NULL" in done.stdout
    report = json.loads(verify(fresh_url, "--json").stdout)
    assert len(report["schema"]) == 2 and not report["ok"]
