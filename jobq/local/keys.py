"""Which secret keys a signed queue accepts: the current key signs, old keys only verify.

``jobq.json`` holds fingerprints, never keys: ``key_check`` of the current key and
``old_key_checks`` of the old keys whose records or snapshots may still be in the queue. Rotating
is opening the queue with a new current key and the old one among ``old_secret_keys``
(``$JOBQ_OLD_SECRET_KEYS``): that open finds the file's current key among the old keys given and
makes the new key current, listing the old one as still needed (one atomic, durable rewrite of
``jobq.json`` under ``keys.lock``; a crash leaves the old file or the new one, and either opens
with the same keys). A process given the old key as its current one and the new key among its old
ones is let in (a rolling restart): it verifies what the others sign, and they verify what it signs.

An old key stays listed until no live record or snapshot needs it: :func:`jobq.rekey.rekey`
re-signs them, and the first open without the key (:func:`jobq.rekey.require`) reads every record
and snapshot, retires the key if nothing needs it, and refuses to open if something does. Only an
open without the key retires it: that is the moment the operator says no process signs with it.

While an old key is listed the queue is marked format 3: an older jobq, which verifies with one key,
would take every record an old key signed for damage and set its job aside, so it refuses the queue
instead. Format 3 also marks a queue shared with a group (:mod:`jobq.local.permissions`), for the same
reason: retiring the last old key marks the queue format 2 again only if it is not shared.

Trying keys, not a key id in the frame: the current key is tried first, so the records it signed
cost what they cost before; a record of an old key costs one more HMAC per key tried
(``scripts/bench_keys.py``), and only until ``jobq rekey``. A key id would need a new record format
and a new snapshot format, and the frames written before the rotation would have none anyway.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from . import durable, permissions
from .._logging import get_logger
from ..codec import key_check
from ..errors import WrongSecretKey

if TYPE_CHECKING:
    import filelock

log = get_logger(__name__)

FORMAT_FILE = "jobq.json"
LOCK_FILE = "keys.lock"
PLAIN_FORMAT = 2  # the queue format without old keys pending, not shared
MARKED_FORMAT = 3  # old keys pending or shared with a group: format-2 readers must refuse it


def pending(info: dict[str, object]) -> list[str]:
    """Fingerprints of the old keys whose records may remain, as ``jobq.json`` lists them."""
    found = info.get("old_key_checks")
    return [c for c in found if isinstance(c, str)] if isinstance(found, list) else []


def with_keys(info: dict[str, object], current: str | None, old: list[str]) -> dict[str, object]:
    """``info`` with these fingerprints, and the format they and its sharing call for."""
    new = {k: v for k, v in info.items() if k != "old_key_checks"}
    shared = isinstance(info.get("shared_group"), int)
    new.update(key_check=current, format=MARKED_FORMAT if old or shared else PLAIN_FORMAT)
    if old:
        new["old_key_checks"] = old
    return new


def check(root: str, info: dict[str, object], key: bytes, old_keys: tuple[bytes, ...]
          ) -> tuple[str, ...]:
    """At open: accept the keys given, or raise WrongSecretKey; rotate if the file's current key is
    among ``old_keys``. Returns the fingerprints of old keys still listed that were not given
    (whether they are still needed is for :func:`jobq.rekey.require` to find out)."""
    import hmac  # only with a key: hashlib loads OpenSSL (issue 19)

    current = key_check(key)
    given = {key_check(k) for k in old_keys}
    if not hmac.compare_digest(str(info.get("key_check")), str(current)):
        if info.get("key_check") in given and current in pending(info):
            # Mid-rollout: this process signs with the key being rotated out and verifies with
            # the new one. Its records stay readable while that key is pending.
            log.warning("queue.signing_with_old_key", path=root,
                        message="this process signs with an old key of the queue: give it the"
                                " queue's current key before running `jobq rekey`")
        elif info.get("key_check") in given:
            info = _rotate(root, current, given)
        elif current in pending(info):
            raise WrongSecretKey(
                f"{root} was rotated to another secret key: this key is one of its old keys."
                f" Set $JOBQ_SECRET_KEY (secret_key) to its current key, and give this one in"
                f" $JOBQ_OLD_SECRET_KEYS (old_secret_keys) until `jobq rekey` has re-signed"
                f" what it signed",
                path=root)
        else:
            tried = f" (nor any of the {len(old_keys)} old keys given)" if old_keys else ""
            raise WrongSecretKey(f"{root} was written with a different secret key{tried}",
                                 path=root)
    return tuple(c for c in pending(info) if c not in given and c != current)


def still_current(root: str, key: bytes | None) -> None:
    """Before a record whose signature none of our keys matches is set aside as damage: if the
    queue's key was changed since this process opened the queue, the record is most likely
    signed with the new key, which this process was not given. Setting it aside would lose its
    job to every process, so refuse with WrongSecretKey instead (nothing is changed)."""
    if key is None:
        return
    try:
        current = read(root).get("key_check")
    except (OSError, ValueError):
        return  # the format file cannot tell: the damage is judged as before
    if current != key_check(key):
        raise WrongSecretKey(
            f"{root}: a record is signed with a key this process was not given: the queue's"
            f" secret key was changed (rotated) after this process opened it. Restart it with"
            f" the queue's current key in $JOBQ_SECRET_KEY (secret_key), and its key in"
            f" $JOBQ_OLD_SECRET_KEYS (old_secret_keys) until `jobq rekey` has re-signed what"
            f" it signed", path=root)


def _rotate(root: str, current: str | None, given: set[str | None]) -> dict[str, object]:
    """Make ``current`` the queue's key, listing the key it replaces as pending; return the
    format file as it now is. Read again under the lock: another process may have rotated."""
    with lock(root):
        info = read(root)
        was = info.get("key_check")
        if was == current:
            return info  # another process rotated it meanwhile
        if was not in given:
            raise WrongSecretKey(f"{root} was rotated to yet another secret key meanwhile",
                                 path=root)
        old = [c for c in [was, *pending(info)] if isinstance(c, str) and c != current]
        new = with_keys(info, current, old)
        write(root, new)
    log.warning("queue.key_rotated", path=root, old_keys_pending=len(old),
                message="new records are signed with the new key; keep the old key among the"
                        " old keys until `jobq rekey` has re-signed what it signed")
    return new


def retire(root: str, checks: tuple[str, ...] | list[str]) -> int:
    """Drop these fingerprints from the old keys pending; return how many were listed."""
    with lock(root):
        info = read(root)
        old = pending(info)
        left = [c for c in old if c not in checks]
        if len(left) == len(old):
            return 0
        write(root, with_keys(info, info.get("key_check"), left))  # type: ignore[arg-type]
    log.info("queue.old_key_retired", path=root, retired=len(old) - len(left),
             old_keys_pending=len(left))
    return len(old) - len(left)


def lock(root: str) -> filelock.FileLock:
    """Held while ``jobq.json`` is read and rewritten (a rotation, a retirement, a sharing), so
    that none of them writes back a file another one has just changed."""
    import filelock  # only those rare rewrites reach this

    return filelock.FileLock(os.path.join(root, LOCK_FILE), mode=permissions.file_mode(root))


def read(root: str) -> dict[str, object]:
    with open(os.path.join(root, FORMAT_FILE), "rb") as f:
        info = json.loads(f.read())
    assert isinstance(info, dict)
    return info


def write(root: str, info: dict[str, object]) -> None:
    """Replace the format file atomically and durably: a reader sees the old one or the new."""
    durable.atomic_write(os.path.join(root, FORMAT_FILE),
                         json.dumps(info, indent=1).encode() + b"\n")
