"""PgEngine against a real PostgreSQL: every promise of jobq.engine.Engine but liveness (see
test_liveness.py), the schema and key checks (test_schema.py)."""

from __future__ import annotations

import time

import psycopg
import pytest

from .pgq import KEY, fail, frame, frames, open_url, succeed
from jobq import job_record, transitions
from jobq.errors import DamagedRecord, JobNotFound, LoadError, StaleClaim, StorageError
from jobq.pickling import PickleRules
from jobq.postgres import PgEngine
from jobq.state import JobState, Status


# -- producing ----------------------------------------------------------------------------------


def test_append_is_visible_to_another_connection_at_once(engine: PgEngine, pg_url: str) -> None:
    engine.append(frames(["a", "b"]))
    other = open_url(pg_url)
    try:
        assert other.counts()["queued"] == 2
        assert other.exists("a") and other.status("b") is Status.QUEUED
        assert other.has_ready()
    finally:
        other.close()


def test_append_keeps_the_first_record_of_an_id(engine: PgEngine) -> None:
    engine.append([frame("a", priority=1, args=(1,))])
    engine.append([frame("a", priority=9, args=(2,)), frame("b")])
    engine.append([frame("c", args=(1,)), frame("c", args=(2,))])  # one batch, twice
    assert engine.counts()["queued"] == 3
    assert engine.row("a")["priority"] == 1
    assert job_record.load_payload(engine.payload_body("a"), PickleRules.build()).args == (1,)
    assert job_record.load_payload(engine.payload_body("c"), PickleRules.build()).args == (1,)
    assert list(engine.job_ids()) == ["a", "b", "c"]


def test_append_of_a_finished_id_creates_nothing(engine: PgEngine) -> None:
    engine.append([frame("a")])
    (claim,) = engine.settle([], "w", 1)[1]
    engine.finish("a", claim.token, succeed(1))
    engine.append([frame("a")])
    assert engine.counts() == {**engine.counts(), "queued": 0, "succeeded": 1}
    assert not engine.has_ready()


def test_append_pieces_header_then_body(engine: PgEngine) -> None:
    """Queue.enqueue_many passes headers and bodies as separate pieces."""
    whole = [frame("a"), frame("b")]
    pieces = [p for f in whole for p in (f[:20], f[20:])]
    engine.append(pieces, last=len(whole[-1]))
    assert list(engine.job_ids()) == ["a", "b"]


def test_append_clamps_run_at_to_the_server_clock(engine: PgEngine) -> None:
    """A producer whose clock runs an hour ahead: its undelayed job is ready now, and a job
    delayed by 60 s waits 60 s of the server's clock, not an hour more."""
    ahead = time.time() + 3600
    engine.append([frame("now", created=ahead), frame("later", created=ahead, delay=60)])
    now = engine.now()
    assert engine.row("now")["run_at"] <= now + 1
    assert now + 55 < engine.row("later")["run_at"] <= now + 61
    assert [c.job_id for c in engine.settle([], "w", 5)[1]] == ["now"]


def test_big_batch_in_one_append(engine: PgEngine) -> None:
    ids = [f"j{i:05d}" for i in range(5000)]
    engine.append(frames(ids))
    assert engine.counts()["queued"] == 5000
    assert list(engine.job_ids()) == ids  # arrival order, read page by page


# -- claiming -----------------------------------------------------------------------------------


def test_claim_order_is_priority_then_arrival(engine: PgEngine) -> None:
    engine.append([frame("low1"), frame("high1", priority=5), frame("low2"),
                   frame("high2", priority=5), frame("mid", priority=2)])
    claims = engine.settle([], "w", 3)[1]
    assert [c.job_id for c in claims] == ["high1", "high2", "mid"]
    assert [c.job_id for c in engine.settle([], "w", 3)[1]] == ["low1", "low2"]
    assert all(c.state.status is Status.RUNNING and c.state.attempts == 1 for c in claims)
    assert engine.settle([], "w", 3)[1] == []


