"""The log's record frame: a small fixed header checked before a byte of the body is trusted.

Layout (little-endian), defined here and nowhere else::

    offset  size  field
         0     2  magic          b"JQ"
         2     1  format version 1
         3     1  kind           1 = job (body layout: jobq.job_record)
         4     1  flags          bit 0: a 32-byte HMAC-SHA256 follows the header
         5     3  reserved       zero
         8     4  body length    bytes of body that follow (after the HMAC, if any)
        12     4  body CRC-32    zlib.crc32 of the body
        16     4  header CRC-32  zlib.crc32 of bytes 0..15; a header that passes is genuine, so its
                                 length can be trusted when resynchronising after damage
        20    32  HMAC-SHA256    only with flag bit 0: over bytes 0..15 and the body, keyed by the
                                 queue's secret key (or, while a key is being rotated, by one of
                                 its old keys: see jobq.local.keys; the frame does not say which)
    20 or 52   n  body

A body never ends in a zero byte (a job's ends in its pickle's STOP opcode; ``encode`` refuses
one that does), so neither does a frame: the log tells where its records end from the zero fill
written ahead of them, by finding the last non-zero byte.

Encode and decode are pure (no I/O): the log module owns files, this module owns bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Final, NamedTuple

MAGIC: Final = b"JQ"
FORMAT_VERSION: Final = 1
KIND_JOB: Final = 1
KINDS: Final = frozenset({KIND_JOB})
FLAG_SIGNED: Final = 0x01
SIGNATURE_MISMATCH: Final = "signature mismatch"

_HEAD = struct.Struct("<2sBBB3xII")  # magic, version, kind, flags, body length, body crc
_HEAD_CRC = struct.Struct("<I")
_WHOLE_HEAD = struct.Struct("<2sBBB3xIII")  # _HEAD then the header CRC, read at once
HEADER_SIZE: Final = _HEAD.size + _HEAD_CRC.size
MAC_SIZE: Final = 32  # HMAC-SHA256's (hashlib is imported only where a key is used)
assert _HEAD.size == 16 and HEADER_SIZE == 20 and MAC_SIZE == 32


UNKNOWN_SIGNER: Final = -1  # Frame.signer of a frame no given key signed (see decode)


class Frame(NamedTuple):
    """A record whose header, checksum and (if signed) signature all verified."""

    kind: int
    body: bytes
    size: int  # bytes the whole frame occupies in the log
    signer: int = 0  # 0: the current key (or unsigned); i: old key i (1-based); UNKNOWN_SIGNER


assert len(Frame._fields) == 4  # as decode gives them


_tuple_new = tuple.__new__  # see decode


class Damaged(Exception):
    """The bytes at this position are not a valid frame (internal to the log scanner)."""


class Incomplete(Exception):
    """The buffer ends before the frame does; ``needed`` is the whole frame's size if known."""

    def __init__(self, needed: int | None) -> None:
        super().__init__(needed)
        self.needed = needed


def frame_overhead(key: bytes | None) -> int:
    return HEADER_SIZE + (MAC_SIZE if key else 0)


def _mac(key: bytes, head: bytes | memoryview, body: bytes | memoryview) -> bytes:
    import hashlib
    import hmac  # only with a key: hashlib loads OpenSSL (issue 19)

    h = hmac.new(key, head, hashlib.sha256)
    h.update(body)
    return h.digest()


def encode(kind: int, body: bytes, key: bytes | None = None) -> bytes:
    """Frame ``body``; with ``key`` the frame is signed with HMAC-SHA256."""
    if not body or not body[-1]:
        raise ValueError("a record body must end in a non-zero byte")
    if key:
        return header(kind, body, key) + body
    # Unsigned, the common case, written out: one call fewer per enqueued job.
    head = _HEAD.pack(MAGIC, FORMAT_VERSION, kind, 0, len(body), zlib.crc32(body))
    return b"".join((head, _HEAD_CRC.pack(zlib.crc32(head)), body))


