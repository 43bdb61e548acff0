"""The state database: group commit (the WAL is synced after the write lock is released)."""

from __future__ import annotations

import fcntl
import os

import pytest

from jobq import Queue, transitions
from jobq.local import durable

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


FORKED_CHILD = """
import gc, os, sys, threading, warnings
warnings.simplefilter("error")  # as the suite: Python 3.13 warns of unclosed connections
from jobq import Queue

def fds(path):
    return sum(os.path.realpath(f"/proc/self/fd/{fd}").startswith(path)
               for fd in os.listdir("/proc/self/fd"))

def posix_locks(path):
    inode = os.stat(path).st_ino
    with open("/proc/locks") as locks:
        return [line for line in locks
                if line.split()[4] == str(os.getpid()) and line.split()[5].endswith(f":{inode}")]

db = os.path.join(sys.argv[1], "state.sqlite3")
threaded = sys.argv[2] == "threaded"
queue = Queue(sys.argv[1])
queue.counts()
inherited = fds(db)
if threaded:  # a thread running at the fork, which may have been inside SQLite
    release = threading.Event()
    threading.Thread(target=release.wait).start()
pid = os.fork()
if pid == 0:
    status = 1
    try:
        if threaded:  # the copies are kept open, never closed nor freed
            assert queue.counts()["queued"] == 1
            queue.close()
            del queue
            gc.collect()
            assert fds(db) >= inherited, (fds(db), inherited)
        else:  # the copies were closed first: the child's own connection locks for itself
            assert fds(db) == 0, fds(db)
            assert queue.counts()["queued"] == 1
            assert posix_locks(db), "no lock of its own on the state database"
            queue.close()
        print("child ok", flush=True)
        status = 0
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(status)
if threaded:
    release.set()
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
assert queue.counts()["queued"] == 1 and posix_locks(db)  # the parent's untouched
queue.close()
print("parent ok")
"""


@pytest.mark.parametrize("parent", ["single-threaded", "threaded"])
def test_a_forked_child_drops_the_connections_it_inherited_cleanly(qpath, children, parent):
    """SQLite forbids using a connection across fork(). A child closes its copies before
    anything else, so that its own connections take locks of their own; if another thread ran
    at the fork (it may have held SQLite's mutexes), it keeps them open, never closed nor freed.
    Either way without Python 3.13's unclosed-database warning, and the parent's is untouched."""
    with Queue(qpath) as q:
        q.enqueue(add, 1, 2)
    done = children.run(FORKED_CHILD, str(qpath), parent)
    assert (done.returncode, done.stdout, done.stderr) == (0, "child ok\nparent ok\n", "")
