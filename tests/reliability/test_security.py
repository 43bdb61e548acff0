"""A queue directory is a trust boundary: forged records must not run code where defences are on.

Each test forges what an attacker who can write the directory (but does not know the secret key)
could write: a job record whose pickled payload calls ``os.system``. A control test shows the
forgery is real, i.e. that it does run its command when no defence is on.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from jobq import Queue, Status, job_record, record
from jobq.errors import UnpicklingForbidden
from jobq.payload import JobPayload
from workers import Worker

KEY = "a secret key that is long enough"


class _Shell:
    """Pickles as a call to os.system(command): what a hostile record would carry."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _forged_body(job_id: str, marker: Path) -> bytes:
    """A job record body whose payload runs ``touch marker`` when unpickled."""
    meta = JobPayload(job_id=job_id, task="jobtasks:echo", max_attempts=1)
    payload = pickle.dumps(JobPayload(job_id=job_id, task="jobtasks:echo",
                                      args=(_Shell(f"touch {marker}"),), max_attempts=1), 5)
    return job_record.encode(meta, payload)


def _append_raw(qpath: Path, frame: bytes) -> None:
    """Write ``frame`` where the records of the newest segment end, over the zero fill after
    them, as a producer would (a forger may write anywhere, but there it is read soonest)."""
    segments = sorted((qpath / "log").glob("*.log"))
    segment = segments[-1] if segments else qpath / "log" / "000000000001.log"
    segment.touch()
    with open(segment, "r+b") as f:
        f.seek(len(f.read().rstrip(b"\0")))
        f.write(frame)


def test_control_a_forged_record_runs_code_when_no_defence_is_on(qpath, tmp_path):
    """Without a key or an allow-list, a forged record runs its command in the worker (the risk)."""
    marker = tmp_path / "pwned"
    with Queue(qpath) as q:
        q.enqueue("jobtasks:add", 1, 1)
        _append_raw(qpath, record.encode(record.KIND_JOB, _forged_body("forged", marker)))
        Worker(q).run(burst=True)
    assert marker.exists()


def test_signed_queue_quarantines_a_forged_record_and_never_unpickles_it(qpath, tmp_path):
    """With a secret key, a record without a valid signature is quarantined and never loaded."""
    marker = tmp_path / "pwned"
    with Queue(qpath, secret_key=KEY) as q:
        good = q.enqueue("jobtasks:add", 2, 3)
    for forged in (record.encode(record.KIND_JOB, _forged_body("unsigned", marker)),
                   record.encode(record.KIND_JOB, _forged_body("wrong-key", marker),
                                 b"not the queue's key at all!")):
        _append_raw(qpath, forged)
    with capture_logs() as events, Queue(qpath, secret_key=KEY) as q:
        later = q.enqueue("jobtasks:add", 4, 5)  # the queue keeps working after the forgeries
        Worker(q).run(burst=True)
        assert q.result(good) == 5 and q.result(later) == 9
        reasons = [r["reason"] for r in q.store.quarantined()]
        assert q.counts()["succeeded"] == 2 and sum(q.counts().values()) == 2
    assert not marker.exists()
    # The forgeries end the log and no whole record follows them, so recovery sees both as one
    # torn tail: cut after being copied aside, with both reasons in the event. Never unpickled.
    reasons += [e["reason"] for e in events if e["event"] == "log.tail_truncated"]
    assert len(reasons) == 1, reasons
    assert "not signed" in reasons[0] and "signature mismatch" in reasons[0]
    assert len(list((qpath / "quarantine").iterdir())) == 1


def test_tampered_signed_record_is_never_unpickled(qpath, tmp_path):
    """Changing one byte of a signed job (even one whose own args are harmless) quarantines it."""
    with Queue(qpath, secret_key=KEY) as q:
        jid = q.enqueue("jobtasks:add", 2, 3)
        other = q.enqueue("jobtasks:add", 1, 1)
    segment = sorted((qpath / "log").glob("*.log"))[0]
    data = bytearray(segment.read_bytes())
    data[record.HEADER_SIZE + record.MAC_SIZE + 40] ^= 0x01  # a byte of the first body
    segment.write_bytes(bytes(data))
    with Queue(qpath, secret_key=KEY) as q:
        assert [s.job_id for s in q.jobs()] == [other]
        assert "checksum" in q.store.quarantined()[0]["reason"]
    del jid


