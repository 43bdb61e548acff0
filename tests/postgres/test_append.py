"""Batches COPYed straight into the tables (jobq.postgres.batch), and the slow way they fall
back to when an id is stored already."""

from __future__ import annotations

import time

import psycopg
import pytest

from .pgq import KEY, frame, frames, open_url, succeed
from jobq import batches, job_record
from jobq.batches import Made
from jobq.errors import InvalidArgument, StorageError
from jobq.job_options import Options
from jobq.pickling import PickleRules
from jobq.postgres import PgEngine, parse


def args_of(engine: PgEngine, job_id: str) -> tuple[object, ...]:
    return job_record.load_payload(engine.payload_body(job_id), PickleRules.build()).args


def test_a_retried_batch_stores_nothing_twice(engine: PgEngine) -> None:
    ids = [f"r{i}" for i in range(10)]
    engine.append(frames(ids, args=(1,)))
    engine.append_batches([(frames(ids[:5], args=(2,)), 0),  # the commit's outcome was unknown
                           (frames(ids[5:], args=(2,)) + [frame("new")], 0)])
    assert list(engine.job_ids()) == [*ids, "new"]
    assert engine.counts()["queued"] == 11
    assert args_of(engine, "r0") == (1,) and args_of(engine, "r9") == (1,)


def test_a_batch_with_a_finished_id_stores_only_the_new_ones(engine: PgEngine) -> None:
    engine.append(frames(["done", "other"]))
    (claim,) = engine.settle([], "w", 1)[1]
    engine.finish("done", claim.token, succeed(1))
    engine.append(frames(["done", "fresh"]))  # "done" is in jobq_done only
    assert engine.counts()["succeeded"] == 1 and engine.counts()["queued"] == 2
    assert [c.job_id for c in engine.settle([], "w", 5)[1]] == ["other", "fresh"]


def test_a_damaged_frame_after_batches_were_sent_stores_nothing(engine: PgEngine) -> None:
    good = [frames([f"g{i}-{j}" for j in range(100)]) for i in range(3)]
    bad = bytearray(frame("bad"))
    bad[-3] ^= 0xFF  # the body's checksum no longer matches
    offset = sum(len(f) for batch in good for f in batch) + len(good[0][0])
    with pytest.raises(InvalidArgument, match=f"byte {offset} .*body checksum mismatch"):
        engine.append_batches([*((b, len(b[-1])) for b in good),
                               ([good[0][0], bytes(bad), frame("after")], 0)])
    assert engine.counts()["queued"] == 0
    engine.append(frames(["x", "y"]))
    assert list(engine.job_ids()) == ["x", "y"]


def test_an_error_making_a_later_batch_stores_nothing(engine: PgEngine) -> None:
    def batches():  # type: ignore[no-untyped-def]
        yield frames(["a", "b"]), 0
        yield frames(["c"]), 0  # sent to the server before the next is asked for
        raise RuntimeError("the producer failed")

    with pytest.raises(RuntimeError, match="the producer failed"):
        engine.append_batches(batches())
    assert engine.counts()["queued"] == 0
    engine.append(frames(["x", "y"]))
    assert list(engine.job_ids()) == ["x", "y"]


def test_a_batch_of_several_jobs_is_sent_before_the_next_is_made(engine: PgEngine,
                                                                 pg_url: str) -> None:
    """The server inserts a batch while the producer makes the next: the COPY is under way
    before the second batch is asked for (a first batch of one job still waits for it, to
    know whether it is the only one)."""
    pid = engine._db.conn.info.backend_pid  # noqa: SLF001 - the session to watch
    seen: list[tuple[str, str]] = []

    def batches():  # type: ignore[no-untyped-def]
        yield frames(["a", "b", "c"]), 0
        with psycopg.connect(parse(pg_url).conninfo, autocommit=True) as admin:
            seen.append(admin.execute("SELECT state, query FROM pg_stat_activity"
                                      " WHERE pid = %s", (pid,)).fetchone())
        yield frames(["d"]), 0

    engine.append_batches(batches())
    (state, query), = seen
    assert state == "active" and query.startswith("COPY jobq_jobs"), (state, query)
    assert list(engine.job_ids()) == ["a", "b", "c", "d"]


def test_enqueue_many_hands_a_short_first_batch(engine: PgEngine) -> None:
    """The server has nothing to do until the first batch is made: it is FIRST_BATCH jobs."""
    ids: list[str] = []
    made = made_batches(ids, batches.BATCH + 1)
    first = batches.FIRST_BATCH
    assert 1 < first < batches.BATCH
    assert [len(b.ids) for b, _ in made] == [first, batches.BATCH + 1 - first]
    engine.append_batches(made)
    assert list(engine.job_ids()) == ids


