"""The log: durable appends, segment roll-over, torn tails and damage found on open."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from jobq import Queue, Status, record
from jobq.local import log, log_append, log_read
from jobq.local.log import Damage, Entry, Position, Sealed, Tail

from jobtasks import add


def _segments(qpath: Path) -> list[Path]:
    return sorted((qpath / "log").glob("*.log"))


def _record_offsets(q: Queue) -> list[Position]:
    return [item.pos for item in q.log.scan(Position(1, 0)) if isinstance(item, Entry)]


def _enqueue_n(qpath: Path, n: int) -> list[str]:
    with Queue(qpath) as q:
        return [q.enqueue(add, i, i) for i in range(n)]


def _four_jobs(source: Path) -> tuple[list[str], Path, bytes, int]:
    """A queue of four jobs: their ids, its one segment, the segment's bytes, and the offset of
    the last record."""
    ids = _enqueue_n(source, 4)
    segment = _segments(source)[0]
    with Queue(source) as q:
        last = _record_offsets(q)[-1].offset
        end = q.log.end().offset
    data = segment.read_bytes()
    assert not any(data[end:]) and data[end - 1]  # the records, then their zero fill
    return ids, segment, data[:end], last


def _write_at_end(q: Queue, data: bytes) -> Position:
    """Write ``data`` where the log's records end, over the zero fill: what a writer killed
    part-way through its write leaves behind."""
    end = q.log.end()
    with open(q.log.path(end.segment), "r+b") as f:
        f.seek(end.offset)
        f.write(data)
    return end


def _queue_with_segment(source: Path, qpath: Path, segment: Path, data: bytes) -> None:
    """A copy of queue ``source`` (settings only) whose one log segment holds ``data``."""
    qpath.mkdir()
    (qpath / "jobq.json").write_bytes((source / "jobq.json").read_bytes())
    (qpath / "log").mkdir()
    (qpath / "log" / segment.name).write_bytes(data)


def test_append_and_scan_back(queue):
    """Records come back in order, whole and verified."""
    ids = [queue.enqueue(add, i, 1) for i in range(5)]
    entries = [i for i in queue.log.scan(Position(1, 0)) if isinstance(i, Entry)]
    assert len(entries) == 5
    assert [queue.payload(j).args for j in ids] == [(i, 1) for i in range(5)]


def test_segments_roll_over_and_scan_across(qpath):
    """Small segments roll over; scanning and the index cross segment boundaries."""
    with Queue(qpath, segment_size=1024) as q:
        ids = [q.enqueue(add, i, i) for i in range(40)]
        assert len(_segments(qpath)) > 3
        assert all(os.path.getsize(p) < 1024 + 400 for p in _segments(qpath))
        items = list(q.log.scan(Position(1, 0)))
        assert sum(isinstance(i, Entry) for i in items) == 40
        assert sum(isinstance(i, Sealed) for i in items) == len(_segments(qpath)) - 1
        assert q.counts()["queued"] == 40
        assert [q.payload(j).args for j in ids] == [(i, i) for i in range(40)]


def test_torn_tail_cut_at_every_offset_keeps_earlier_records(tmp_path):
    """A crash at any byte of the last record's write leaves every earlier record readable,
    whether the write extended the file or overwrote zero fill."""
    source = tmp_path / "source"
    ids, segment, data, last = _four_jobs(source)
    for cut in range(last, len(data)):
        qpath = tmp_path / f"cut{cut}"
        _queue_with_segment(source, qpath, segment, data[:cut] + bytes(4096 * (cut % 2)))
        with capture_logs() as events, Queue(qpath) as q:
            assert [s.job_id for s in q.jobs()] == ids[:3], f"cut={cut}"
            assert os.path.getsize(qpath / "log" / segment.name) == last
            # The queue keeps working after the cut: a new record lands right after the last good one.
            new = q.enqueue(add, 9, 9)
            assert q.state(new).status == "queued"
        if cut > last:
            # The torn record's zero bytes at its end look like zero fill: only the rest is cut.
            torn = [e for e in events if e["event"] == "log.tail_truncated"]
            kept = data[last:cut].rstrip(b"\0")
            assert len(torn) == 1 and torn[0]["bytes"] == len(kept)
            assert Path(torn[0]["saved_to"]).read_bytes() == kept


def test_flipped_byte_mid_log_is_quarantined_and_the_rest_loads(tmp_path):
    """A record that fails its checksum is copied aside and skipped; every other record stays."""
    qpath = tmp_path / "q"
    ids = _enqueue_n(qpath, 10)
    with Queue(qpath) as q:
        offsets = _record_offsets(q)
    segment = _segments(qpath)[0]
    shutil_copy = segment.read_bytes()
    for victim in (0, 4, 9):
        for where in ("header", "body"):
            case = tmp_path / f"v{victim}{where}"
            case.mkdir()
            (case / "jobq.json").write_bytes((qpath / "jobq.json").read_bytes())
            (case / "log").mkdir()
            data = bytearray(shutil_copy)
            start = offsets[victim].offset
            data[start + (5 if where == "header" else 60)] ^= 0xFF
            (case / "log" / segment.name).write_bytes(bytes(data))
            with capture_logs() as events, Queue(case) as q:
                expected = ids[:victim] + ids[victim + 1:]
                if victim == 9:
                    expected = ids[:9]  # damage at the very end is a torn tail: cut, not skipped
                assert [s.job_id for s in q.jobs()] == expected, (victim, where)
                if victim != 9:
                    bad = q.store.quarantined()
                    assert len(bad) == 1 and bad[0]["offset"] == start
                    assert Path(bad[0]["saved_to"]).read_bytes() == bytes(
                        data[start:offsets[victim + 1].offset])
                    assert any(e["event"] == "log.record_quarantined" for e in events)


def test_garbage_from_a_crashed_writer_between_records_is_skipped(tmp_path):
    """Half a record followed by whole ones (a writer killed mid-write) costs only that half."""
    qpath = tmp_path / "q"
    first = _enqueue_n(qpath, 3)
    segment = _segments(qpath)[0]
    whole = segment.read_bytes()
    with Queue(qpath) as writer:  # a producer that is already running when another one dies
        offsets = _record_offsets(writer)
        half = whole[offsets[1].offset:offsets[1].offset + 30]
        torn = _write_at_end(writer, half)  # the dead producer's partial write
        later = writer.enqueue(add, 7, 7)
    with capture_logs() as events, Queue(qpath) as q:
        assert [s.job_id for s in q.jobs()] == [*first, later]
        items = list(q.log.scan(offsets[2]))
        assert [type(i).__name__ for i in items] == ["Entry", "Damage", "Entry"]
        damage = items[1]
        # The new record starts after the last non-zero byte of the torn one: none overwritten.
        assert isinstance(damage, Damage) and damage.pos == torn
        assert damage.end - torn.offset == len(half.rstrip(b"\0"))
        assert [e["event"] for e in events] == ["log.record_quarantined"]


def test_incomplete_tail_is_reported_not_cut_by_a_plain_scan(queue, qpath):
    """scan() reports an incomplete tail without touching it: it may be a write in progress."""
    queue.enqueue(add, 1, 2)
    segment = _segments(qpath)[0]
    end = _write_at_end(queue, b"JQ\x01")
    before = segment.read_bytes()
    items = list(queue.log.scan(Position(1, 0)))
    assert isinstance(items[-1], Tail) and items[-1].pos == end
    assert segment.read_bytes() == before
    assert queue.log.repair_tail(items[-1].pos) is True
    assert segment.stat().st_size == end.offset  # the torn bytes cut, with the zero fill


def test_index_offset_beyond_the_log_fails_clearly(qpath):
    """A log shorter than the offset the index covers is an error that names the file."""
    _enqueue_n(qpath, 3)
    with Queue(qpath) as q:
        assert q.counts()["queued"] == 3  # the index now covers all three records
    segment = _segments(qpath)[0]
    os.truncate(segment, 10)
    with pytest.raises(Exception, match="truncated or replaced") as info:
        Queue(qpath)
    assert str(segment) in str(info.value)


def test_threads_appending_across_rollovers_lose_nothing(qpath):
    """Threads that enqueue while others roll segments over all get durable, readable records."""
    import threading
    with Queue(qpath, segment_size=2048) as q:
        ids: list[str] = []
        errors: list[BaseException] = []

        def produce(n: int) -> None:
            try:
                mine = [q.enqueue(add, n, i) for i in range(150)]
                ids.extend(mine)
            except BaseException as exc:  # reported below; a thread cannot fail the test itself
                errors.append(exc)

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == [] and len(ids) == 900
        assert len(_segments(qpath)) > 20
        assert sorted(s.job_id for s in q.jobs()) == sorted(ids)
        assert q.store.quarantined() == []


def test_seal_starts_a_new_segment_and_makes_the_old_one_read_only(queue, qpath):
    """Only the newest, non-empty segment is sealed; the next append goes to the new one."""
    first = queue.enqueue(add, 1, 2)
    assert not queue.log.seal(2)  # not a segment that exists
    assert queue.log.seal(1)
    assert [p.name for p in _segments(qpath)] == ["000000000001.log", "000000000002.log"]
    assert not os.stat(queue.log.path(1)).st_mode & 0o222
    assert not queue.log.seal(2)  # empty: nothing to seal
    second = queue.enqueue(add, 3, 4)
    assert [queue.payload(j).args for j in (first, second)] == [(1, 2), (3, 4)]
    assert queue.store.payload_position(second).segment == 2


def test_a_writer_idle_on_a_sealed_segment_never_writes_to_it_once_the_next_is_gone(qpath):
    """A producer that appended to segment 1 before it was sealed learns of the seal from the
    file itself: the segment after it may have been compacted away (a record written to segment 1
    then would never be indexed, as the index has passed it)."""
    with Queue(qpath) as idle, Queue(qpath) as busy:
        idle.enqueue(add, 0, 0)  # idle's append handle now sits on segment 1
        assert busy.log.seal(1)
        busy.enqueue(add, 1, 1)
        assert busy.log.seal(2)
        os.unlink(busy.log.path(2))  # as compaction deletes a sealed segment once purged
        size = os.path.getsize(idle.log.path(1))
        idle.enqueue(add, 2, 2)
        assert os.path.getsize(idle.log.path(1)) == size
        assert os.path.getsize(idle.log.path(3)) > 0


def test_seal_stragglers_finishes_a_seal_that_died_before_the_read_only_step(queue, qpath):
    """The new segment exists but the sealed one is still writable: made read-only, and only it."""
    queue.enqueue(add, 1, 2)
    open(queue.log.path(2), "wb").close()  # a seal killed between its two steps
    queue.log.seal_stragglers()
    assert not os.stat(queue.log.path(1)).st_mode & 0o222
    assert os.stat(queue.log.path(2)).st_mode & 0o200  # the newest stays writable


def test_a_workers_claim_cuts_a_torn_tail_and_claims_the_records_before_it(tmp_path):
    """A worker's queue does not index on open: its claims index the backlog in their own
    transactions, and one that meets a torn tail cuts it (copied aside) once the claim commits."""
    source = tmp_path / "source"
    ids, segment, data, last = _four_jobs(source)
    qpath = tmp_path / "q"
    _queue_with_segment(source, qpath, segment, data[:last + 7])  # the 4th record cut short
    with capture_logs() as events, Queue._for_worker(qpath) as q:
        _, claims = q.store.settle([], "w/1", 1, prefetch=9)
        assert [c.job_id for c in claims] == ids[:3]
        assert os.path.getsize(qpath / "log" / segment.name) == last
        new = q.enqueue(add, 9, 9)  # lands right after the last whole record
        _, claims = q.store.settle([], "w/1", 1)
        assert [c.job_id for c in claims] == [new]
    torn = [e for e in events if e["event"] == "log.tail_truncated"]
    assert len(torn) == 1
    assert Path(torn[0]["saved_to"]).read_bytes() == data[last:last + 7].rstrip(b"\0")


@pytest.mark.parametrize("records", [0, 1, 511, 512, 513, 20_000, 300_000])
def test_data_end_is_one_past_the_last_non_zero_byte(tmp_path, records):
    """Where the records end, whatever the lengths of the zero runs inside and after them."""
    inner = os.urandom(records // 2) + bytes(records // 3)  # zeros inside a record are data
    data = (inner + os.urandom(max(0, records - len(inner) - 1)) + b"\x01")[:records]
    path = tmp_path / "segment"
    for fill in (0, 1, 511, 512, 513, 16_384, 16_385, log.RESERVE, log.RESERVE + 1, 300_000):
        path.write_bytes(data + bytes(fill))
        fd = os.open(path, os.O_RDONLY)
        try:
            assert log_read._data_end(fd, len(data) + fill) == len(data), fill
        finally:
            os.close(fd)


def test_records_overwrite_the_zero_fill_and_a_seal_drops_it(queue, qpath):
    """A write that extends a segment adds RESERVE zero bytes; the next records overwrite them,
    scans and has_more() stop where the records end, and a sealed segment loses its fill."""
    segment = qpath / "log" / "000000000001.log"
    queue.enqueue(add, 1, 2)
    end = queue.log.end()
    assert segment.stat().st_size == end.offset + log.RESERVE
    assert not queue.log.has_more(end) and queue.log.has_more(Position(1, end.offset - 1))
    queue.enqueue(add, 3, 4)
    assert segment.stat().st_size == end.offset + log.RESERVE  # overwritten, not grown
    assert queue.log.has_more(end) and queue.log.end().offset > end.offset
    ids = queue.enqueue_many(add, [(i, "x" * 1000) for i in range(100)])  # past the fill
    assert segment.stat().st_size == queue.log.end().offset + log.RESERVE
    assert [type(i) for i in queue.log.scan(Position(1, 0))] == [Entry] * 102
    records = queue.log.end().offset
    assert queue.log.seal(1)
    assert segment.stat().st_size == records
    assert [queue.payload(j).args for j in ids[-1:]] == [(99, "x" * 1000)]


def test_a_writer_never_writes_before_bytes_past_the_end_of_the_records(tmp_path):
    """Bytes after a run of zero fill (a power cut that kept a later page of an unfinished
    write, or a writer of format 1 appending after the fill) are never written over, nor
    before: an index may already have covered the zero run as damage, and a record written
    there would never be read. Every write goes after them, and every record stays."""
    with Queue(tmp_path / "elsewhere") as other:
        foreign = other.enqueue(add, 7, 7)
        frame = (tmp_path / "elsewhere" / "log" / "000000000001.log").read_bytes()
        frame = frame[:other.log.end().offset]
    qpath = tmp_path / "q"
    with Queue(qpath) as q:
        first = q.enqueue(add, 1, 1)
        segment = Path(q.log.path(1))
        at = segment.stat().st_size
        with open(segment, "ab") as f:
            f.write(frame)  # after the zero fill
        with Queue(qpath) as reader:  # indexes the zero run as damage, and the frame after it
            assert reader.state(foreign).status is Status.QUEUED
        small = q.enqueue(add, 2, 2)  # would fit in the zero run: must not go there
        big = q.enqueue_many(add, [(i, "x" * 1000) for i in range(100)])
        assert segment.read_bytes()[at:at + len(frame)] == frame
        assert q.state(small).status is Status.QUEUED
    with Queue(qpath) as q:
        assert [s.job_id for s in q.jobs()] == [first, foreign, small, *big]
        gaps = q.store.quarantined()
        assert len(gaps) == 1 and gaps[0]["end_offset"] == at
        assert not any(Path(gaps[0]["saved_to"]).read_bytes())  # only zero fill set aside


@pytest.mark.parametrize("wrong", ["past-the-end", "inside-a-record", "other-segment",
                                   "size-changed", "no-frame-before"])
def test_a_wrong_hint_in_the_lock_file_is_checked_not_trusted(queue, qpath, wrong):
    """append.lock says where the last write ended, so that writers need not look at the
    segment. A wrong one (left by a power cut, or a corrupted lock file) is checked, not trusted:
    the frame header before it, its size and the zeros after it. The writer then looks at the
    segment and writes right after the records, overwriting nothing."""
    first = queue.enqueue(add, 1, 1)
    zeros = queue.enqueue(add, bytes(3000), b"")  # a record with a long run of zeros inside
    end = queue.log.end()
    start = _record_offsets(queue)[-1].offset
    segment = qpath / "log" / "000000000001.log"
    before = segment.read_bytes()[:end.offset]
    size = segment.stat().st_size
    hints = {
        "past-the-end": (1, start, end.offset + 5000, size),
        # just after a non-zero byte of the record, before 3000 of its zero bytes
        "inside-a-record": (1, start, before.index(bytes(3000), start), size),
        "other-segment": (8, start, end.offset, size),
        "size-changed": (1, start, end.offset, size + 1),
        "no-frame-before": (1, start + 1, end.offset, size),
    }
    lock = qpath / "log" / "append.lock"
    shared = bytearray(lock.read_bytes())
    shared[8:40] = log_append._HINT.pack(*hints[wrong])
    lock.write_bytes(bytes(shared))
    third = queue.enqueue(add, 3, 3)
    assert _record_offsets(queue)[-1] == end
    assert segment.read_bytes()[:end.offset] == before
    assert [s.job_id for s in queue.jobs()] == [first, zeros, third]
    assert queue.payload(zeros).args == (bytes(3000), b"")
    assert queue.store.quarantined() == []


def test_the_hint_is_written_by_every_append_and_checked_by_the_next(queue, qpath):
    """After any write, the hint names the last frame exactly, so the next writer in another
    process takes the fast path (its checks pass) and writes right after it."""
    queue.enqueue(add, 1, 1)
    queue.enqueue_many(add, [(i, i) for i in range(3)])
    end = queue.log.end()
    last = _record_offsets(queue)[-1].offset
    shared = (qpath / "log" / "append.lock").read_bytes()
    size = (qpath / "log" / "000000000001.log").stat().st_size
    assert log_append._HINT.unpack(shared[8:40]) == (1, last, end.offset, size)


def test_zero_bytes_between_records_are_named_as_such(tmp_path):
    """A run of zeros between records (a power cut that lost a page, a writer of format 1 that
    appended after the fill) is quarantined with a reason an operator can read."""
    with Queue(tmp_path / "elsewhere") as other:
        other.enqueue(add, 7, 7)
        frame = (tmp_path / "elsewhere" / "log" / "000000000001.log").read_bytes()
        frame = frame[:other.log.end().offset]
    qpath = tmp_path / "q"
    with Queue(qpath) as q:
        q.enqueue(add, 1, 1)
        with open(q.log.path(1), "ab") as f:
            f.write(frame)  # after the zero fill
    with Queue(qpath) as q:
        assert [g["reason"] for g in q.store.quarantined()] == [
            "zero bytes where a record should start"]


def test_a_scan_yields_what_decode_makes_of_each_record_past_windows_and_old_keys(tmp_path):
    """Each record a scan yields is what record.decode makes of the segment's bytes at its
    offset, signer included: records an old key signed among the current key's, spread over
    more than one read of the segment, and a record with a flipped byte among them is damage."""
    qpath, old, new = tmp_path / "q", "key-A-0123456789abcdef", "key-B-0123456789abcdef"
    with Queue(qpath, secret_key=old) as q:
        for i in range(150):
            q.enqueue(add, i, "x" * 500)
    with Queue(qpath, secret_key=new, old_secret_keys=[old]) as q:
        for i in range(150):
            q.enqueue(add, i, "y" * 500)
        offsets = _record_offsets(q)
    segment = _segments(qpath)[0]
    data = bytearray(segment.read_bytes())
    assert len(offsets) == 300 and offsets[-1].offset > 2 * log_read.FIRST_CHUNK
    victim = offsets[140].offset
    data[victim + 100] ^= 0x01
    segment.write_bytes(bytes(data))
    with Queue(qpath, secret_key=new, old_secret_keys=[old]) as q:
        items = list(q.log.scan(Position(1, 0)))
        runs = [i for i in q.log.scan_runs(Position(1, 0)) if isinstance(i, log.Run)]
        max_body = q.log._max_body
    keys = dict(key=new.encode(), max_body=max_body, old_keys=(old.encode(),))
    entries = [i for i in items if isinstance(i, Entry)]
    assert [i.pos for i in items if not isinstance(i, Entry)] == [Position(1, victim)]
    assert [e.pos for e in entries] == offsets[:140] + offsets[141:]
    for e in entries:
        assert e.frame == record.decode(bytes(data), e.pos.offset, **keys)
    assert [e.frame.signer for e in entries] == [1] * 149 + [0] * 150
    assert len(runs) > 2 and sum(len(r.spans) for r in runs) == 299