def header(kind: int, body: bytes, key: bytes | None = None) -> bytes:
    """The frame of ``body`` up to the body itself: header, header CRC and (with ``key``) HMAC.

    A batch is framed as header, body, header, body... joined once, not copied twice.
    """
    if not body or not body[-1]:
        raise ValueError("a record body must end in a non-zero byte")
    head = _HEAD.pack(MAGIC, FORMAT_VERSION, kind, FLAG_SIGNED if key else 0, len(body),
                      zlib.crc32(body))
    if key:
        return head + _HEAD_CRC.pack(zlib.crc32(head)) + _mac(key, head, body)
    return head + _HEAD_CRC.pack(zlib.crc32(head))


def probe(buf: bytes | memoryview, pos: int, *, max_body: int) -> bool | None:
    """Is there a genuine frame header at ``pos``? None if ``buf`` ends inside the header.

    Used to resynchronise after damage: a header whose CRC matches was written as a header.
    """
    if len(buf) - pos < HEADER_SIZE:
        return None
    return frame_size(buf, pos, max_body=max_body) is not None


def frame_size(buf: bytes | memoryview, pos: int, *, max_body: int) -> int | None:
    """The size of the frame whose genuine header is at ``buf[pos:]``; None if none is there.

    Only the header is checked: the body may be torn. A writer looking for the end of the
    records uses it to step over the frames other processes appended.
    """
    if len(buf) - pos < HEADER_SIZE:
        return None
    head = buf[pos:pos + _HEAD.size]
    magic, version, kind, flags, length, _ = _HEAD.unpack(head)
    (head_crc,) = _HEAD_CRC.unpack_from(buf, pos + _HEAD.size)
    if not (magic == MAGIC and zlib.crc32(head) == head_crc and version == FORMAT_VERSION
            and kind in KINDS and not flags & ~FLAG_SIGNED and length <= max_body):
        return None
    return HEADER_SIZE + (MAC_SIZE if flags & FLAG_SIGNED else 0) + length


def decode(buf: bytes | memoryview, pos: int, *, key: bytes | None, max_body: int,
           old_keys: tuple[bytes, ...] = (), any_signer: bool = False) -> Frame:
    """Verify and return the frame at ``buf[pos:]``.

    The signature is checked with ``key`` first, so a record the current key signed costs one
    HMAC as before; only when that fails is each of ``old_keys`` tried, and ``signer`` says which
    one matched. With ``any_signer`` a signature no key matches is returned as
    ``UNKNOWN_SIGNER`` instead of raised: for counting the records a missing key signed.

    Raises :class:`Incomplete` when ``buf`` ends first, :class:`Damaged` when the bytes are not a
    valid frame: bad magic or header CRC, an unknown version or kind, a body longer than
    ``max_body``, a bad body CRC, a missing or wrong signature.
    """
    available = len(buf) - pos
    if available < HEADER_SIZE:
        if bytes(buf[pos:pos + 2]) != MAGIC[:max(0, min(2, available))]:
            raise Damaged("bad magic")
        raise Incomplete(None)
    head = buf[pos:pos + _HEAD.size]
    magic, version, kind, flags, length, body_crc = _HEAD.unpack(head)
    if magic != MAGIC:
        raise Damaged("bad magic")
    (head_crc,) = _HEAD_CRC.unpack_from(buf, pos + _HEAD.size)
    if zlib.crc32(head) != head_crc:
        raise Damaged("header checksum mismatch")
    if version != FORMAT_VERSION:
        raise Damaged(f"record format version {version}, expected {FORMAT_VERSION}")
    if kind not in KINDS:
        raise Damaged(f"unknown record kind {kind}")
    signed = bool(flags & FLAG_SIGNED)
    if flags & ~FLAG_SIGNED:
        raise Damaged(f"unknown record flags {flags:#x}")
    if length > max_body:
        raise Damaged(f"record body of {length} bytes exceeds the limit of {max_body}")
    start = pos + HEADER_SIZE + (MAC_SIZE if signed else 0)
    end = start + length
    if end > len(buf):
        raise Incomplete(end - pos)
    body = buf[start:end]
    if zlib.crc32(body) != body_crc:
        raise Damaged("body checksum mismatch")
    if key is not None:
        import hmac  # only with a key: hashlib loads OpenSSL (issue 19)

        if not signed:
            raise Damaged("record is not signed, but the queue requires signatures")
        mac = buf[pos + HEADER_SIZE:start]
        if not hmac.compare_digest(_mac(key, head, body), mac):
            return Frame(kind, bytes(body), end - pos,
                         _old_signer(old_keys, head, body, mac, any_signer))
    elif signed:
        raise Damaged("record is signed, but the queue was opened without a secret key")
    # tuple.__new__: Frame's class called costs a Python call (a worker reads a frame a job)
    return _tuple_new(Frame, (kind, bytes(body), end - pos, 0))