def test_a_session_lost_after_batches_were_sent_stores_nothing(engine: PgEngine,
                                                                pg_url: str) -> None:
    """The server ends the transaction while the COPY is under way (its backend terminated,
    as a restart or an administrator would): none of the rows already sent is stored."""
    pid = engine._db.conn.info.backend_pid  # noqa: SLF001 - the session to end

    def batches():  # type: ignore[no-untyped-def]
        for i in range(3):
            yield frames([f"s{i}-{j}" for j in range(1_500)]), 0  # more than a CHUNK each
            if i == 1:
                with psycopg.connect(parse(pg_url).conninfo, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    with pytest.raises(StorageError, match="nothing was stored"):
        engine.append_batches(batches())
    other = open_url(pg_url)
    try:
        assert other.counts()["queued"] == 0
    finally:
        other.close()
    engine.append(frames(["x", "y"]))  # a new session
    assert list(engine.job_ids()) == ["x", "y"]


def test_a_signed_batch_is_verified_frame_by_frame(pg_url: str) -> None:
    engine = open_url(pg_url, KEY)
    try:
        with pytest.raises(InvalidArgument, match="signature mismatch"):
            engine.append([frame("a", key=KEY), frame("b", key=b"other" * 8)])
        with pytest.raises(InvalidArgument, match="not signed"):
            engine.append([frame("a", key=KEY), frame("b")])
        assert not engine.exists("a")
        engine.append([frame("a", key=KEY, args=(7,)), frame("b", key=KEY)])
        assert list(engine.job_ids()) == ["a", "b"] and args_of(engine, "a") == (7,)
    finally:
        engine.close()


def test_a_batch_keeps_each_jobs_fields(engine: PgEngine) -> None:
    """Each job its own fields, though the rows pack the ones they share once (jobq.postgres.
    batch): "q" follows a job unlike it, "r" one like it."""
    engine.append([frame("p", priority=-4, max_attempts=9, task="jobtasks:add"),
                   frame("later", delay=60),
                   *(frame(j, priority=-4, max_attempts=9, task="jobtasks:add") for j in "qr")])
    for job_id in "pqr":
        row = engine.row(job_id)
        assert (row["priority"], row["task"], row["status"]) == (-4, "jobtasks:add", "queued")
    stored = engine._db.execute(  # noqa: SLF001 - a column no reader shows
        "SELECT job_id, max_attempts FROM jobq_jobs WHERE queue = %s ORDER BY seq",
        (engine._queue,))  # noqa: SLF001
    assert stored == [("p", 9), ("later", 3), ("q", 9), ("r", 9)]
    assert engine.row("later")["run_at"] > engine.now() + 50
    assert [c.job_id for c in engine.settle([], "w", 5)[1]] == ["p", "q", "r"]


def made_batches(ids: list[str], n: int, key: bytes | None = None) -> list[tuple[Made, int]]:
    """The batches Queue.enqueue_many makes for n jobs of jobtasks:noop, as it makes them."""
    return list(batches.records("jobtasks:noop", None, [(i,) for i in range(n)],
                                Options(2, 5.0, 4, None), ids, now=time.time(), key=key,
                                limit=1 << 20))


def stored(engine: PgEngine) -> list[tuple[object, ...]]:
    """Every column of the queue's job rows but the arrival number, and each job's frame."""
    with engine._db.errors("read back"):  # noqa: SLF001 - the rows as stored
        return engine._db.conn.execute(  # noqa: SLF001
            "SELECT to_jsonb(j) - 'seq' - 'queue', p.frame FROM jobq_jobs j JOIN jobq_payloads p"
            " USING (queue, job_id) WHERE j.queue = %s ORDER BY j.seq",
            (engine._queue,)).fetchall()  # noqa: SLF001


@pytest.mark.parametrize("key", [None, KEY], ids=["unsigned", "signed"])
def test_made_batches_store_what_their_frames_say(pg_url: str, key: bytes | None) -> None:
    """The rows of Made batches, taken from the fields they were made from, are the rows the
    same frames give when they are read back and verified."""
    ids: list[str] = []
    made = made_batches(ids, 2_500, key)  # a short first batch, two full ones, a short last
    first, full = batches.FIRST_BATCH, batches.BATCH
    assert [len(b.ids) for b, _ in made] == [first, full, full, 2_500 - first - 2 * full]
    assert len(set(ids)) == 2_500
    fast, checked = open_url(pg_url, key), open_url(pg_url + "_checked", key)
    try:
        fast.append_batches(made)
        checked.append_batches([(list(pieces), last) for pieces, last in made])
        rows = stored(fast)
        assert len(rows) == 2_500 and rows == stored(checked)
        assert list(fast.job_ids()) == ids and args_of(fast, ids[-1]) == (2_499,)
    finally:
        fast.close()
        checked.close()


def test_a_retried_made_batch_stores_nothing_twice(engine: PgEngine) -> None:
    ids: list[str] = []
    made = made_batches(ids, 1_500)
    engine.append_batches(made[:1])
    engine.append_batches(made)  # the first batch's commit outcome was unknown
    assert list(engine.job_ids()) == ids and engine.counts()["queued"] == 1_500


def test_a_made_batch_without_an_id_per_job_stores_nothing(engine: PgEngine) -> None:
    (pieces, last), = made_batches([], 10)
    with pytest.raises(InvalidArgument, match="20 pieces has 9 ids"):
        engine.append_batches([(Made(list(pieces), pieces.ids[:9], pieces.shared), last)])
    assert engine.counts()["queued"] == 0
