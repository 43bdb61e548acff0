"""Rotating a queue's secret key, on every engine (the ``location`` fixture): the new key signs,
old keys verify until what they signed is re-signed (``jobq rekey``), and a process that missed
the rotation stops instead of taking the new key's records for damage. What is engine-specific
(jobq.json, log segments; the queue's row in PostgreSQL) is in tests/test_keys.py and
tests/postgres/test_keys.py."""

from __future__ import annotations

import json
import subprocess

import pytest

from jobq import Queue, Status, transitions
from jobq.errors import InvalidArgument, OldKeyNeeded, WrongSecretKey
from jobq.execution import run_claim
from jobq.maintenance import rekey
from jobq.testing import run_burst

from conftest import TESTS_DIR, child_env, jobq_command

A = "key-A-0123456789abcdef"
B = "key-B-0123456789abcdef"
C = "key-C-0123456789abcdef"
ADD, COUNT = "jobtasks:add", "jobtasks:count_with_checkpoints"


def signed_with_a(location: str) -> list[str]:
    """Six jobs enqueued with key A; the last (counting to 5) saved checkpoint 3 and was given
    back, so a snapshot signed with A holds its state."""
    with Queue(location, secret_key=A) as q:
        ids = [q.enqueue(ADD, i, 1) for i in range(5)]
        ids.append(q.enqueue_call(COUNT, (5,), priority=1))
        _, [claim] = q.engine.settle([], "a-worker", 1)
        q.engine.save_checkpoint(ids[-1], claim.token, 3, 0.6)
        q.engine.finish(ids[-1], claim.token, lambda s, now, _: transitions.released(s, now))
    return ids


def jobq(location: str, *args: str, key: str = B, old: str = A
         ) -> subprocess.CompletedProcess[str]:
    env = {**child_env(), "JOBQ_SECRET_KEY": key, "JOBQ_OLD_SECRET_KEYS": old}
    return subprocess.run([*jobq_command(), *args, "--dir", location], env=env, cwd=TESTS_DIR,
                          capture_output=True, text=True, timeout=120)


def test_after_a_rotation_old_jobs_run_in_a_worker_given_both_keys(location: str):
    old = signed_with_a(location)
    with Queue(location, secret_key=B, old_secret_keys=[A]) as q:
        assert q.engine.old_keys_pending() == 1
        assert q.state(old[-1]).checkpoint == 3 and q.payload(old[0]).args == (0, 1)
        new = q.enqueue(ADD, 20, 22)
    done = jobq(location, "worker", "--burst")
    assert done.returncode == 0, done.stderr
    with Queue(location, secret_key=B, old_secret_keys=[A]) as q:
        assert [q.result(j) for j in old + [new]] == [1, 2, 3, 4, 5, 5, 42]


def test_the_old_key_alone_or_another_key_is_refused_once_rotated(location: str):
    signed_with_a(location)
    Queue(location, secret_key=B, old_secret_keys=[A]).close()
    with pytest.raises(WrongSecretKey, match="one of its old keys"):
        Queue(location, secret_key=A)
    with pytest.raises(WrongSecretKey, match=r"different secret key \(nor any of the 1 old"):
        Queue(location, secret_key=C, old_secret_keys=[B.replace("B", "D")])


def test_dropping_the_old_key_before_rekey_fails_and_loses_nothing(location: str):
    """Without A the queue does not open, naming what needs A and the oldest job; with A given
    again every job runs."""
    old = signed_with_a(location)
    Queue(location, secret_key=B, old_secret_keys=[A]).close()
    with pytest.raises(OldKeyNeeded, match=f"6 .*record.*state snapshot.*{old[0]}") as err:
        Queue(location, secret_key=B)
    assert (err.value.records, err.value.oldest_job) == (6, old[0])
    assert err.value.snapshots >= 1  # the checkpoint's (a queue directory also has markers)
    assert jobq(location, "worker", "--burst", old="").returncode == 1  # a worker refuses too
    with Queue(location, secret_key=B, old_secret_keys=[A]) as q:
        assert q.counts()["queued"] == 6 and q.state(old[-1]).checkpoint == 3
        run_burst(q)
        assert [q.result(j) for j in old] == [1, 2, 3, 4, 5, 5]


def test_rekey_then_drop_the_old_key(location: str):
    """rekey re-signs every record and snapshot with B: then B alone opens the queue (retiring
    A), and every job (the checkpointed one resuming at 3) runs."""
    old = signed_with_a(location)
    with Queue(location, secret_key=B, old_secret_keys=[A]) as q:
        report = rekey(q)
        assert report.records_resigned == 6 and report.snapshots_resigned >= 1
        assert (report.records_left, report.snapshots_left) == (0, 0)
        assert report.can_drop_old_keys and report.old_keys_pending == 1
        assert rekey(q).records_resigned == rekey(q).snapshots_resigned == 0  # nothing left
    with Queue(location, secret_key=B) as q:
        assert q.engine.old_keys_pending() == 0
        assert q.state(old[-1]).checkpoint == 3
        assert run_burst(q) == 6
        assert [q.result(j) for j in old] == [1, 2, 3, 4, 5, 5]
    with pytest.raises(WrongSecretKey, match="different secret key"):  # A is gone for good
        Queue(location, secret_key=A)