def test_delayed_job_is_claimed_once_due(engine: PgEngine) -> None:
    engine.append([frame("later", delay=0.5), frame("now")])
    assert [c.job_id for c in engine.settle([], "w", 5)[1]] == ["now"]
    assert not engine.has_ready()
    assert engine.waiting(engine.now())[(Status.QUEUED, False)] > 0
    time.sleep(0.6)
    assert engine.has_ready()
    assert [c.job_id for c in engine.settle([], "w", 5)[1]] == ["later"]


def test_settle_records_finished_and_claims_in_one_call(engine: PgEngine) -> None:
    engine.append(frames(["a", "b", "c"]))
    first = engine.settle([], "w", 2)[1]
    states, claims = engine.settle([(c.job_id, c.token, succeed(c.job_id)) for c in first],
                                   "w", 2)
    assert [s.status for s in states if s] == [Status.SUCCEEDED] * 2
    assert [c.job_id for c in claims] == ["c"]
    assert engine.get("a").result == "a" and engine.status("b") is Status.SUCCEEDED
    assert engine.counts()["succeeded"] == 2 and engine.counts()["running"] == 1


def test_settle_fencing_a_stale_token_records_nothing(engine: PgEngine) -> None:
    engine.append([frame("a")])
    (old,) = engine.settle([], "w1", 1)[1]
    # The claim is reaped (its worker presumed dead) and claimed again.
    engine.settle([("a", old.token, lambda s, now, m: transitions.released(s, now))], "r", 0)
    (new,) = engine.settle([], "w2", 1)[1]
    assert new.token == old.token + 1
    states, _ = engine.settle([("a", old.token, succeed("late"))], "w1", 0)
    assert states == [None]
    assert engine.status("a") is Status.RUNNING
    with pytest.raises(StaleClaim):
        engine.finish("a", old.token, succeed("late"))
    assert engine.finish("a", new.token, succeed("on time")).result == "on time"
    assert engine.get("a").result == "on time"
    with pytest.raises(StaleClaim):  # finished: no claim is current
        engine.finish("a", new.token, succeed("twice"))
    with pytest.raises(JobNotFound):
        engine.finish("nope", 1, succeed())


def test_failed_attempt_retries_after_its_delay_then_dies(engine: PgEngine) -> None:
    engine.append([frame("a", max_attempts=2)])
    (c,) = engine.settle([], "w", 1)[1]
    state = engine.finish("a", c.token, fail("first", delay=0.3))
    assert state.status is Status.FAILED
    assert engine.settle([], "w", 1)[1] == []
    time.sleep(0.35)
    (c2,) = engine.settle([], "w", 1)[1]
    assert c2.state.attempts == 2 and c2.state.errors == ["first"]  # the snapshot, under the row
    assert engine.finish("a", c2.token, fail("second")).status is Status.DEAD
    assert engine.counts()["dead"] == 1 and engine.get("a").errors == ["first", "second"]


def test_prefetched_claims_are_not_started_until_said(engine: PgEngine) -> None:
    engine.append(frames(["a", "b", "c"]))
    claims = engine.settle([], "w/1", 1, prefetch=2)[1]
    assert [c.job_id for c in claims] == ["a", "b", "c"]
    held = {h.job_id: h for h in engine.held("w/1")}
    assert (held["a"].started, held["b"].started, held["c"].started) == (True, False, False)
    engine.settle([], "w/1", 0, started=[("b", claims[1].token), ("c", 999)])
    held = {h.job_id: h for h in engine.held()}
    assert (held["b"].started, held["c"].started) == (True, False)
    assert engine.held("w/2") == []


def test_one_claim_starts_the_first_jobs_and_prefetches_the_next_in_order(engine: PgEngine
                                                                          ) -> None:
    engine.append([frame("low1"), frame("high", priority=5), frame("mid", priority=2),
                   frame("low2"), frame("low3")])
    claims = engine.settle([], "w/1", 2, prefetch=1)[1]
    assert [c.job_id for c in claims] == ["high", "mid", "low1"]
    assert {h.job_id: h.started for h in engine.held()} == {"high": True, "mid": True,
                                                            "low1": False}
    # the prefetched claim that started is marked by the statement that claims the next
    more = engine.settle([], "w/1", 1, started=[("low1", claims[2].token)])[1]
    assert [c.job_id for c in more] == ["low2"]
    assert all(h.started for h in engine.held())
    (last,) = engine.settle([], "w/2", 0, prefetch=5)[1]  # none to start: all prefetched
    assert last.job_id == "low3" and not engine.held("w/2")[0].started


