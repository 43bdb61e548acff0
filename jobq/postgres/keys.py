"""Which secret keys a queue in PostgreSQL accepts: the current key signs, old keys only verify.

The directory engine's rules (:mod:`jobq.local.keys`), kept in the queue's ``jobq_meta`` row
instead of ``jobq.json``: ``key_check`` is the fingerprint of the current key, ``old_key_checks``
those of the old keys whose records or snapshots may still be in the queue (never the keys).
Rotating is opening the queue with a new current key and the old one among ``old_secret_keys``:
that open finds the row's current key among the old keys given and makes the new key current,
listing the old one as pending (one transaction, under the row's lock: two processes rotating at
once rotate once). A process given the old key as its current one and the new key among its old
ones is let in (a rolling restart): it verifies what the others sign, and they what it signs.

An old key stays listed until an open without it finds nothing it signed
(:func:`jobq.postgres.rekey.require`): that open is the operator's word that no process signs
with it any more. ``jobq rekey`` re-signs what it signed, so that nothing is left.

A process that opened the queue before a rotation, with the old key alone, meets records and
snapshots the new key signed. Their signatures fail, and taking them for damage would end their
jobs for every process: :func:`still_current` is asked first, and raises WrongSecretKey when the
queue's key is no longer this process's (nothing is written).

While old keys are listed an older jobq would take what they signed for damage: the listing came
with schema version 2 (:mod:`jobq.postgres.schema`), which a jobq of version 1 refuses to open.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from ..codec import SIGNED_MAGIC, SnapshotCodec, key_check
from ..errors import CorruptRecord, WrongSecretKey
from .._logging import get_logger
from ..pickling import PickleRules
from ..record import SIGNATURE_MISMATCH
from .db import Db
from .schema import QueueMeta

log = get_logger(__name__)

_ROW = "SELECT key_check, old_key_checks FROM jobq_meta WHERE queue = %s"


def admit(db: Db, meta: QueueMeta, key: bytes, old_keys: tuple[bytes, ...]) -> tuple[str, ...]:
    """At open: accept the keys given, or raise WrongSecretKey; rotate if the queue's current key
    is among ``old_keys``. Returns the fingerprints of old keys still listed that were not
    given (whether anything still needs them is for :func:`jobq.postgres.rekey.require`)."""
    where = db.loc.location
    current = key_check(key)
    given = {key_check(k) for k in old_keys}
    stored, pending = meta.key_check, meta.old_key_checks
    if not hmac.compare_digest(str(stored), str(current)):
        if stored in given and current in pending:
            # Mid-rollout: this process signs with the key being rotated out and verifies with
            # the new one. Its records stay readable while that key is pending.
            log.warning("queue.signing_with_old_key", path=where,
                        message="this process signs with an old key of the queue: give it the"
                                " queue's current key before running `jobq rekey`")
        elif stored in given:
            pending = _rotate(db, current, given)
        elif current in pending:
            raise WrongSecretKey(
                f"{where} was rotated to another secret key: this key is one of its old keys."
                f" Set $JOBQ_SECRET_KEY (secret_key) to its current key, and give this one in"
                f" $JOBQ_OLD_SECRET_KEYS (old_secret_keys) until `jobq rekey` has re-signed"
                f" what it signed", path=where)
        else:
            tried = f" (nor any of the {len(old_keys)} old keys given)" if old_keys else ""
            raise WrongSecretKey(f"{where} was written with a different secret key{tried}",
                                 path=where)
    return tuple(c for c in pending if c not in given and c != current)


def _rotate(db: Db, current: str | None, given: set[str | None]) -> tuple[str, ...]:
    """Make ``current`` the queue's key, listing the key it replaces as pending; return the
    keys pending now. Read again under the row's lock: another process may have rotated."""
    where = db.loc.location
    with db.transaction("rotate the queue's secret key") as conn:
        row = conn.execute(_ROW + " FOR UPDATE", (db.loc.queue,)).fetchone()
        assert row is not None  # made by schema.open_queue; a queue's row is never deleted
        was, listed = row[0], list(row[1])
        if was == current:
            return tuple(listed)  # another process rotated it meanwhile
        if was not in given:
            raise WrongSecretKey(f"{where} was rotated to yet another secret key meanwhile",
                                 path=where)
        old = list(dict.fromkeys(c for c in [was, *listed] if c != current))
        conn.execute("UPDATE jobq_meta SET key_check = %s, old_key_checks = %s WHERE queue = %s",
                     (current, old, db.loc.queue))
    log.warning("queue.key_rotated", path=where, old_keys_pending=len(old),
                message="new records are signed with the new key; keep the old key among the"
                        " old keys until `jobq rekey` has re-signed what it signed")
    return tuple(old)


