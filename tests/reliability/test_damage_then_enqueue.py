"""After any damage to the log and its repair, every later acknowledged enqueue is a job (issue 14).

A record must never be written where the index will not read it. The damage is done to the
newest segment while a producer has it open (its next append takes the fast path) and before
a reader repairs it; then both the old producer and a new one enqueue, and every job they were
given an id for must be found by ``state``, listed by ``jobs`` and run exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from jobq import Queue, record
from jobq.state import Status
from jobq.testing import run_burst

import jobtasks

Damager = Callable[[bytearray, int], bytes]  # (segment bytes, records' end) -> new segment bytes


def _frame(body: bytes = b"a body that is not a job.") -> bytes:
    return record.encode(record.KIND_JOB, body)


def _flip(at: int) -> Damager:
    def damage(data: bytearray, end: int) -> bytes:
        data[at % end] ^= 0x5A  # 0x2E (a frame's last byte, a pickle's STOP) stays non-zero
        return bytes(data)
    return damage


def _zeros(at: int, n: int) -> Damager:
    def damage(data: bytearray, end: int) -> bytes:
        at_ = at % end
        data[at_:at_ + n] = bytes(len(data[at_:at_ + n]))
        return bytes(data)
    return damage


def _torn(cut: int) -> Damager:
    """A producer killed mid-write: the first ``cut`` bytes of a frame where the records end."""
    def damage(data: bytearray, end: int) -> bytes:
        frame = _frame()
        data[end:end + cut] = frame[:cut % len(frame)]
        return bytes(data)
    return damage


def _appended(tail: bytes) -> Damager:
    """Bytes appended after the zero fill (O_APPEND): a format-1 writer, a copy tool, a forger."""
    def damage(data: bytearray, end: int) -> bytes:
        return bytes(data) + tail
    return damage


def _later_page(data: bytearray, end: int) -> bytes:
    """A power cut that kept a later page of a large write and lost the one before it."""
    frame = _frame(b"x" * 9000 + b".")
    page = ((end // 4096) + 1) * 4096
    data[end:page + len(frame)] = bytes(page - end) + frame
    data[page:page + 4096] = frame[page - end:page - end + 4096]
    return bytes(data)


def _bad_crc() -> bytes:
    frame = bytearray(_frame())
    frame[-3] ^= 0xFF
    return bytes(frame)


DAMAGE: dict[str, Damager] = {
    "foreign-bad-crc-after-fill": _appended(_bad_crc()),  # the reproduction in issue 14
    "foreign-good-after-fill": _appended(_frame()),
    "foreign-two-bad-after-fill": _appended(_bad_crc() + _bad_crc()),
    "garbage-after-fill": _appended(b"\x07" * 100),
    "later-page-kept": _later_page,
    **{f"torn-{cut}": _torn(cut) for cut in range(1, len(_frame()))},
    **{f"flip-{at}": _flip(at) for at in range(0, 1300, 11)},
    **{f"flip-end-{back}": _flip(-back) for back in range(1, 40)},
    **{f"zeros-{at}-{n}": _zeros(at, n) for at in range(0, 1300, 97) for n in (1, 20, 400)},
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_every_enqueue_after_damage_and_repair_is_found_listed_and_run_once(tmp_path, damage):
    qpath = tmp_path / "q"
    producer = Queue(qpath)
    try:
        before = [producer.enqueue(jobtasks.record_call, f"before-{i}") for i in range(4)]
        segment = Path(producer.log.path(1))
        data = bytearray(segment.read_bytes())
        end = producer.log.end().offset
        segment.write_bytes(DAMAGE[damage](data, end))

        Queue(qpath).close()  # a reader indexes the damage and cuts a torn tail
        after = [producer.enqueue(jobtasks.record_call, "old-0")]  # the producer's fast path
        after += producer.enqueue_many(jobtasks.record_call, [("old-batch-1",), ("old-batch-2",)])
    finally:
        producer.close()
    with Queue(qpath) as new:
        after.append(new.enqueue(jobtasks.record_call, "new-3"))
    with Queue(qpath) as q:
        after.append(q.enqueue(jobtasks.record_call, "new-4"))
        listed = [s.job_id for s in q.jobs()]
        for job_id in after:
            assert q.state(job_id).status is Status.QUEUED
            assert job_id in listed
        assert len(set(listed)) == len(listed)
        jobtasks.CALLS.clear()
        run_burst(q)
        calls = Counter(jobtasks.CALLS)
        for job_id, tag in zip(after, ("old-0", "old-batch-1", "old-batch-2", "new-3", "new-4")):
            assert q.state(job_id).status is Status.SUCCEEDED
            assert calls[tag] == 1, (tag, calls)
        # Jobs from before the damage either survived whole or were set aside, never run twice.
        assert all(calls[f"before-{i}"] <= 1 for i in range(len(before)))


def test_the_reproduction_an_enqueue_after_a_cut_tail_behind_zero_fill_is_a_job(tmp_path):
    """Issue 14's steps: one record and its zero fill, a bad record appended past the fill, a
    new queue opens (the zeros and the bad record are the torn tail), then an enqueue: it is a
    job, not a record written where the index has already passed."""
    qpath = tmp_path / "q"
    with Queue(qpath) as q:
        first = q.enqueue_call("os.path:join", args=("a",))
        segment = Path(q.log.path(1))
    with open(segment, "ab") as f:
        f.write(_bad_crc())
    with Queue(qpath) as q2:
        jid = q2.enqueue_call("os.path:join", args=("c",))
        assert q2.state(jid).status is Status.QUEUED
        assert [s.job_id for s in q2.jobs()] == [first, jid]