def test_a_big_batch_of_unicode_ids_is_claimed_and_settled_in_one_go(engine: PgEngine) -> None:
    ids = [f"jöb-{i:05d}-☃" for i in range(3000)]  # sent as binary text[] parameters
    engine.append(frames(ids))
    claims = engine.settle([], "w/1", 2000, prefetch=1000)[1]
    assert [c.job_id for c in claims] == ids
    states, more = engine.settle([(c.job_id, c.token, succeed()) for c in claims], "w/1", 1,
                                 started=[(c.job_id, c.token) for c in claims[2000:]])
    assert more == [] and all(s is not None and s.status is Status.SUCCEEDED for s in states)
    assert engine.counts()["succeeded"] == 3000


def test_leases_are_judged_on_the_server_clock_and_renewed(engine: PgEngine) -> None:
    engine.append(frames(["a", "b"]))
    engine.settle([], "w/1", 1, lease_seconds=0.2)
    engine.settle([], "x", 1, lease_seconds=0.2)
    time.sleep(0.3)
    assert all(h.lease_expired for h in engine.held())
    assert engine.renew("w", 60) == 1  # its children's claims, not another worker's
    assert {h.job_id: h.lease_expired for h in engine.held()} == {"a": False, "b": True}


# -- checkpoints --------------------------------------------------------------------------------


def test_checkpoint_checks_the_token(engine: PgEngine) -> None:
    engine.append([frame("a")])
    (c,) = engine.settle([], "w", 1)[1]
    state = engine.save_checkpoint("a", c.token, {"step": 1}, 0.25)
    assert state.checkpoint == {"step": 1} and state.checkpoint_token == c.token
    assert engine.save_checkpoint("a", c.token, {"step": 2}, 0.1).progress == 0.25  # no going back
    with pytest.raises(StaleClaim):
        engine.save_checkpoint("a", c.token + 1, {"step": 9}, 0.9)
    with pytest.raises(JobNotFound):
        engine.save_checkpoint("nope", 1, None, None)
    got = engine.get("a")
    assert got.checkpoint == {"step": 2} and got.progress == 0.25
    # A crash: the next attempt resumes from the checkpoint, uncharged.
    engine.finish("a", c.token, lambda s, now, m: transitions.interrupted(
        s, "died", now, max_attempts=m, max_crashes=3, token=c.token))
    (c2,) = engine.settle([], "w", 1)[1]
    assert c2.state.checkpoint == {"step": 2} and c2.state.attempts == 1
    with pytest.raises(StaleClaim):
        engine.save_checkpoint("a", c.token, {"step": 0}, None)  # the old attempt
    engine.finish("a", c2.token, succeed())
    with pytest.raises(StaleClaim):
        engine.save_checkpoint("a", c2.token, {"step": 3}, None)  # finished


# -- reading ------------------------------------------------------------------------------------


def test_counts_rows_and_listing(engine: PgEngine) -> None:
    engine.append(frames(["a", "b", "c", "d"]))
    claims = engine.settle([], "w", 2)[1]
    engine.finish("a", claims[0].token, succeed())
    assert engine.counts() == {"queued": 2, "running": 1, "failed": 0, "succeeded": 1,
                               "dead": 0, "cancelled": 0}
    assert [r["job_id"] for r in engine.rows()] == ["d", "c", "b", "a"]
    assert [r["job_id"] for r in engine.rows(newest_first=False, limit=2)] == ["a", "b"]
    assert [r["job_id"] for r in engine.rows(Status.SUCCEEDED)] == ["a"]
    assert list(engine.job_ids(Status.QUEUED)) == ["c", "d"]
    assert engine.row("b")["owner"] == "w" and engine.row("a")["status"] == "succeeded"
    assert engine.ids_starting_with("c", 10) == ["c"]
    with pytest.raises(JobNotFound):
        engine.row("zz")
    with pytest.raises(JobNotFound):
        engine.get("zz")
    with pytest.raises(JobNotFound):
        engine.status("zz")


