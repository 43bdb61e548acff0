"""The state database: group commit (the WAL is synced after the write lock is released)."""

from __future__ import annotations

import fcntl
import os

from jobq import Queue, durable, transitions

from jobtasks import add


def _succeeded(result=None):
    return lambda s, now, m: transitions.succeeded(s, result, now)


def test_writes_sync_the_wal_after_releasing_the_lock(queue, monkeypatch):
    """Each write that changes something syncs the WAL once, with the state lock already free
    (so the next writer does not wait behind this one's fsync); one that changes nothing does
    not sync. The connection itself commits without syncing (synchronous=NORMAL)."""
    assert queue.store.conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    lock_path = queue.store._qdir.state_lock
    synced: list[tuple[str, bool]] = []
    real_sync = durable.sync_file

    def spying_sync(fd: int) -> None:
        probe = os.open(lock_path, os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the lock is held
            fcntl.flock(probe, fcntl.LOCK_UN)
            free = True
        except BlockingIOError:
            free = False
        finally:
            os.close(probe)
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), free))
        real_sync(fd)

    monkeypatch.setattr(durable, "sync_file", spying_sync)
    jid = queue.enqueue(add, 1, 2)
    claim = queue.store.claim("w")[0]  # indexes and claims: one transaction
    queue.store.save_checkpoint(jid, claim.token, "half", 0.5)
    queue.store.finish(jid, claim.token, _succeeded(3))
    assert queue.store.claim("w") == []  # nothing to claim: no row changed, no sync
    with queue.store.transaction():  # maintenance (VACUUM, schema) syncs even without rows
        pass
    wal_path = str(queue.store._qdir.state_db) + "-wal"
    assert [entry for entry in synced if entry[0] == wal_path] == [(wal_path, True)] * 4


def test_a_write_is_on_disk_in_the_wal_when_it_returns(queue):
    """The changes of a returned write are in the WAL file (read back through another
    descriptor, not SQLite), not only in SQLite's memory."""
    jid = queue.enqueue(add, 1, 2)
    claim = queue.store.claim("w")[0]
    queue.store.save_checkpoint(jid, claim.token, "marker-4f1c9e", 0.5)
    with open(str(queue.store._qdir.state_db) + "-wal", "rb") as f:
        assert b"marker-4f1c9e" in f.read()


FORKED_CHILD_DROPS_ITS_COPY = """
import gc, os, sys, warnings
warnings.simplefilter("error")  # as the suite: Python 3.13 warns of unclosed connections
from jobq import Queue

def state_fds():
    return sorted(os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
                  for fd in os.listdir("/proc/self/fd")
                  if "state.sqlite3" in os.path.realpath(f"/proc/self/fd/{fd}"))

queue = Queue(sys.argv[1])
queue.counts()
inherited = state_fds()
pid = os.fork()
if pid == 0:
    status = 1
    try:
        assert queue.counts()["queued"] == 1  # on a connection of its own
        queue.close()
        del queue
        gc.collect()
        kept = state_fds()  # the inherited descriptors are still open: never closed here
        assert all(kept.count(name) >= inherited.count(name) for name in inherited), kept
        print("child ok", flush=True)
        status = 0
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(status)
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
assert queue.counts()["queued"] == 1
queue.close()
print("parent ok")
"""


def test_a_forked_child_never_closes_nor_frees_the_connection_it_inherited(qpath, children):
    """SQLite forbids using a connection across fork(), closing it included: a child drops its
    copy of the parent's without closing it (its descriptors stay open) and without Python
    3.13's unclosed-database warning, and works on a connection of its own."""
    with Queue(qpath) as q:
        q.enqueue(add, 1, 2)
    done = children.run(FORKED_CHILD_DROPS_ITS_COPY, str(qpath))
    assert (done.returncode, done.stdout, done.stderr) == (0, "child ok\nparent ok\n", "")