def pending(db: Db) -> tuple[str, ...]:
    """Fingerprints of the old keys whose records may remain, as the queue's row lists them."""
    found = db.execute(_ROW, (db.loc.queue,))
    return tuple(found[0][1]) if found else ()


def signs(db: Db, key: bytes) -> None:
    """WrongSecretKey unless ``key`` is the queue's current key: a process of a rolling restart
    signs with an old one, and re-signing with it (rekey) would undo the rotation."""
    found = db.execute(_ROW, (db.loc.queue,), "read the queue's key")
    if found and found[0][0] != key_check(key):
        raise WrongSecretKey(
            f"{db.loc.location}: this process's secret key is not the queue's current key (it is"
            f" one of its old keys): run jobq rekey with the current key in $JOBQ_SECRET_KEY"
            f" (secret_key), or it would re-sign what the current key signed with an old one",
            path=db.loc.location)


def retire(db: Db, checks: tuple[str, ...] | list[str]) -> int:
    """Drop these fingerprints from the old keys pending; return how many were listed."""
    with db.transaction("retire old secret keys") as conn:
        row = conn.execute(_ROW + " FOR UPDATE", (db.loc.queue,)).fetchone()
        old = list(row[1]) if row else []
        left = [c for c in old if c not in checks]
        if len(left) == len(old):
            return 0
        conn.execute("UPDATE jobq_meta SET old_key_checks = %s WHERE queue = %s",
                     (left, db.loc.queue))
    log.info("queue.old_key_retired", path=db.loc.location, retired=len(old) - len(left),
             old_keys_pending=len(left))
    return len(old) - len(left)


def still_current(db: Db, key: bytes | None) -> None:
    """Before a record or snapshot whose signature none of our keys matches is taken for
    damage: if the queue's key was changed since this process opened the queue, it is most
    likely signed with the new key, which this process was not given. Refuse with
    WrongSecretKey instead (the caller writes nothing)."""
    if key is None:
        return
    found = db.execute(_ROW, (db.loc.queue,), "read the queue's key")
    if found and found[0][0] != key_check(key):
        raise WrongSecretKey(
            f"{db.loc.location}: a record is signed with a key this process was not given: the"
            f" queue's secret key was changed (rotated) after this process opened it. Restart"
            f" it with the queue's current key in $JOBQ_SECRET_KEY (secret_key), and its key in"
            f" $JOBQ_OLD_SECRET_KEYS (old_secret_keys) until `jobq rekey` has re-signed what it"
            f" signed", path=db.loc.location)


def check_damage(db: Db, key: bytes | None, cause: BaseException) -> None:
    """:func:`still_current`, for a record found damaged by ``cause``, if its signature failed."""
    if SIGNATURE_MISMATCH in str(getattr(cause, "reason", "")):
        still_current(db, key)


class Codec(SnapshotCodec):
    """Snapshots signed and verified as every engine does (:class:`jobq.codec.SnapshotCodec`);
    one whose signature no key given matches is a WrongSecretKey, not damage, once the queue's
    key has changed since this process opened it (``stale`` checks)."""

    def __init__(self, *, rules: PickleRules, secret_key: bytes | None,
                 old_keys: tuple[bytes, ...], stale: Callable[[], None]) -> None:
        super().__init__(rules=rules, secret_key=secret_key, old_keys=old_keys)
        self._stale = stale

    def decode(self, key: str, raw: bytes) -> Any:
        try:
            return super().decode(key, raw)
        except CorruptRecord:
            if raw[:4] == SIGNED_MAGIC and self._key is not None and self.signer(key, raw) is None:
                self._stale()  # raises if the key changed; a failed check costs this read only
            raise


def codec(db: Db, rules: PickleRules, key: bytes | None, old_keys: tuple[bytes, ...]) -> Codec:
    return Codec(rules=rules, secret_key=key, old_keys=old_keys,
                 stale=lambda: still_current(db, key))
