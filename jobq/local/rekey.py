"""Re-signing a queue with its current key, so that its old keys can be dropped.

:func:`rekey` (``jobq rekey``) is a compaction that also rewrites every segment holding a live
record an old key signed (:func:`jobq.local.compaction.compact` with ``resign=True``: the same copy,
repoint and rename, so a crash at any point leaves every record readable with the old and the
new keys), then re-signs the state snapshots an old key signed, a page per transaction (each
snapshot is re-signed or not, never torn). Then it counts what an old key still signs (a process
still running with the old key as its current one may have written more); if nothing, the old
keys can be dropped from the configuration, and the first open without them retires them from
``jobq.json`` (:func:`require`, after checking again).

:func:`key_use` counts the live records and snapshots that need an old key, or a key not given:
``jobq verify`` reports the first, and :func:`require` refuses to open a queue without an old key
that live records still need, naming how many and the oldest job, instead of taking them for
damage.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .. import job_record, record
from . import compaction, keys
from .._logging import get_logger
from ..errors import CorruptRecord, InvalidArgument, OldKeyNeeded
from ..rekeying import KeyUse, RekeyReport
from .index import seq_of
from .log import Entry, Log, Position
from .shelf import SIGNED_MAGIC

if TYPE_CHECKING:
    from .parts import Parts

__all__ = ["KeyUse", "RekeyReport", "key_use", "rekey", "require"]

log = get_logger(__name__)

PAGE = 500


def key_use(engine: Parts, *, unknown: bool = False) -> KeyUse:
    """Count live records and snapshots an old key signed (with ``unknown``, also those no key
    given signed: then nothing is taken for damage). Reads the whole log and every snapshot.

    A record is live if a job points at it, or the index has not reached it yet.
    """
    use = KeyUse()
    cfg = engine.config
    if cfg.secret_key is None:
        return use
    reader = engine.log if not unknown else Log(
        engine.log.directory, key=cfg.secret_key, old_keys=cfg.old_secret_keys, any_signer=True,
        max_body=cfg.max_record_size, segment_size=cfg.segment_size, fsync=False,
        quarantine_dir=engine.log.quarantine_dir)
    try:
        covered = engine.store.covered()
        for item in reader.scan(Position(1, 0)):
            if not isinstance(item, Entry) or item.frame.signer == 0:
                continue
            if item.pos < covered and not live(engine, item.pos):
                continue
            if item.frame.signer == record.UNKNOWN_SIGNER:
                use.unknown_records += 1
                use.oldest_unknown = use.oldest_unknown or _job_id(item.frame.body)
            else:
                use.records += 1
                use.oldest_job = use.oldest_job or _job_id(item.frame.body)
    finally:
        if reader is not engine.log:
            reader.close()
    for name, raw in snapshots(engine):
        if raw[:4] != SIGNED_MAGIC:
            continue
        signer = engine.store.shelf.signer(name, raw)
        if signer is None:
            use.unknown_snapshots += 1
            use.oldest_unknown = use.oldest_unknown or name
        elif signer:
            use.snapshots += 1
            use.oldest_job = use.oldest_job or name
    return use


def require(engine: Parts, missing: tuple[str, ...]) -> None:
    """At open, before any record is read: old keys ``missing`` are pending but were not given.
    Raise OldKeyNeeded if live records or snapshots were signed by a key not given; else retire
    them (nothing they signed is left)."""
    use = key_use(engine, unknown=True)
    if use.unknown_records or use.unknown_snapshots:
        raise OldKeyNeeded(
            f"{engine.path}: {use.unknown_records} live log record(s) and {use.unknown_snapshots}"
            f" state snapshot(s) were signed with an old secret key that was not given (oldest:"
            f" job {use.oldest_unknown!r}); nothing was read or changed. Give the old key in"
            " $JOBQ_OLD_SECRET_KEYS (old_secret_keys); once `jobq rekey` has re-signed them"
            " with the current key, it can be dropped",
            path=engine.path, records=use.unknown_records, snapshots=use.unknown_snapshots,
            oldest_job=use.oldest_unknown)
    keys.retire(engine.path, missing)


def rekey(engine: Parts) -> RekeyReport:
    """Re-sign every live record and snapshot an old key signed with the current key. Safe while
    producers and workers run."""
    if engine.config.secret_key is None:
        raise InvalidArgument(f"{engine.path} is not signed: there is no key to re-sign with (a"
                              " queue created without a key cannot be given one)")
    report = compaction.compact(engine, resign=True)
    snapshots = _resign_snapshots(engine)
    left = key_use(engine)
    result = RekeyReport(report.records_resigned, snapshots, left.records, left.snapshots,
                         len(keys.pending(keys.read(engine.path))), report)
    log.info("maintenance.rekeyed", records_resigned=result.records_resigned,
             snapshots_resigned=snapshots, records_left=left.records,
             snapshots_left=left.snapshots, old_keys_pending=result.old_keys_pending)
    return result


def _resign_snapshots(engine: Parts) -> int:
    """Re-sign the snapshots an old key signed, a page per write transaction; return how many."""
    shelf, done, after = engine.store.shelf, 0, b""
    while True:
        with engine.store.transaction() as conn:  # read and rewrite under one lock: none lost
            rows = conn.execute("SELECT key, value FROM Dict WHERE key > CAST(? AS BLOB)"
                                " ORDER BY key LIMIT ?", (after, PAGE)).fetchall()
            updates = []
            for raw_key, raw in rows:
                name = raw_key.decode("utf-8", "replace")
                if raw[:4] == SIGNED_MAGIC and shelf.signer(name, raw):
                    updates.append((shelf.resign(name, raw), raw_key))
            conn.executemany("UPDATE Dict SET value = ? WHERE key = ?", updates)
        done += len(updates)
        if updates:
            compaction.crash_point("snapshots_resigned")
        if len(rows) < PAGE:
            return done
        after = rows[-1][0]


def snapshots(engine: Parts) -> Iterator[tuple[str, bytes]]:
    """(job id, stored value) of every snapshot, read a page at a time."""
    after = b""
    while True:
        with engine.store.reading():
            rows = engine.store.conn.execute(
                "SELECT key, value FROM Dict WHERE key > CAST(? AS BLOB) ORDER BY key LIMIT ?",
                (after, PAGE)).fetchall()
        for raw_key, raw in rows:
            yield raw_key.decode("utf-8", "replace"), raw
        if len(rows) < PAGE:
            return
        after = rows[-1][0]


def live(engine: Parts, pos: Position) -> bool:
    """Does a job point at the record at ``pos``?"""
    with engine.store.reading():
        return engine.store.conn.execute("SELECT 1 FROM jobs WHERE seq = ?",
                                        (seq_of(pos),)).fetchone() is not None


def _job_id(body: bytes) -> str | None:
    try:
        return job_record.decode_meta(body)[0].job_id
    except CorruptRecord:
        return None
