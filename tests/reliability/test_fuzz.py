"""Fuzzing the readers: random and mutated bytes raise only jobq's errors, and never hang.

Seeds are fixed so a failure reproduces; the ids name them (seed=17). The mutated-log cases also
check what must survive: every record outside the mutated range is still indexed.
"""

from __future__ import annotations

import pickle
import random
import shutil
from pathlib import Path

import pytest

from jobq import Queue, job_record, pickling, record
from jobq.errors import CorruptRecord, JobqError
from jobq.local.log import Damage, Entry, Log, Position, Sealed, Tail

SEEDS = range(40)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed={s}")
def test_decode_of_random_bytes_only_reports_damage_or_incompleteness(seed):
    """record.decode on random buffers raises Damaged or Incomplete, nothing else."""
    rng = random.Random(seed)
    for _ in range(500):
        buf = rng.randbytes(rng.randrange(0, 200))
        if rng.random() < 0.3:  # start some with the magic, to get past the first check
            buf = record.MAGIC + buf
        try:
            record.decode(buf, 0, key=rng.choice([None, b"k" * 32]), max_body=1 << 16)
        except (record.Damaged, record.Incomplete):
            pass


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed={s}")
def test_scan_of_a_random_segment_terminates_with_damage_or_a_tail(tmp_path, seed):
    """A segment of random bytes scans to an end, reporting damage or a tail and no records."""
    rng = random.Random(seed)
    (tmp_path / "log").mkdir()
    size = rng.choice([1, 19, 20, 100, 5000, 70_000, (1 << 20) + 333])
    (tmp_path / "log" / "000000000001.log").write_bytes(rng.randbytes(size))
    log = Log(str(tmp_path / "log"), key=None, max_body=1 << 20, segment_size=1 << 30,
              quarantine_dir=str(tmp_path))
    items = list(log.scan(Position(1, 0)))
    log.close()
    assert items and all(isinstance(i, (Damage, Tail)) for i in items)
    assert not any(isinstance(i, (Entry, Sealed)) for i in items)


def _mutate(data: bytes, rng: random.Random) -> tuple[bytes, int, int, str]:
    """One mutation; returns the new bytes and the original range [start, end) it touched."""
    start = rng.randrange(0, len(data))
    length = rng.randrange(1, 60)
    kind = rng.choice(["flip", "zero", "insert", "delete", "duplicate", "truncate"])
    end = min(len(data), start + length)
    if kind == "flip":
        mutated = bytearray(data)
        for i in range(start, end):
            if rng.random() < 0.3:
                mutated[i] ^= 1 << rng.randrange(8)
        mutated[start] ^= 0xFF  # at least one byte changes
        return bytes(mutated), start, end, kind
    if kind == "zero":
        return data[:start] + bytes(end - start) + data[end:], start, end, kind
    if kind == "insert":
        return data[:start] + rng.randbytes(length) + data[start:], start, start, kind
    if kind == "delete":
        return data[:start] + data[end:], start, end, kind
    if kind == "duplicate":
        src = rng.randrange(0, len(data))
        chunk = data[src:src + length]
        return data[:start] + chunk + data[start:], start, start, kind
    return data[:start], start, len(data), kind


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, list[tuple[str, int, int]]]:
    """A valid queue of 60 jobs and (job id, start, end) of each record in its one segment."""
    qpath = tmp_path_factory.mktemp("pristine") / "q"
    with Queue(qpath, fsync=False) as q:
        ids = q.enqueue_many("jobtasks:add", [(i, i) for i in range(60)])
        spans = [(job_record.decode_meta(i.frame.body)[0].job_id, i.pos.offset,
                  i.pos.offset + i.frame.size)
                 for i in q.log.scan(Position(1, 0)) if isinstance(i, Entry)]
    assert [s[0] for s in spans] == ids
    return qpath, spans


@pytest.mark.parametrize("seed", range(120), ids=lambda s: f"seed={s}")
def test_mutated_log_keeps_every_record_outside_the_mutation(pristine, tmp_path, seed):
    """Open a queue whose log was mutated: only jobq errors, and no untouched record is lost."""
    source, spans = pristine
    rng = random.Random(seed)
    qpath = tmp_path / "q"
    shutil.copytree(source, qpath, ignore=shutil.ignore_patterns("state.sqlite3*"))
    segment = qpath / "log" / "000000000001.log"
    data, start, end, kind = _mutate(segment.read_bytes(), rng)
    segment.write_bytes(data)
    try:
        with Queue(qpath, fsync=False) as q:
            indexed = {s["job_id"] for s in q.store.rows(limit=1000)}
    except JobqError:
        pytest.fail(f"opening a mutated log ({kind} at {start}) must recover, not raise")
    untouched = {jid for jid, a, b in spans if b <= start or (a >= end and kind != "truncate")}
    assert untouched <= indexed, (kind, start, end, sorted(untouched - indexed))
    assert indexed <= {jid for jid, _, _ in spans}  # no job appears that was never enqueued


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed={s}")
def test_unpickling_mutated_payloads_raises_only_jobq_errors(seed):
    """Mutated payload pickles load, or raise a JobqError; under an allow-list nothing else runs."""
    rng = random.Random(seed)
    from jobq.payload import JobPayload
    good = pickle.dumps(JobPayload(job_id="j", task="m:f", args=(1, "x", [2.0]), kwargs={"k": b"v"}),
                        5)
    rules = pickling.PickleRules.build(allowed_modules=["jobtasks"])
    for _ in range(200):
        data = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            pickling.loads(bytes(data), rules)
        except JobqError:
            pass


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed={s}")
def test_record_header_of_random_bodies_is_corrupt_or_valid(seed):
    """decode_meta on random bodies returns fields or raises CorruptRecord, nothing else."""
    rng = random.Random(seed)
    for _ in range(300):
        body = rng.randbytes(rng.randrange(0, 80))
        try:
            job_record.decode_meta(body)
        except CorruptRecord:
            pass


def test_memo_bomb_is_refused_under_an_allow_list():
    """A pickle asking for memo slot 2**32-1 is refused before the unpickler allocates for it."""
    import struct
    from jobq.errors import UnpicklingForbidden
    bomb = b"\x80\x05" + b"N" + b"r" + struct.pack("<I", 0xFFFFFFFF) + b"."  # None; LONG_BINPUT
    with pytest.raises(UnpicklingForbidden, match="memo slot 4294967295"):
        pickling.loads(bomb, pickling.PickleRules.build(allowed_modules=["jobtasks"]))