def test_ids_starting_with_treats_wildcards_as_text(engine: PgEngine) -> None:
    engine.append(frames(["a_1", "ab1", "a%2", "b"]))
    assert engine.ids_starting_with("a_", 10) == ["a_1"]
    assert engine.ids_starting_with("a", 2) == ["a%2", "a_1"]


def test_payload_is_verified_when_read(engine: PgEngine, pg_url: str) -> None:
    engine.append([frame("a")])
    from jobq.postgres.url import parse
    loc = parse(pg_url)
    with psycopg.connect(loc.conninfo, autocommit=True) as conn:
        # One byte flipped (set to 0xff, it was 0xff already one time in 256: a byte of the
        # job's creation time).
        conn.execute("UPDATE jobq_payloads SET frame = set_byte(frame, 39, get_byte(frame, 39)"
                     " # 255) WHERE queue = %s AND job_id = 'a'", (loc.queue,))
    with pytest.raises(DamagedRecord, match="job .a."):
        engine.payload_body("a")


def test_queues_in_one_database_are_apart(pg_url: str) -> None:
    base = pg_url.split("?")[0]
    one, two = open_url(base + "?queue=apart-one"), open_url(base + "?queue=apart-two")
    try:
        one.append(frames(["x", "y"]))
        two.append(frames(["x"], priority=3))
        assert one.counts()["queued"] == 2 and two.counts()["queued"] == 1
        (c,) = two.settle([], "w", 5)[1]
        two.finish("x", c.token, succeed(2))
        assert one.status("x") is Status.QUEUED and two.status("x") is Status.SUCCEEDED
        assert [cl.job_id for cl in one.settle([], "w", 5)[1]] == ["x", "y"]
        assert one.get("x").result is None and two.get("x").result == 2
    finally:
        one.close()
        two.close()


def test_signed_queue_signs_snapshots_and_checks_records(pg_url: str) -> None:
    engine = open_url(pg_url, KEY)
    try:
        engine.append([frame("a", key=KEY)])
        with pytest.raises(Exception, match="not signed"):
            engine.append([frame("b")])  # an unsigned record is refused before anything is stored
        assert not engine.exists("b")
        (c,) = engine.settle([], "w", 1)[1]
        engine.save_checkpoint("a", c.token, [1, 2], None)
        assert engine.get("a").checkpoint == [1, 2]
    finally:
        engine.close()


def test_reopen_is_the_same_queue_on_another_connection(engine: PgEngine) -> None:
    engine.append([frame("a")])
    other = engine.reopen(catch_up=False)
    try:
        assert other.location == engine.location and other.exists("a")
        assert not other.created
    finally:
        other.close()


def test_state_of_a_fresh_claim_is_its_row(engine: PgEngine) -> None:
    engine.append([frame("a", priority=4)])
    (c,) = engine.settle([], "w", 1)[1]
    assert isinstance(c.state, JobState)
    assert (c.state.job_id, c.state.task, c.state.attempts) == ("a", "jobtasks:noop", 1)
    assert c.ref is None and c.state.started_at is not None