def verified(buf: bytes, view: memoryview, pos: int, key: bytes | None,
             max_body: int) -> tuple[int, int, int] | None:
    """The kind, body start and end of the frame at ``buf[pos:]`` (``view`` is
    ``memoryview(buf)``) if it passes every check :func:`decode` makes, signed with ``key`` (or
    unsigned where ``key`` is None), copying nothing; None if any check fails or the frame is
    not whole in ``buf``: :func:`decode` then says what is wrong (or whom an old key signed).

    The one fast path of verification: :func:`scan` and the log's reader
    (:mod:`jobq.local.log_read`) check every frame they pass on with it.
    """
    if len(buf) - pos < HEADER_SIZE:
        return None
    magic, version, kind, flags, length, body_crc, head_crc = _WHOLE_HEAD.unpack_from(buf, pos)
    start = pos + HEADER_SIZE + (MAC_SIZE if flags else 0)
    end = start + length
    if (magic == MAGIC and zlib.crc32(view[pos:pos + _HEAD.size]) == head_crc
            and version == FORMAT_VERSION and kind in KINDS
            and flags == (FLAG_SIGNED if key is not None else 0)
            and length <= max_body and end <= len(buf)
            and zlib.crc32(view[start:end]) == body_crc
            and (key is None or signed_by(key, view, pos, start, end))):
        return kind, start, end
    return None


def scan(buf: bytes, *, key: bytes | None, max_body: int) -> Iterator[tuple[int, int, int]]:
    """Verify the frames ``buf`` holds end to end, as :func:`decode` does; yield each one's
    start, body start and end, copying nothing (a batch of new records is checked this way).

    Each check is decode's (:func:`verified`); when one fails, decode itself raises its error
    for that frame.
    """
    view = memoryview(buf)
    pos, size = 0, len(buf)
    while pos < size:
        found = verified(buf, view, pos, key, max_body)
        if found is None:
            decode(buf, pos, key=key, max_body=max_body)  # raises what is wrong
            raise Damaged("not a valid record")  # (a frame decode accepts passes above)
        _, start, end = found
        yield pos, start, end
        pos = end


def signed_by(key: bytes, buf: bytes | memoryview, pos: int, start: int, end: int) -> bool:
    """Does the signature of the frame at ``buf[pos:]``, whose body is ``buf[start:end]``, verify
    with ``key``? (Its header and body checked already, as :func:`decode` checks them first.)"""
    import hmac  # only with a key: hashlib loads OpenSSL (issue 19)

    return hmac.compare_digest(_mac(key, buf[pos:pos + _HEAD.size], buf[start:end]),
                               buf[pos + HEADER_SIZE:start])


def _old_signer(old_keys: tuple[bytes, ...], head: bytes | memoryview, body: bytes | memoryview,
                mac: bytes | memoryview, any_signer: bool) -> int:
    """Which old key signed a frame the current key did not (1-based); Damaged if none did."""
    import hmac  # only with a key: hashlib loads OpenSSL (issue 19)

    for i, old in enumerate(old_keys, 1):
        if hmac.compare_digest(_mac(old, head, body), mac):
            return i
    if any_signer:
        return UNKNOWN_SIGNER
    raise Damaged(SIGNATURE_MISMATCH)

