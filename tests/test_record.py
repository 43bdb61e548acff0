"""The record frame: golden bytes, verification before trust, signatures."""

from __future__ import annotations

import struct
import zlib

import pytest

from jobq import record

KEY = b"k" * 32


def test_frame_bytes_are_stable():
    """A frame's bytes are the documented layout; changing them breaks every existing log."""
    frame = record.encode(record.KIND_JOB, b"hello")
    head = b"JQ" + bytes([1, 1, 0, 0, 0, 0]) + struct.pack("<II", 5, zlib.crc32(b"hello"))
    assert frame == head + struct.pack("<I", zlib.crc32(head)) + b"hello"
    assert frame.hex() == "4a510101000000000500000086a61036" "3341d299" "68656c6c6f"
    assert record.HEADER_SIZE == 20 and len(frame) == 25


def test_round_trip_unsigned_and_signed():
    """Encoded bodies decode back, with and without a key."""
    for key in (None, KEY):
        data = record.encode(record.KIND_JOB, b"body bytes", key)
        frame = record.decode(data, 0, key=key, max_body=100)
        assert (frame.kind, frame.body, frame.size) == (record.KIND_JOB, b"body bytes", len(data))


@pytest.mark.parametrize("signed", [False, True], ids=["crc", "hmac"])
def test_every_flipped_byte_is_detected(signed):
    """No single-byte change anywhere in a frame is accepted."""
    key = KEY if signed else None
    data = record.encode(record.KIND_JOB, b"some body to protect", key)
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= bit
            with pytest.raises((record.Damaged, record.Incomplete)):
                record.decode(bytes(bad), 0, key=key, max_body=1000)


def test_truncated_frame_is_incomplete_not_damaged():
    """Every proper prefix of a frame reads as incomplete, so a write in progress is waited for."""
    data = record.encode(record.KIND_JOB, b"x" * 50)
    for cut in range(1, len(data)):
        with pytest.raises(record.Incomplete):
            record.decode(data[:cut], 0, key=None, max_body=1000)


def test_body_over_limit_is_damaged():
    """A header announcing more than max_body is refused before the body is read."""
    data = record.encode(record.KIND_JOB, b"x" * 100)
    with pytest.raises(record.Damaged, match="exceeds the limit"):
        record.decode(data, 0, key=None, max_body=99)


def test_wrong_or_missing_key_is_damaged():
    """Signed records need the right key; unsigned ones are refused when a key is required."""
    signed = record.encode(record.KIND_JOB, b"body", KEY)
    with pytest.raises(record.Damaged, match="signature mismatch"):
        record.decode(signed, 0, key=b"z" * 32, max_body=100)
    with pytest.raises(record.Damaged, match="without a secret key"):
        record.decode(signed, 0, key=None, max_body=100)
    with pytest.raises(record.Damaged, match="not signed"):
        record.decode(record.encode(record.KIND_JOB, b"body"), 0, key=KEY, max_body=100)


def test_probe_finds_genuine_headers_only():
    """probe() accepts a real header, rejects a magic lookalike, and says None when cut short."""
    data = record.encode(record.KIND_JOB, b"abc")
    assert record.probe(data, 0, max_body=100) is True
    assert record.probe(b"JQ" + b"\0" * 30, 0, max_body=100) is False
    assert record.probe(data[:10], 0, max_body=100) is None


def test_a_body_ending_in_a_zero_byte_is_refused():
    """The log tells where its records end by the last non-zero byte: no frame may end in one."""
    for key in (None, KEY):
        for body in (b"", b"ends in zero\0"):
            with pytest.raises(ValueError, match="non-zero byte"):
                record.encode(record.KIND_JOB, body, key)
            with pytest.raises(ValueError, match="non-zero byte"):
                record.header(record.KIND_JOB, body, key)


def test_frame_size_trusts_the_header_alone_and_only_a_genuine_one():
    """A writer steps over other writers' frames by their headers: a torn body does not matter,
    a damaged or cut-off header, or one over the limit, gives no size."""
    for key in (None, KEY):
        data = record.encode(record.KIND_JOB, b"x" * 40, key)
        head = len(data) - 40
        assert record.frame_size(data, 0, max_body=40) == len(data)
        assert record.frame_size(data[:head] + bytes(40), 0, max_body=40) == len(data)
        assert record.frame_size(b"pad" + data, 3, max_body=40) == len(data)
        assert record.frame_size(data[:record.HEADER_SIZE - 1], 0, max_body=40) is None
        assert record.frame_size(data, 0, max_body=39) is None
        assert record.frame_size(bytes(64), 0, max_body=40) is None
        for i in range(record.HEADER_SIZE):
            bad = bytearray(data)
            bad[i] ^= 0x01
            assert record.frame_size(bytes(bad), 0, max_body=40) is None, i