def _sql(pg_url: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    from jobq.postgres.url import parse
    loc = parse(pg_url)
    with psycopg.connect(loc.conninfo, autocommit=True) as conn:
        cur = conn.execute(sql.replace("QUEUE", "%s"), (loc.queue, *args))
        return cur.fetchall() if cur.description else []


def test_claims_bring_their_payloads(engine: PgEngine, pg_url: str) -> None:
    """A worker loads the jobs it claimed without a query each: the claim read the frames."""
    engine.append(frames(["a", "b"]))
    claims = engine.settle([], "w", 2)[1]
    _sql(pg_url, "DELETE FROM jobq_payloads WHERE queue = QUEUE")
    assert all(job_record.decode_meta(engine.payload_body(c.job_id, c.ref))[0].job_id
               == c.job_id for c in claims)
    with pytest.raises(JobNotFound):  # once used, read from the table again
        engine.payload_body("a")


def test_finished_jobs_leave_the_hot_tables(engine: PgEngine, pg_url: str) -> None:
    engine.append([frame("a")])
    (c,) = engine.settle([], "w", 1)[1]
    engine.finish("a", c.token, fail("once"))  # a snapshot in jobq_snapshots
    assert _sql(pg_url, "SELECT count(*) FROM jobq_snapshots WHERE queue = QUEUE") == [(1,)]
    (c,) = engine.settle([], "w", 1)[1]
    engine.finish("a", c.token, succeed("ok"))
    assert _sql(pg_url, "SELECT count(*) FROM jobq_snapshots WHERE queue = QUEUE") == [(0,)]
    assert _sql(pg_url, "SELECT count(*) FROM jobq_jobs WHERE queue = QUEUE") == [(0,)]
    assert _sql(pg_url, "SELECT status FROM jobq_done WHERE queue = QUEUE") == [("succeeded",)]
    state = engine.get("a")
    assert (state.result, state.errors, state.attempts) == ("ok", ["once"], 2)


def test_a_dropped_connection_is_a_storage_error_then_reconnects(engine: PgEngine,
                                                                 pg_url: str) -> None:
    engine.append(frames(["a", "b"]))  # a batch: through the session's temporary table
    pid = engine._db.conn.info.backend_pid  # noqa: SLF001 - the session to cut
    assert _sql(pg_url, "SELECT length(QUEUE) > 0 AND pg_terminate_backend(%s)", pid) == [(True,)]
    with pytest.raises(StorageError, match=r"PostgreSQL at 127\.0\.0\.1:\d+/jobq_test_engine"):
        engine.append([frame("c")])
    engine.append([frame("c")])  # a new connection
    engine.append(frames(["d", "e"]))  # whose session makes its own temporary table
    assert list(engine.job_ids()) == ["a", "b", "c", "d", "e"]


def test_a_due_job_is_claimed_by_a_busy_worker_without_waiting(engine: PgEngine) -> None:
    """Due delayed jobs are made ready every PROMOTE_EVERY seconds, and at once when a claim
    finds too few ready ones."""
    engine.append(frames(["a", "b"]) + [frame("later", delay=0.2)])
    assert len(engine.settle([], "w", 2)[1]) == 2  # promoted, found enough
    time.sleep(0.25)
    assert [c.job_id for c in engine.settle([], "w", 1)[1]] == ["later"]


def test_a_batch_that_fails_stores_nothing_and_the_next_one_works(engine: PgEngine) -> None:
    """A failed batch is rolled back whole, and with it the session's temporary table if it
    made it: the next batch makes it again."""
    with pytest.raises(StorageError, match="cannot store jobs"):
        engine.append(frames(["ok", "bad\x00id"]))  # PostgreSQL text holds no NUL
    assert not engine.exists("ok")
    engine.append(frames(["x", "y"]))
    assert list(engine.job_ids()) == ["x", "y"]


def test_a_snapshot_that_cannot_be_loaded(engine: PgEngine, pg_url: str) -> None:
    """Read: the loading error itself; a write that needs it: a StorageError naming the job."""
    engine.append([frame("a")])
    (c,) = engine.settle([], "w", 1)[1]
    engine.save_checkpoint("a", c.token, 1, None)
    _sql(pg_url, "UPDATE jobq_snapshots SET blob = '\\x00'::bytea WHERE queue = QUEUE")
    with pytest.raises(LoadError):
        engine.get("a")
    with pytest.raises(StorageError, match="state snapshot of job 'a' cannot be loaded"):
        engine.save_checkpoint("a", c.token, 2, None)


def test_a_prefetched_claim_keeps_its_payload_across_the_next_settle(engine: PgEngine,
                                                                      pg_url: str) -> None:
    engine.append(frames(["a", "b", "c"]))
    first = engine.settle([], "w", 1, prefetch=1)[1]
    _sql(pg_url, "DELETE FROM jobq_payloads WHERE queue = QUEUE AND job_id <> 'c'")
    engine.settle([(first[0].job_id, first[0].token, succeed())], "w", 1,
                  started=[(first[1].job_id, first[1].token)])
    assert job_record.decode_meta(engine.payload_body("b"))[0].job_id == "b"
