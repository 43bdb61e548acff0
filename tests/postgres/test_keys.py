"""Key rotation on PostgreSQL: what the queue's row records, the schema version that lists old
keys, rekey beside running workers and writers, and a stale process meeting the new key's
snapshots. (What both engines share is in tests/contract/test_keys_contract.py.)"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

import pg
from jobq import Queue, transitions
from jobq.codec import SIGNED_MAGIC, SnapshotCodec, key_check
from jobq.errors import IncompatibleFormat, OldKeyNeeded, WrongSecretKey
from jobq.maintenance import rekey
from jobq.pickling import PickleRules
from jobq.postgres import schema
from jobq.postgres.rekey import STORES, Signers
from jobq.postgres.url import parse
from jobq.state import Status

from conftest import wait_until

from .pgq import fail, new_queue_url, url_of

A = b"key-A-0123456789abcdef"
B = b"key-B-0123456789abcdef"
COUNT = "jobtasks:count_with_checkpoints"


def meta(url: str) -> tuple[str, list[str]]:
    loc = parse(url)
    with psycopg.connect(loc.conninfo) as conn:
        row = conn.execute("SELECT key_check, old_key_checks FROM jobq_meta WHERE queue = %s",
                           (loc.queue,)).fetchone()
    return row[0], list(row[1])


def signers_of(url: str) -> dict[str, list[int | None]]:
    """Which key signed each stored record and snapshot, per table: 0 B, 1 A."""
    loc = parse(url)
    signers = Signers(SnapshotCodec(rules=PickleRules.build(), secret_key=B, old_keys=(A,)),
                      B, (A,), 1 << 20)
    found: dict[str, list[int | None]] = {}
    with psycopg.connect(loc.conninfo) as conn:
        for store in STORES:
            rows = conn.execute(f"SELECT job_id, {store.column} FROM {store.table} WHERE"
                                f" queue = %s AND {store.column} IS NOT NULL", (loc.queue,))
            found[store.table] = [signers.signer(store, j, bytes(raw)) for j, raw in rows]
    return found


def checkpointed_with_a(url: str, n: int, count_to: int = 5) -> list[str]:
    """``n`` jobs enqueued with A, each claimed, checkpointed at 2 and given back: their
    records and snapshots are A's."""
    with Queue(url, secret_key=A) as q:
        ids = q.enqueue_many(COUNT, [(count_to,)] * n)
        _, claims = q.engine.settle([], "a-worker", n)
        for c in claims:
            q.engine.save_checkpoint(c.job_id, c.token, 2, 0.4)
        q.engine.settle([(c.job_id, c.token, lambda s, now, _: transitions.released(s, now))
                         for c in claims], "a-worker", 0)
    assert len(claims) == n
    return ids


def test_the_queue_row_lists_the_current_key_and_the_pending_ones(pg_url: str) -> None:
    Queue(pg_url, secret_key=A).close()
    assert meta(pg_url) == (key_check(A), [])
    Queue(pg_url, secret_key=B, old_secret_keys=[A]).close()
    assert meta(pg_url) == (key_check(B), [key_check(A)])
    Queue(pg_url, secret_key=A, old_secret_keys=[B]).close()  # a late process rotates nothing
    assert meta(pg_url) == (key_check(B), [key_check(A)])
    Queue(pg_url, secret_key=B).close()  # nothing A signed: retired
    assert meta(pg_url) == (key_check(B), [])


def test_processes_rotating_at_once_rotate_once(pg_url: str) -> None:
    Queue(pg_url, secret_key=A).close()
    errors: list[BaseException] = []

    def open_rotating() -> None:
        try:
            Queue(pg_url, secret_key=B, old_secret_keys=[A]).close()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_rotating) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and meta(pg_url) == (key_check(B), [key_check(A)])


@pytest.fixture
def fresh_url(pg_server: pg.Server):
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_keys") as dsn:
        yield url_of(dsn)


