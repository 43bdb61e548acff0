"""``shelve.Shelf`` over :mod:`jobq.local.sqlite_dbm`, loading through jobq's unpickler and signer.

``shelve.Shelf`` unpickles with a bare ``pickle.Unpickler``; the state store must instead apply the
queue's module remap and allow-list, and verify a snapshot's signature before unpickling it
(:mod:`jobq.codec`, which every engine stores snapshots with).
"""

from __future__ import annotations

import shelve
from typing import Any

from .. import pickling
from ..codec import SIGNED_MAGIC, SnapshotCodec
from .sqlite_dbm import SqliteDbm

__all__ = ["SIGNED_MAGIC", "StateShelf"]


class StateShelf(shelve.Shelf, SnapshotCodec):  # type: ignore[type-arg]
    """A shelf whose values are stored by :class:`SnapshotCodec`."""

    def __init__(self, mapping: SqliteDbm, *, rules: pickling.PickleRules = pickling.DEFAULT_RULES,
                 secret_key: bytes | None = None, old_keys: tuple[bytes, ...] = ()) -> None:
        shelve.Shelf.__init__(self, mapping, protocol=pickling.PROTOCOL, writeback=False,
                              keyencoding="utf-8")
        SnapshotCodec.__init__(self, rules=rules, secret_key=secret_key, old_keys=old_keys)

    def __getitem__(self, key: str) -> Any:
        return self.decode(key, self.dict[key.encode(self.keyencoding)])

    def __setitem__(self, key: str, value: Any) -> None:
        self.dict[key.encode(self.keyencoding)] = self.encode(key, value)

    def raw(self, key: str) -> bytes:
        return self.dict[key.encode(self.keyencoding)]
