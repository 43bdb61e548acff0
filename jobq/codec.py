"""How a job's state snapshot is stored, whatever the engine: a pickle, signed with the queue's
secret key when it has one (HMAC-SHA256 over the job id and the pickle), and verified before a
byte of it is unpickled. Old keys verify only (see :mod:`jobq.local.keys`).

Unsigned, a value is a plain pickle, so a queue directory's state file stays readable by a stock
``shelve`` on Python 3.13.
"""

from __future__ import annotations

import struct
from typing import Any

from . import pickling
from .errors import CorruptRecord

def key_check(key: bytes | None) -> str | None:
    """A fingerprint of a secret key that tells whether a key matches, without revealing it:
    every engine stores it to refuse a queue opened with another key."""
    if key is None:
        return None
    import hashlib
    import hmac  # only with a key: hashlib loads OpenSSL (issue 19)

    return hmac.new(key, b"jobq key check", hashlib.sha256).hexdigest()[:32]


SIGNED_MAGIC = b"JQS1"
_MAC_SIZE = 32  # HMAC-SHA256's
MARKER = pickling.dumps(None)  # what a job just indexed stores, unsigned (see encode_marker)


class SnapshotCodec:
    """Job state snapshots as stored bytes: pickled by :mod:`jobq.pickling`, signed when a key
    is given, and verified before a byte is unpickled."""

    def __init__(self, *, rules: pickling.PickleRules = pickling.DEFAULT_RULES,
                 secret_key: bytes | None = None, old_keys: tuple[bytes, ...] = ()) -> None:
        self._rules = rules
        self._key = secret_key
        self._old_keys = old_keys  # verify only, after the current key fails (jobq.local.keys)

    def encode(self, key: str, value: Any) -> bytes:
        data = pickling.dumps(value)
        if self._key is None:
            return data
        return SIGNED_MAGIC + self._mac(key, data) + data

    @property
    def signed(self) -> bool:
        """Whether stored values are signed (then a marker is each job's own bytes)."""
        return self._key is not None

    def encode_marker(self, key: str) -> bytes:
        """``encode(key, None)``: the marker of a job just indexed (see :mod:`jobq.local.snapshots`).

        Unsigned it is the same bytes for every job, pickled once instead of once per job.
        """
        return MARKER if self._key is None else self.encode(key, None)

    def decode(self, key: str, raw: bytes) -> Any:
        """Verify then unpickle one stored value; a bad signature is never unpickled."""
        if self._key is not None:
            import hmac  # only with a key: hashlib loads OpenSSL (issue 19)

            if raw[:4] != SIGNED_MAGIC:
                raise CorruptRecord(f"state snapshot {key!r} is not signed, but the queue requires"
                                    " signatures", job_id=key)
            mac, data = raw[4:4 + _MAC_SIZE], raw[4 + _MAC_SIZE:]
            if not hmac.compare_digest(mac, self._mac(key, data)) \
                    and self.signer(key, raw) is None:  # an old key's (jobq.local.keys), or forged
                raise CorruptRecord(f"state snapshot {key!r} failed its signature check", job_id=key)
        elif raw[:4] == SIGNED_MAGIC:
            raise CorruptRecord(f"state snapshot {key!r} is signed, but the queue was opened"
                                " without a secret key", job_id=key)
        else:
            data = raw
        return pickling.loads(data, self._rules)

    def signer(self, key: str, raw: bytes) -> int | None:
        """Which key signed the stored value: 0 the current one, i old key i (1-based); None if
        none did (or it is not signed). The current key is tried first: it signed almost all."""
        import hmac  # only with a key: hashlib loads OpenSSL (issue 19)

        mac, data = raw[4:4 + _MAC_SIZE], raw[4 + _MAC_SIZE:]
        for i, secret in enumerate((self._key, *self._old_keys)):
            if secret is not None and hmac.compare_digest(mac, self._mac(key, data, secret)):
                return i
        return None

    def resign(self, key: str, raw: bytes) -> bytes:
        """A signed value's bytes, signed with the current key instead (nothing is unpickled)."""
        data = raw[4 + _MAC_SIZE:]
        return SIGNED_MAGIC + self._mac(key, data) + data

    def _mac(self, key: str, data: bytes, secret: bytes | None = None) -> bytes:
        # The key is bound into the MAC so a valid snapshot cannot be copied onto another job;
        # its length comes first so no (key, value) pair can sign like another one.
        import hashlib
        import hmac  # only with a key: hashlib loads OpenSSL (issue 19)

        secret = secret or self._key
        assert secret is not None
        name = key.encode()
        h = hmac.new(secret, struct.pack("<I", len(name)), hashlib.sha256)
        h.update(name)
        h.update(data)
        return h.digest()