def test_an_old_key_nothing_needs_is_retired_by_an_open_without_it(location: str):
    Queue(location, secret_key=A).close()
    with Queue(location, secret_key=B, old_secret_keys=[A]) as q:
        assert q.engine.old_keys_pending() == 1
    with Queue(location, secret_key=B) as q:
        assert q.engine.old_keys_pending() == 0
        q.enqueue(ADD, 1, 1)


def test_two_rotations_keep_both_old_keys_until_rekey(location: str):
    old = signed_with_a(location)
    with Queue(location, secret_key=B, old_secret_keys=[A]) as q:
        middle = q.enqueue(ADD, 10, 10)
    with Queue(location, secret_key=C, old_secret_keys=[B, A]) as q:
        assert q.engine.old_keys_pending() == 2
        run_burst(q)
        assert q.result(middle) == 20 and q.result(old[0]) == 1
    with pytest.raises(OldKeyNeeded):
        Queue(location, secret_key=C, old_secret_keys=[B])
    with Queue(location, secret_key=C, old_secret_keys=[B, A]) as q:
        assert rekey(q).can_drop_old_keys
    with Queue(location, secret_key=C) as q:
        assert q.engine.old_keys_pending() == 0 and q.result(middle) == 20


def test_rekey_refuses_an_unsigned_queue(location: str):
    with Queue(location) as q, pytest.raises(InvalidArgument, match="not signed"):
        rekey(q)


def test_a_process_still_signing_with_the_old_key_is_let_in_during_a_rolling_restart(
        location: str):
    """Current key A with B among its old keys, after the queue rotated to B: it opens (nothing
    rotates back), what each signs the other reads, and rekey re-signs what it signed."""
    signed_with_a(location)
    with Queue(location, secret_key=B, old_secret_keys=[A]) as new, \
            Queue(location, secret_key=A, old_secret_keys=[B]) as late:
        by_new, by_late = new.enqueue(ADD, 1, 1), late.enqueue(ADD, 2, 2)
        assert new.engine.old_keys_pending() == 1
        run_burst(late)
        assert (new.result(by_new), new.result(by_late)) == (2, 4)
        assert rekey(new).can_drop_old_keys
    with Queue(location, secret_key=B) as q:
        assert q.result(by_late) == 4


def test_a_process_that_missed_the_rotation_stops_instead_of_taking_new_records_for_damage(
        location: str):
    """A process that opened the queue with the old key alone before the rotation meets a job
    the new key signed: WrongSecretKey, the job not charged nor ended; the jobs run once every
    process has the new key."""
    with Queue(location, secret_key=A) as q:
        before = q.enqueue(ADD, 1, 1)
    stale = Queue(location, secret_key=A)  # opened before the rotation, never told of it
    try:
        with Queue(location, secret_key=B, old_secret_keys=[A]) as rotated:
            after = rotated.enqueue(ADD, 2, 10)
            rotated.counts()  # a queue directory indexes it here, with the key
        _, [claim] = stale.engine.settle([], "stale", 1)
        assert claim.job_id == before
        run_claim(stale.engine, claim, stale.config.rules)  # signed with A: it runs
        _, [claim] = stale.engine.settle([], "stale", 1)
        assert claim.job_id == after
        with pytest.raises(WrongSecretKey, match="changed|rotated"):
            run_claim(stale.engine, claim, stale.config.rules)
        stale.engine.settle([(claim.job_id, claim.token,
                              lambda s, now, _: transitions.released(s, now))], "stale", 0)
    finally:
        stale.close()
    with Queue(location, secret_key=B, old_secret_keys=[A]) as q:
        assert q.state(after).status is Status.QUEUED and q.state(after).attempts == 0
        assert run_burst(q) == 1
        assert [q.result(j) for j in (before, after)] == [2, 12]
        assert q.engine.damage() == []


def test_status_and_rekey_on_the_command_line(location: str):
    old = signed_with_a(location)
    status = jobq(location, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["old_keys_pending"] == 1
    refused = jobq(location, "status", old="")
    assert refused.returncode == 1
    assert refused.stderr.startswith("jobq: error:") and "6 live" in refused.stderr
    assert f"oldest: job {old[0]!r}" in refused.stderr
    done = jobq(location, "rekey")
    assert done.returncode == 0, done.stderr
    assert "re-signed 6 log record(s)" in done.stdout
    assert "nothing is signed with an old key any more" in done.stdout
    again = jobq(location, "rekey", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["records_resigned"], report["records_left"]) == (0, 0)
    assert report["can_drop_old_keys"] and report["old_keys_pending"] == 1
    status = jobq(location, "status", "--json", old="")
    assert status.returncode == 0 and json.loads(status.stdout)["old_keys_pending"] == 0
