"""A batch's records are read ahead together when it is claimed; whatever was not (damaged,
moved, far) is read alone when its job starts, and says then what is wrong with it."""

from __future__ import annotations

import pytest

from jobq import Queue
from jobq.errors import DamagedRecord
from jobq.local.log import Position

from test_damage import flip_byte_in_record


def _claim(queue: Queue, n: int) -> list:  # type: ignore[type-arg]
    return queue.engine.settle([], "test/1", 1, prefetch=n - 1)[1]


def test_a_batch_reads_the_same_bodies_as_one_job_at_a_time(queue: Queue) -> None:
    ids = queue.enqueue_many("jobtasks:add", [(i, i) for i in range(20)])
    queue.counts()
    alone = {job_id: queue.log.read(queue.store.payload_position(job_id)).body for job_id in ids}
    claims = _claim(queue, 20)
    assert sorted(c.job_id for c in claims) == sorted(ids)
    assert {c.job_id: queue.engine.payload_body(c.job_id, c.ref) for c in claims} == alone


def test_a_damaged_record_in_a_batch_is_not_read_ahead_and_fails_when_its_job_starts(
        queue: Queue) -> None:
    ids = queue.enqueue_many("jobtasks:add", [(1, 1), (2, 2), (3, 3)])
    queue.counts()
    flip_byte_in_record(queue, ids[1])
    claims = {c.job_id: c for c in _claim(queue, 3)}
    assert queue.engine.payload_body(ids[0], claims[ids[0]].ref)
    with pytest.raises(DamagedRecord, match="body checksum mismatch"):
        queue.engine.payload_body(ids[1], claims[ids[1]].ref)
    assert queue.engine.payload_body(ids[2], claims[ids[2]].ref)


def test_read_many_leaves_out_what_it_cannot_verify(queue: Queue) -> None:
    ids = queue.enqueue_many("jobtasks:add", [(1, 1), (2, 2), (3, 3)])
    queue.counts()
    flip_byte_in_record(queue, ids[0])
    at = [queue.store.payload_position(job_id) for job_id in ids]
    past_the_end = Position(at[-1].segment, at[-1].offset + 10_000)
    missing_segment = Position(at[-1].segment + 5, 0)
    frames = queue.log.read_many([at[2], past_the_end, at[0], missing_segment, at[1]])
    assert [f is not None for f in frames] == [True, False, False, False, True]
    assert frames[0].body == queue.log.read(at[2]).body
    assert frames[4].body == queue.log.read(at[1]).body


def test_a_body_read_ahead_serves_only_its_own_claim(queue: Queue) -> None:
    """Another position given for the same job (an API caller's) is read from the log."""
    ids = queue.enqueue_many("jobtasks:add", [(1, 1), (2, 2)])
    queue.counts()
    claims = _claim(queue, 2)
    other = queue.store.payload_position(ids[1])
    assert queue.engine.payload_body(claims[0].job_id, None) == \
        queue.log.read(queue.store.payload_position(claims[0].job_id)).body
    assert queue.engine.payload_body(ids[1], other) == queue.log.read(other).body
