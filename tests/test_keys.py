"""Rotating a queue's secret key: the new key signs, old keys verify until what they signed is
re-signed (jobq rekey) or gone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from jobq import Queue, record, transitions
from jobq.local import keys
from jobq.config import build
from jobq.errors import ConfigError, OldKeyNeeded, WrongSecretKey
from jobq.execution import run_claim
from jobq.local.rekey import key_use
from jobq.maintenance import rekey
from jobq.testing import run_burst
from jobq.maintenance import verify

from conftest import TESTS_DIR, child_env, jobq_command

A = "key-A-0123456789abcdef"
B = "key-B-0123456789abcdef"
C = "key-C-0123456789abcdef"
ADD, COUNT = "jobtasks:add", "jobtasks:count_with_checkpoints"
GOLDEN_KEY = "golden-key-A-0123456789abcdef"


def info(qpath: Path) -> dict:
    return json.loads((qpath / "jobq.json").read_text())


def files(qpath: Path) -> dict[str, bytes]:
    """Every file of the queue but its locks, by path: to show that nothing changed."""
    return {str(p.relative_to(qpath)): p.read_bytes() for p in sorted(qpath.rglob("*"))
            if p.is_file() and not p.name.endswith((".lock", "-shm", "-wal"))}


def signed_with_a(qpath: Path) -> list[str]:
    """Jobs enqueued with key A; the last one (counting to 5) saved checkpoint 3 and was given
    back, so its snapshot is signed with A too."""
    with Queue(qpath, secret_key=A) as q:
        ids = [q.enqueue(ADD, i, 1) for i in range(5)]
        ids.append(q.enqueue_call(COUNT, (5,), priority=1))
        claim, = q.store.claim("a-worker", 1)
        q.store.save_checkpoint(ids[-1], claim.token, 3, 0.6)
        q.store.finish(ids[-1], claim.token, lambda s, now, _: transitions.released(s, now))
    return ids


def worker_burst(qpath: Path, key: str, old: str = "") -> subprocess.CompletedProcess[str]:
    env = {**child_env(), "JOBQ_SECRET_KEY": key, "JOBQ_OLD_SECRET_KEYS": old}
    return subprocess.run([*jobq_command(), "worker", "--burst", "--dir", str(qpath)],
                          env=env, cwd=TESTS_DIR, capture_output=True, text=True, timeout=120)


# -- configuration ----------------------------------------------------------------------------

def test_old_keys_come_from_the_environment_comma_separated(monkeypatch):
    """$JOBQ_OLD_SECRET_KEYS: commas between keys, spaces around them and empty entries ignored;
    the current key and repeats are dropped."""
    monkeypatch.setenv("JOBQ_SECRET_KEY", B)
    monkeypatch.setenv("JOBQ_OLD_SECRET_KEYS", f" {A} ,, {C},{A},{B}")
    assert build("q").old_secret_keys == (A.encode(), C.encode())
    assert build("q", old_secret_keys=[C]).old_secret_keys == (C.encode(),)  # given wins


@pytest.mark.parametrize("given, env, named", [
    (None, f"{A},short", r"\$JOBQ_OLD_SECRET_KEYS key 2 of 2 is 5 bytes"),
    ([A, b"tiny"], "", r"old_secret_keys\[1\] is 4 bytes"),
    (A, "", "a list of keys, not one key"),
    ([A, 7], "", r"old_secret_keys\[1\] must be str or bytes"),
], ids=["env-short", "arg-short", "one-string", "not-a-key"])
def test_every_old_key_meets_the_minimum_and_errors_say_which(monkeypatch, given, env, named):
    monkeypatch.setenv("JOBQ_OLD_SECRET_KEYS", env)
    with pytest.raises(ConfigError, match=named):
        build("q", secret_key=B, old_secret_keys=given)


def test_old_keys_without_a_current_key_are_refused(monkeypatch):
    monkeypatch.delenv("JOBQ_SECRET_KEY", raising=False)
    monkeypatch.setenv("JOBQ_OLD_SECRET_KEYS", A)
    with pytest.raises(ConfigError, match=r"\$JOBQ_OLD_SECRET_KEYS.*no current one"):
        build("q")


# -- frames and snapshots ---------------------------------------------------------------------

def test_a_frame_is_checked_with_the_current_key_first_then_the_old_ones():
    body = b"job body."
    frame = record.encode(record.KIND_JOB, body, A.encode())
    decode = lambda **kw: record.decode(frame, 0, max_body=100, **kw)  # noqa: E731
    assert decode(key=A.encode()).signer == 0
    assert decode(key=B.encode(), old_keys=(C.encode(), A.encode())).signer == 2
    with pytest.raises(record.Damaged, match="signature mismatch"):
        decode(key=B.encode(), old_keys=(C.encode(),))
    assert decode(key=B.encode(), any_signer=True).signer == record.UNKNOWN_SIGNER


# -- rotating ---------------------------------------------------------------------------------

def test_after_a_rotation_old_jobs_run_and_new_ones_are_signed_with_the_new_key(qpath):
    """Enqueued with A; a worker process with B (A old) runs them all, and what it writes, and
    what is enqueued now, is signed with B."""
    old = signed_with_a(qpath)
    with Queue(qpath, secret_key=B, old_secret_keys=[A]) as q:
        assert info(qpath)["key_check"] == keys.key_check(B.encode())
        assert info(qpath)["old_key_checks"] == [keys.key_check(A.encode())]
        assert info(qpath)["format"] == 3  # an older jobq must not take A's records for damage
        new = q.enqueue(ADD, 20, 22)
        q.store.catch_up()
        pos = q.store.payload_position(new)
        raw = q.log.read_range(pos.segment, pos.offset, pos.offset + 4096)
        assert record.decode(raw, 0, key=B.encode(), max_body=1 << 20).signer == 0
        assert key_use(q.engine).records == len(old)
    done = worker_burst(qpath, B, A)
    assert done.returncode == 0, done.stderr
    with Queue(qpath, secret_key=B, old_secret_keys=[A]) as q:
        assert [q.result(j) for j in old + [new]] == [1, 2, 3, 4, 5, 5, 42]
        raw = q.store.shelf.raw(old[0])  # written by the worker: signed with B
        assert q.store.shelf.signer(old[0], raw) == 0


def test_dropping_the_old_key_before_rekey_fails_and_loses_nothing(qpath):
    """Without A, the queue does not open: the error says how many records need it and the
    oldest job, nothing is read or changed; with A given again, every job runs."""
    old = signed_with_a(qpath)
    Queue(qpath, secret_key=B, old_secret_keys=[A]).close()
    before = files(qpath)
    with pytest.raises(OldKeyNeeded, match=f"6 live log record.*6 state snapshot.*{old[0]}") \
            as err:
        Queue(qpath, secret_key=B)  # a snapshot for each job: 5 markers and a checkpoint
    assert (err.value.records, err.value.snapshots, err.value.oldest_job) == (6, 6, old[0])
    assert files(qpath) == before
    assert not list((qpath / "quarantine").iterdir())
    assert worker_burst(qpath, B).returncode == 1  # a worker refuses too
    assert files(qpath) == before
    done = worker_burst(qpath, B, A)
    assert done.returncode == 0, done.stderr
    with Queue(qpath, secret_key=B, old_secret_keys=[A]) as q:
        assert [q.result(j) for j in old] == [1, 2, 3, 4, 5, 5]


def test_rekey_then_drop_the_old_key(qpath):
    """rekey re-signs every live record and snapshot with B: then B alone opens the queue
    (retiring A), and every job (the checkpointed one resuming at 3) runs."""
    old = signed_with_a(qpath)
    with Queue(qpath, secret_key=B, old_secret_keys=[A]) as q:
        report = rekey(q)
        assert (report.records_resigned, report.snapshots_resigned) == (6, 6)
        assert (report.records_left, report.snapshots_left) == (0, 0)
        assert report.can_drop_old_keys and report.old_keys_pending == 1
    assert info(qpath)["format"] == 3  # A is retired by the first open without it:
    with Queue(qpath, secret_key=B) as q:
        assert "old_key_checks" not in info(qpath) and info(qpath)["format"] == 2
        assert q.state(old[-1]).checkpoint == 3
        assert verify(q).ok
    done = worker_burst(qpath, B)
    assert done.returncode == 0, done.stderr
    with Queue(qpath, secret_key=B) as q:
        assert [q.result(j) for j in old] == [1, 2, 3, 4, 5, 5]
        assert q.counts()["succeeded"] == 6


def test_an_old_key_nothing_needs_is_retired_by_an_open_without_it(qpath):
    Queue(qpath, secret_key=A).close()
    Queue(qpath, secret_key=B, old_secret_keys=[A]).close()
    assert info(qpath)["format"] == 3
    with Queue(qpath, secret_key=B) as q:
        q.enqueue(ADD, 1, 1)
    assert "old_key_checks" not in info(qpath) and info(qpath)["format"] == 2


def test_a_rotation_on_a_shared_queue_keeps_it_shared(qpath):
    """A shared queue (format 3 for its group) rotated, re-keyed and its old key retired, with
    umask 077: jobq.json, keys.lock and the rewritten segments stay the group's and 0660 (0440
    sealed); retiring the last old key leaves format 3, so a format-2 jobq still refuses it."""
    from jobq.local.directory import share
    gid = os.getegid()
    old = signed_with_a(qpath)
    share(str(qpath), gid)
    (qpath / "keys.lock").unlink()  # as in a queue shared before key rotation existed
    umask = os.umask(0o077)
    try:
        with Queue(qpath, secret_key=B, old_secret_keys=[A]) as q:
            assert (info(qpath)["format"], info(qpath)["shared_group"]) == (3, gid)
            run_burst(q)
            assert rekey(q).records_resigned > 0
        with Queue(qpath, secret_key=B) as q:  # retires A
            assert "old_key_checks" not in info(qpath)
            assert (info(qpath)["format"], info(qpath)["shared_group"]) == (3, gid)
            assert q.shared_group == gid and verify(q).ok
            assert [q.result(j) for j in old] == [1, 2, 3, 4, 5, 5]
    finally:
        os.umask(umask)
    assert (qpath / "keys.lock").exists()
    for path in [qpath, *qpath.rglob("*")]:
        st = path.stat()
        assert st.st_gid == gid, path
        wanted = (0o2770,) if path.is_dir() else (0o660, 0o440)
        assert stat.S_IMODE(st.st_mode) in wanted, (path, oct(st.st_mode))


# -- crashes ----------------------------------------------------------------------------------

CRASHING_REKEY = """
import os, sys
from jobq import Queue
from jobq.maintenance import rekey
q = Queue(sys.argv[1], secret_key=sys.argv[3], old_secret_keys=[sys.argv[4]])
os.environ["JOBQ_TEST_CRASH_AT"] = sys.argv[2]
rekey(q)
print("no crash")
"""


@pytest.mark.parametrize("point", ["sealed", "copying", "copied", "committed", "renamed",
                                   "snapshots_resigned"])
def test_a_rekey_killed_anywhere_leaves_every_job_readable(qpath, children, point):
    """SIGKILL during rekey: with A and B every job still loads and runs; rekey again
    finishes, and then B alone reads everything."""
    old = signed_with_a(qpath)
    with Queue(qpath, secret_key=B, old_secret_keys=[A]) as q:
        new = [q.enqueue(ADD, 20, i) for i in range(3)]
    done = children.run(CRASHING_REKEY, str(qpath), point, B, A)
    assert done.returncode == -signal.SIGKILL, (done.stdout, done.stderr)
    with Queue(qpath, secret_key=B, old_secret_keys=[A]) as q:
        report = verify(q)
        assert report.ok and report.jobs_unreadable == 0, report
        for job_id in old + new:
            q.payload(job_id)
        assert q.state(old[-1]).checkpoint == 3
        run_burst(q)
        assert [q.result(j) for j in old + new] == [1, 2, 3, 4, 5, 5, 20, 21, 22]
        assert rekey(q).can_drop_old_keys
    with Queue(qpath, secret_key=B) as q:
        assert verify(q).ok and q.counts()["succeeded"] == 9


# -- older formats ----------------------------------------------------------------------------

def test_a_signed_queue_of_format_2_rotates_and_rekeys(tmp_path):
    """The golden signed queue (written at f66d4ea with key A) opens with a new key and A as an
    old one, its jobs and checkpoint load, and after rekey it opens with the new key alone."""
    root = tmp_path / "queue"
    shutil.copytree(TESTS_DIR / "golden" / "queue_signed2", root)
    before = (root / "jobq.json").read_bytes()
    with Queue(root, secret_key=GOLDEN_KEY) as q:  # no rotation: the format file is left alone
        assert q.result("succeeded") == 5
    assert (root / "jobq.json").read_bytes() == before
    with Queue(root, secret_key=B, old_secret_keys=[GOLDEN_KEY]) as q:
        assert q.counts() == {"queued": 1, "running": 1, "failed": 0, "succeeded": 1,
                              "dead": 0, "cancelled": 0}
        assert q.state("running").checkpoint == 4
        assert q.result("succeeded") == 5
        assert q.payload("queued").args == (40, 2)
        use = key_use(q.engine)
        assert use.records == 3 and use.snapshots >= 2
        rekey(q)
    with Queue(root, secret_key=B) as q:
        assert verify(q).ok
        assert q.state("running").checkpoint == 4 and q.payload("queued").args == (40, 2)


# -- command line -----------------------------------------------------------------------------

def jobq(qpath: Path, *args: str, key: str = B, old: str = A) -> subprocess.CompletedProcess[str]:
    env = {**child_env(), "JOBQ_SECRET_KEY": key, "JOBQ_OLD_SECRET_KEYS": old}
    return subprocess.run([*jobq_command(), *args, "--dir", str(qpath)], env=env, cwd=TESTS_DIR,
                          capture_output=True, text=True, timeout=120)


def test_status_verify_and_rekey_on_the_command_line(qpath):
    old = signed_with_a(qpath)
    status = jobq(qpath, "status", "--json")
    assert json.loads(status.stdout)["old_keys_pending"] == 1
    checked = jobq(qpath, "verify", "--json")
    assert checked.returncode == 0, checked.stderr
    assert (json.loads(checked.stdout)["old_key_records"],
            json.loads(checked.stdout)["old_key_snapshots"]) == (len(old), len(old))
    refused = jobq(qpath, "status", old="")
    assert refused.returncode == 1
    assert refused.stderr.startswith("jobq: error:") and "6 live log record(s)" in refused.stderr
    done = jobq(qpath, "rekey")
    assert done.returncode == 0, done.stderr
    assert "re-signed 6 log record(s) and 6 snapshot(s)" in done.stdout
    assert "nothing is signed with an old key any more" in done.stdout
    status = jobq(qpath, "status", "--json", old="")
    assert status.returncode == 0 and json.loads(status.stdout)["old_keys_pending"] == 0
    assert os.path.exists(qpath / "jobq.json")


def test_a_process_still_signing_with_the_old_key_is_let_in_during_a_rolling_restart(qpath):
    """Current key A with B among its old keys, after the queue rotated to B: it opens (nothing
    rotates back), and what each signs the other reads."""
    signed_with_a(qpath)
    with Queue(qpath, secret_key=B, old_secret_keys=[A]) as new, \
            Queue(qpath, secret_key=A, old_secret_keys=[B]) as late:
        assert info(qpath)["key_check"] == keys.key_check(B.encode())
        by_new, by_late = new.enqueue(ADD, 1, 1), late.enqueue(ADD, 2, 2)
        run_burst(late)
        assert (new.result(by_new), new.result(by_late)) == (2, 4)
        report = rekey(new)
        assert report.can_drop_old_keys


def test_rekey_also_drops_what_an_old_key_signed_for_purged_jobs(qpath):
    """Records of purged jobs are dead, but left in the log they would read as damage once the
    old key is dropped: rekey (a compaction) drops them."""
    from jobq.maintenance import purge
    with Queue(qpath, secret_key=A) as q:
        q.enqueue(ADD, 1, 1)
        run_burst(q)
    with Queue(qpath, secret_key=B, old_secret_keys=[A]) as q:
        assert purge(q, statuses=["succeeded"], older_than=0, now=q._clock() + 1) == 1
        kept = q.enqueue(ADD, 2, 2)
        assert rekey(q).compaction.records_dropped == 1
    with Queue(qpath, secret_key=B) as q:
        report = verify(q)
        assert report.ok and report.damaged_ranges == 0
        run_burst(q)
        assert q.result(kept) == 4


def test_a_process_that_missed_the_rotation_refuses_new_records_instead_of_setting_them_aside(
        qpath):
    """A process started before the rotation with the old key alone (step 1 of the procedure
    skipped) meets records signed with the new key. It must not take them for damage and
    quarantine them: the jobs would be lost to every process. It stops with WrongSecretKey,
    and the jobs run once every process has the new key."""
    with Queue(qpath, secret_key=A) as q:
        before = q.enqueue(ADD, 1, 1)
    stale = Queue(qpath, secret_key=A)  # opened before the rotation, never told of it
    try:
        with Queue(qpath, secret_key=B, old_secret_keys=[A]) as rotated:
            after = [rotated.enqueue(ADD, i, 10) for i in range(3)]
        with pytest.raises(WrongSecretKey, match="changed|rotated"):
            stale.counts()
        with pytest.raises(WrongSecretKey):
            run_burst(stale)
        with Queue(qpath, secret_key=B, old_secret_keys=[A]) as rotated:
            rotated.counts()  # indexed by a process with the key: the stale one may claim them
        _, [claim] = stale.engine.settle([], "stale", 1, prefetch=0)
        assert claim.job_id == before
        run_claim(stale.engine, claim, stale.config.rules)  # signed with A: it runs
        _, [claim] = stale.engine.settle([], "stale", 1)
        with pytest.raises(WrongSecretKey):  # signed with B: no damage, and not charged
            run_claim(stale.engine, claim, stale.config.rules)
        stale.engine.settle([(claim.job_id, claim.token,
                              lambda s, now, _: transitions.released(s, now))], "stale", 0)
        assert not (qpath / "quarantine").exists() or not any((qpath / "quarantine").iterdir())
    finally:
        stale.close()
    with Queue(qpath, secret_key=B, old_secret_keys=[A]) as q:
        assert run_burst(q) == 3
        assert [q.result(j) for j in [before, *after]] == [2, 10, 11, 12]
        assert q.engine.damage() == []
