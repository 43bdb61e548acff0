"""The state database: group commit (the WAL is synced after the write lock is released)."""

from __future__ import annotations

import fcntl
import os

from jobq import durable, transitions

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
