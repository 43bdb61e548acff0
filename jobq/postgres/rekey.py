"""Re-signing a queue in PostgreSQL with its current key, so that its old keys can be dropped.

:func:`rekey` (``jobq rekey``) reads every job record (``jobq_payloads``) and snapshot
(``jobq_snapshots``, and finished jobs' in ``jobq_done``) a page at a time, without a lock, and
re-signs those an old key signed, one short transaction per page that locks (``FOR UPDATE SKIP
LOCKED``) only the rows still holding the bytes it read: compare-and-set, so a snapshot a worker
wrote meanwhile (signed with its own key) is never overwritten by an older one; and rekey never
waits for a lock, so no transaction of a worker can deadlock with it, and none waits longer than
one page. The rows a writer held or changed are read and tried again after the pass. Then it
counts what an old key still signs (a process still running with the old key as its current one
may have written more).

A record never changes once stored (nothing but rekey rewrites one), and either version of it
verifies with the old and the new key, so a worker loading it meanwhile reads either.

:func:`key_use` counts what an old key, or a key not given, signed; :func:`require` refuses to
open a queue without an old key that records still need, naming how many and the oldest job,
instead of taking them for damage, and retires the key if nothing needs it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from .. import record
from ..codec import SIGNED_MAGIC, SnapshotCodec
from ..errors import InvalidArgument, OldKeyNeeded
from .._logging import get_logger
from ..pickling import PickleRules
from ..rekeying import KeyUse, RekeyReport
from . import keys
from .db import Db

__all__ = ["KeyUse", "RekeyReport", "Signers", "key_use", "rekey", "require"]

log = get_logger(__name__)

PAGE = 500
RETRIES = 5  # rounds over the rows a writer held locked during the pass
RETRY_PAUSE = 0.05  # seconds between them: a worker's transaction is shorter
KEYS_LOCK = 0x6A6F_6271  # first key of the advisory lock an open that retires keys holds ("jobq")


class Store(NamedTuple):
    """Where signed bytes are kept: a table, its column, and whether they are records."""

    table: str
    column: str
    records: bool


STORES = (Store("jobq_payloads", "frame", True), Store("jobq_snapshots", "blob", False),
          Store("jobq_done", "blob", False))


class Signers:
    """Which key signed a stored record or snapshot, and its bytes signed with the current key."""

    def __init__(self, codec: SnapshotCodec, key: bytes, old_keys: tuple[bytes, ...],
                 max_body: int) -> None:
        self._codec, self.key, self._old, self._max_body = codec, key, old_keys, max_body

    @classmethod
    def of(cls, rules: PickleRules, key: bytes, old_keys: tuple[bytes, ...],
           max_body: int) -> Signers:
        return cls(SnapshotCodec(rules=rules, secret_key=key, old_keys=old_keys), key, old_keys,
                   max_body)

    def signer(self, store: Store, job_id: str, raw: bytes) -> int | None:
        """0: the current key; i: old key i; record.UNKNOWN_SIGNER: no key given; None: not
        signed or damaged otherwise (no key's matter)."""
        if store.records:
            try:
                return record.decode(raw, 0, key=self.key, old_keys=self._old,
                                     max_body=self._max_body, any_signer=True).signer
            except (record.Damaged, record.Incomplete):
                return None
        if raw[:4] != SIGNED_MAGIC:
            return None
        found = self._codec.signer(job_id, raw)
        return record.UNKNOWN_SIGNER if found is None else found

    def resigned(self, store: Store, job_id: str, raw: bytes) -> bytes | None:
        """The bytes signed with the current key instead, if an old key signed them; else None
        (the current key's, or not a key's matter). Nothing is unpickled."""
        if store.records:
            try:
                frame = record.decode(raw, 0, key=self.key, old_keys=self._old,
                                      max_body=self._max_body)
            except (record.Damaged, record.Incomplete):
                return None
            return record.encode(frame.kind, frame.body, self.key) if frame.signer else None
        if raw[:4] != SIGNED_MAGIC or not self._codec.signer(job_id, raw):
            return None
        return self._codec.resign(job_id, raw)


def pages(db: Db, store: Store, ids: list[str] | None = None
          ) -> Iterator[list[tuple[str, bytes]]]:
    """(job id, stored bytes) of every row of ``store`` (or of those of ``ids``), a page at a
    time, in id order; each page is one statement, so no transaction stays open between them."""
    sql = (f"SELECT job_id, {store.column} FROM {store.table} WHERE queue = %s AND job_id > %s"
           f" AND {store.column} IS NOT NULL{{}} ORDER BY job_id LIMIT {PAGE}")
    sql = sql.format("" if ids is None else " AND job_id = ANY(%s)")
    after = ""
    while True:
        args = (db.loc.queue, after) if ids is None else (db.loc.queue, after, ids)
        with db.errors("read signed records"), db.conn.cursor(binary=True) as cur:
            rows = cur.execute(sql, args).fetchall()
        yield [(job_id, bytes(raw)) for job_id, raw in rows]
        if len(rows) < PAGE:
            return
        after = rows[-1][0]


def key_use(db: Db, signers: Signers, *, unknown: bool = False) -> KeyUse:
    """Count records and snapshots an old key signed (with ``unknown``, also those no key given
    signed). Reads every record and snapshot of the queue."""
    use, oldest = KeyUse(), {False: _Oldest(), True: _Oldest()}
    for store in STORES:
        for page in pages(db, store):
            hits: dict[bool, list[str]] = {False: [], True: []}
            for job_id, raw in page:
                signer = signers.signer(store, job_id, raw)
                if signer == record.UNKNOWN_SIGNER and unknown:
                    hits[True].append(job_id)
                elif signer is not None and signer > 0:
                    hits[False].append(job_id)
            for is_unknown, ids in hits.items():
                field = ("unknown_" if is_unknown else "") + ("records" if store.records
                                                              else "snapshots")
                setattr(use, field, getattr(use, field) + len(ids))
                oldest[is_unknown].offer(db, ids)
    use.oldest_job, use.oldest_unknown = oldest[False].job_id, oldest[True].job_id
    return use


class _Oldest:
    """The job of the smallest arrival number among those offered."""

    def __init__(self) -> None:
        self.seq: int | None = None
        self.job_id: str | None = None

    def offer(self, db: Db, ids: list[str]) -> None:
        if not ids:
            return
        found = db.execute(
            "SELECT seq, job_id FROM jobq_jobs WHERE queue = %(q)s AND job_id = ANY(%(ids)s)"
            " UNION ALL SELECT seq, job_id FROM jobq_done WHERE queue = %(q)s"
            " AND job_id = ANY(%(ids)s) ORDER BY 1 LIMIT 1", {"q": db.loc.queue, "ids": ids})
        if found and (self.seq is None or found[0][0] < self.seq):
            self.seq, self.job_id = found[0]
        elif self.job_id is None:  # none has a row (purged meanwhile): the first one will do
            self.job_id = ids[0]


def require(db: Db, signers: Signers, missing: tuple[str, ...]) -> None:
    """At open, before anything is read: old keys ``missing`` are pending but were not given.
    Raise OldKeyNeeded if records or snapshots were signed by a key not given; else retire them
    (nothing they signed is left). One opener at a time: the others then find them retired."""
    with _keys_lock(db):
        missing = tuple(c for c in keys.pending(db) if c in missing)
        if not missing:
            return
        use = key_use(db, signers, unknown=True)
        if use.unknown_records or use.unknown_snapshots:
            where = db.loc.location
            raise OldKeyNeeded(
                f"{where}: {use.unknown_records} live job record(s) and"
                f" {use.unknown_snapshots} state snapshot(s) were signed with an old secret key that was not given (oldest:"
                f" job {use.oldest_unknown!r}); nothing was read or changed. Give the old key in"
                " $JOBQ_OLD_SECRET_KEYS (old_secret_keys); once `jobq rekey` has re-signed them"
                " with the current key, it can be dropped",
                path=where, records=use.unknown_records, snapshots=use.unknown_snapshots,
                oldest_job=use.oldest_unknown)
        keys.retire(db, missing)


@contextmanager
def _keys_lock(db: Db) -> Iterator[None]:
    """A session advisory lock of the queue's keys (released by the server if we die)."""
    digest = hashlib.blake2b(f"jobq keys\0{db.loc.queue}".encode(), digest_size=4).digest()
    lock = (KEYS_LOCK, int.from_bytes(digest, "big", signed=True))
    db.execute("SELECT pg_advisory_lock(%s, %s)", lock, "wait for another open checking keys")
    try:
        yield
    finally:
        db.execute("SELECT pg_advisory_unlock(%s, %s)", lock, "release the keys lock")


def rekey(db: Db, signers: Signers | None) -> RekeyReport:
    """Re-sign every record and snapshot an old key signed with the current key. Safe while
    producers and workers run. ``signers`` None: the queue is not signed."""
    if signers is None:
        raise InvalidArgument(f"{db.loc.location} is not signed: there is no key to re-sign with"
                              " (a queue created without a key cannot be given one)")
    keys.signs(db, signers.key)
    done = {True: 0, False: 0}
    for store in STORES:
        done[store.records] += _resign(db, signers, store)
    left = key_use(db, signers)
    report = RekeyReport(done[True], done[False], left.records, left.snapshots,
                         len(keys.pending(db)))
    log.info("maintenance.rekeyed", records_resigned=report.records_resigned,
             snapshots_resigned=report.snapshots_resigned, records_left=left.records,
             snapshots_left=left.snapshots, old_keys_pending=report.old_keys_pending)
    return report


def _resign(db: Db, signers: Signers, store: Store) -> int:
    """One pass over ``store``, then rounds over the rows writers held; how many re-signed."""
    done, held = 0, []
    for page in pages(db, store):
        n, skipped = _resign_rows(db, store, _wanted(signers, store, page))
        done, held = done + n, held + skipped
    for _ in range(RETRIES):
        if not held:
            break
        time.sleep(RETRY_PAUSE)
        retried = []
        for page in pages(db, store, held):  # as they are now: a writer may have re-signed them
            n, skipped = _resign_rows(db, store, _wanted(signers, store, page))
            done, retried = done + n, retried + skipped
        held = retried
    return done


def _wanted(signers: Signers, store: Store, page: list[tuple[str, bytes]]
            ) -> list[tuple[str, bytes, bytes]]:
    """(job id, stored bytes, re-signed bytes) of the rows of ``page`` an old key signed."""
    found = [(job_id, raw, signers.resigned(store, job_id, raw)) for job_id, raw in page]
    return [(job_id, raw, new) for job_id, raw, new in found if new is not None]


def _resign_rows(db: Db, store: Store, wanted: list[tuple[str, bytes, bytes]]
                 ) -> tuple[int, list[str]]:
    """In one transaction: lock the rows of ``wanted`` that no one holds and that still hold
    the bytes read (compare-and-set: a row a writer changed meanwhile is left as it wrote it),
    and store their re-signed bytes; (how many, the ids not done: held, changed or gone)."""
    if not wanted:
        return 0, []
    table, column = store.table, store.column
    with db.transaction("re-sign records with the current key") as conn:
        locked = {job_id for job_id, in conn.execute(
            f"SELECT t.job_id FROM {table} t JOIN unnest(%b::text[], %b::bytea[]) AS v(job_id,"
            f" raw) ON t.job_id = v.job_id WHERE t.queue = %b AND t.{column} = v.raw"
            " FOR UPDATE OF t SKIP LOCKED",
            ([j for j, _, _ in wanted], [r for _, r, _ in wanted], db.loc.queue))}
        new = [(job_id, raw) for job_id, _, raw in wanted if job_id in locked]
        if new:
            conn.execute(f"UPDATE {table} t SET {column} = v.raw FROM unnest(%b::text[],"
                         f" %b::bytea[]) AS v(job_id, raw) WHERE t.queue = %b"
                         " AND t.job_id = v.job_id",
                         ([j for j, _ in new], [r for _, r in new], db.loc.queue))
    return len(new), [job_id for job_id, _, _ in wanted if job_id not in locked]