def test_a_database_of_schema_1_is_upgraded_and_then_refused_by_a_jobq_of_schema_1(
        fresh_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Schema 2 lists old keys: a jobq that knows only schema 1 would take what they signed for
    damage, so it refuses the database, saying both versions."""
    url = fresh_url + "?queue=q"
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:  # as a jobq of 1 made it
        for sql in schema.MIGRATIONS[0]:
            conn.execute(sql)
        conn.execute("CREATE TABLE jobq_schema (version integer NOT NULL)")
        conn.execute("INSERT INTO jobq_schema VALUES (1)")
        conn.execute("INSERT INTO jobq_meta VALUES ('q', true, %s, 1048576, 0)", (key_check(A),))
        conn.execute("INSERT INTO jobq_cancels (queue) VALUES ('q')")
    with Queue(url, secret_key=A) as q:
        jid = q.enqueue("jobtasks:add", 1, 2)
    with Queue(url, secret_key=B, old_secret_keys=[A]) as q:
        assert q.payload(jid).args == (1, 2)
    assert meta(url) == (key_check(B), [key_check(A)])
    current = schema.VERSION  # the database is at it now
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
    monkeypatch.setattr(schema, "VERSION", 1)
    with pytest.raises(IncompatibleFormat,
                       match=f"is version {current}; this jobq knows versions up to 1"):
        Queue(url, secret_key=B, old_secret_keys=[A])


def test_rekey_re_signs_records_and_snapshots_of_every_table(pg_url: str) -> None:
    ids = checkpointed_with_a(pg_url, 30)
    with Queue(pg_url, secret_key=B, old_secret_keys=[A]) as q:
        _, claims = q.engine.settle([], "b-worker", 10)  # 10 end dead: their snapshots in jobq_done
        q.engine.settle([(c.job_id, c.token, lambda s, now, m: transitions.failed(
            s, "x", now, max_attempts=1, retry_delay=0)) for c in claims], "b-worker", 0)
    before = signers_of(pg_url)
    assert before["jobq_payloads"] == [1] * 30 and before["jobq_snapshots"] == [1] * 20
    assert before["jobq_done"] == [0] * 10  # written by the process with B
    with Queue(pg_url, secret_key=B, old_secret_keys=[A]) as q:
        report = rekey(q)
        assert (report.records_resigned, report.snapshots_resigned) == (30, 20)
        assert report.can_drop_old_keys
    after = signers_of(pg_url)
    assert all(s == 0 for found in after.values() for s in found)
    with Queue(pg_url, secret_key=B) as q:
        assert sorted(q.state(j).checkpoint for j in ids) == [2] * 30
        assert q.counts()["dead"] == 10


def test_an_open_refused_for_a_missing_old_key_changes_nothing(pg_url: str) -> None:
    checkpointed_with_a(pg_url, 3)
    Queue(pg_url, secret_key=B, old_secret_keys=[A]).close()
    loc = parse(pg_url)

    def rows() -> list[tuple]:
        with psycopg.connect(loc.conninfo) as conn:
            return [conn.execute(f"SELECT * FROM {table} WHERE queue = %s ORDER BY job_id",
                                 (loc.queue,)).fetchall()
                    for table in ("jobq_jobs", "jobq_done", "jobq_payloads", "jobq_snapshots")]

    before = rows(), meta(pg_url)
    with pytest.raises(OldKeyNeeded, match="3 live job record.*3 state snapshot"):
        Queue(pg_url, secret_key=B)
    assert (rows(), meta(pg_url)) == before


def test_rekey_refuses_a_process_whose_key_is_an_old_one(pg_url: str) -> None:
    """A process of a rolling restart (current key A, the queue's B among its old keys) would
    re-sign B's records with A: refused, nothing changed."""
    checkpointed_with_a(pg_url, 2)
    Queue(pg_url, secret_key=B, old_secret_keys=[A]).close()
    before = signers_of(pg_url)
    with Queue(pg_url, secret_key=A, old_secret_keys=[B]) as late:
        with pytest.raises(WrongSecretKey, match="not the queue's current key"):
            rekey(late)
    assert signers_of(pg_url) == before


def test_rekey_never_waits_for_nor_overwrites_a_snapshot_a_writer_holds(pg_url: str) -> None:
    """A writer holds a job's snapshot row, about to commit a newer snapshot: rekey re-signs
    the others without waiting, tries that one again, reports it left; the writer's snapshot is
    the one that stays."""
    ids = checkpointed_with_a(pg_url, 3)
    loc = parse(pg_url)
    with psycopg.connect(loc.conninfo) as writer:  # one transaction, open until the end
        codec = SnapshotCodec(rules=PickleRules.build(), secret_key=B)
        with Queue(pg_url, secret_key=B, old_secret_keys=[A]) as q:
            newer = codec.encode(ids[0], q.state(ids[0]))
        writer.execute("UPDATE jobq_snapshots SET blob = %s WHERE queue = %s AND job_id = %s",
                       (newer, loc.queue, ids[0]))
        with Queue(pg_url, secret_key=B, old_secret_keys=[A]) as q:
            report = rekey(q)
        assert (report.snapshots_resigned, report.snapshots_left) == (2, 1)
        assert not report.can_drop_old_keys
        writer.commit()
    with psycopg.connect(loc.conninfo) as conn:
        blob = conn.execute("SELECT blob FROM jobq_snapshots WHERE queue = %s AND job_id = %s",
                            (loc.queue, ids[0])).fetchone()[0]
    assert bytes(blob) == newer


def test_a_worker_runs_on_while_rekey_re_signs_under_it(pg_url: str, workers,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A real worker (two children, given both keys) drains jobs that checkpoint at every step,
    some resuming from A's snapshots, while rekey runs again and again (the first time while a
    gate job holds the worker running): every job ends once with its result, every record A
    signed is re-signed once, and afterwards the new key alone opens the queue."""
    resumed = checkpointed_with_a(pg_url, 30, count_to=5)
    with Queue(pg_url, secret_key=A) as q:
        fresh = q.enqueue_many(COUNT, [(5,)] * 50)
    with Queue(pg_url, secret_key=B, old_secret_keys=[A]) as q:
        gate = q.enqueue_call("jobtasks:stop_when_cancelled", (120,), priority=10)
    monkeypatch.setenv("JOBQ_SECRET_KEY", B.decode())
    monkeypatch.setenv("JOBQ_OLD_SECRET_KEYS", A.decode())
    worker = workers(pg_url, "--burst", "-c", "2")
    with Queue(pg_url, secret_key=B, old_secret_keys=[A]) as q:
        wait_until(lambda: q.state(gate).status is Status.RUNNING)
        passes = [rekey(q)]  # the worker is running: the gate job holds it
        q.cancel(gate)
        while worker.proc.poll() is None:
            passes.append(rekey(q))
            time.sleep(0.02)  # leave the worker some of the machine's two cores
        assert worker.wait() == 0
        passes.append(rekey(q))
        assert passes[-1].can_drop_old_keys
        assert sum(p.records_resigned for p in passes) == 80  # each once
    monkeypatch.delenv("JOBQ_OLD_SECRET_KEYS")
    with Queue(pg_url, secret_key=B) as q:  # nothing A signed is left: A is retired
        counts = q.counts()
        assert (counts["succeeded"], counts["cancelled"]) == (80, 1)
        assert counts["dead"] == counts["failed"] == counts["queued"] == 0
        assert {q.result(j) for j in resumed + fresh} == {5}
        assert {q.state(j).attempts for j in resumed + fresh} == {1}  # a give-back is free
    assert all(s == 0 for found in signers_of(pg_url).values() for s in found)


def test_a_stale_process_meeting_the_new_keys_snapshot_stops_and_changes_nothing(
        pg_url: str) -> None:
    """A process opened with A alone before the rotation claims a job whose snapshot B signed
    (it failed once under B): WrongSecretKey, not a storage error, and the claim is undone."""
    with Queue(pg_url, secret_key=A) as q:
        jid = q.enqueue("jobtasks:add", 1, 1)
    stale = Queue(pg_url, secret_key=A)
    try:
        with Queue(pg_url, secret_key=B, old_secret_keys=[A]) as rotated:
            _, [claim] = rotated.engine.settle([], "b", 1)
            rotated.engine.finish(jid, claim.token, fail(delay=0))
        with pytest.raises(WrongSecretKey, match="rotated"):
            stale.engine.settle([], "stale", 1)
        with pytest.raises(WrongSecretKey, match="rotated"):
            stale.state(jid)
    finally:
        stale.close()
    with Queue(pg_url, secret_key=B, old_secret_keys=[A]) as q:
        state = q.state(jid)
        assert (state.status, state.attempts) == (Status.FAILED, 1)
        assert q.engine.held() == []


def test_a_snapshot_is_signed_as_the_directory_engine_signs_it(pg_url: str) -> None:
    """The stored bytes after rekey are the codec's, so a snapshot copied between engines
    verifies the same."""
    [jid] = checkpointed_with_a(pg_url, 1)
    with Queue(pg_url, secret_key=B, old_secret_keys=[A]) as q:
        rekey(q)
    loc = parse(pg_url)
    with psycopg.connect(loc.conninfo) as conn:
        blob = bytes(conn.execute("SELECT blob FROM jobq_snapshots WHERE queue = %s",
                                  (loc.queue,)).fetchone()[0])
    assert blob[:4] == SIGNED_MAGIC
    assert SnapshotCodec(rules=PickleRules.build(), secret_key=B).decode(jid, blob).checkpoint == 2


def test_rotating_one_queue_leaves_the_others_of_its_database_alone(pg_engine_dsn: str) -> None:
    """Rotating one queue leaves the others of the database alone."""
    first, second = new_queue_url(pg_engine_dsn), new_queue_url(pg_engine_dsn)
    Queue(first, secret_key=A).close()
    Queue(second, secret_key=A).close()
    Queue(first, secret_key=B, old_secret_keys=[A]).close()
    assert meta(second) == (key_check(A), [])
    Queue(second, secret_key=A).close()