def test_allow_list_refuses_a_forged_record_in_the_worker(qpath, tmp_path):
    """With allowed_modules, the worker refuses the forged payload: the job dies, nothing runs."""
    marker = tmp_path / "pwned"
    with Queue(qpath, allowed_modules=["jobtasks"]) as q:
        good = q.enqueue("jobtasks:add", 2, 3)
        _append_raw(qpath, record.encode(record.KIND_JOB, _forged_body("forged", marker)))
        Worker(q).run(burst=True)
        assert q.result(good) == 5
        forged = q.state("forged")
    assert not marker.exists()
    assert forged.status is Status.DEAD
    assert "refused to load posix.system" in forged.error and "allowed_modules" in forged.error


def test_allow_list_also_guards_payload_reads(qpath, tmp_path):
    """Queue.payload() of a forged job raises UnpicklingForbidden under an allow-list."""
    marker = tmp_path / "pwned"
    with Queue(qpath, allowed_modules=["jobtasks"]) as q:
        _append_raw(qpath, record.encode(record.KIND_JOB, _forged_body("forged", marker)))
        q.counts()
        with pytest.raises(UnpicklingForbidden):
            q.payload("forged")
    assert not marker.exists()


def test_listing_and_counting_never_unpickle_arguments(qpath, tmp_path):
    """Indexing, counts, list and status read no pickle: a forged record runs nothing there."""
    marker = tmp_path / "pwned"
    with Queue(qpath) as q:
        _append_raw(qpath, record.encode(record.KIND_JOB, _forged_body("forged", marker)))
        assert q.counts()["queued"] == 1
        assert [r["job_id"] for r in q.store.rows()] == ["forged"]
        assert q.state("forged").status is Status.QUEUED  # the snapshot holds no arguments
    assert not marker.exists()


def test_secret_key_signs_state_snapshots_too(qpath):
    """Snapshots in the state store carry a signature and fail loudly when altered; so do the
    markers of new jobs, which are never unpickled by the queue but are checked by verify."""
    from jobq.errors import CorruptRecord
    from jobq.maintenance import verify
    with Queue(qpath, secret_key=KEY) as q:
        jid, fresh = q.enqueue("jobtasks:add", 1, 1), q.enqueue("jobtasks:add", 2, 2)
        q.cancel(jid)  # a transition that writes a whole snapshot
        for job_id in (jid, fresh):
            raw = q.store.shelf.dict[job_id.encode()]
            assert raw.startswith(b"JQS1")
            q.store.shelf.dict[job_id.encode()] = raw[:-1] + bytes([raw[-1] ^ 1])
        with pytest.raises(CorruptRecord, match="signature"):
            q.state(jid)
        assert q.state(fresh).status is Status.QUEUED  # its row is the state; marker unread
        report = verify(q)
        assert report.snapshots_failed == 2 and not report.ok


def test_oversized_record_in_the_log_is_skipped_with_an_error(qpath):
    """A record larger than the queue's max_record_size is quarantined on read, never loaded."""
    with Queue(qpath, max_record_size=4096) as q:
        before = q.enqueue("jobtasks:add", 1, 1)
        meta = JobPayload(job_id="huge", task="jobtasks:add")
        body = job_record.encode(meta, pickle.dumps(JobPayload(job_id="huge", task="jobtasks:add",
                                                               args=("x" * 10_000,)), 5))
        _append_raw(qpath, record.encode(record.KIND_JOB, body))
        after = q.enqueue("jobtasks:add", 2, 2)
    with capture_logs() as events, Queue(qpath) as q:
        assert [s.job_id for s in q.jobs()] == [before, after]
        assert "exceeds the limit of 4096" in q.store.quarantined()[0]["reason"]
    assert any(e["event"] == "log.record_quarantined" for e in events)


def test_a_short_key_is_refused_naming_where_it_came_from(qpath, monkeypatch):
    """The message names what the user set: JOBQ_SECRET_KEY, or secret_key, and the minimum."""
    from jobq.errors import ConfigError

    monkeypatch.setenv("JOBQ_SECRET_KEY", "too short")
    with pytest.raises(ConfigError,
                       match=r"\$JOBQ_SECRET_KEY is 9 bytes; it must be at least 16 bytes"):
        Queue(qpath)
    monkeypatch.delenv("JOBQ_SECRET_KEY")
    with pytest.raises(ConfigError, match=r"^secret_key is 5 bytes; it must be at least 16 bytes"):
        Queue(qpath, secret_key="short")
    assert not qpath.exists()  # refused before anything was created
