"""What key rotation counts and reports, whatever the engine (:mod:`jobq.local.rekey`,
:mod:`jobq.postgres.rekey`): what old keys, or keys not given, still sign, and what one
``jobq rekey`` did."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["KeyUse", "RekeyReport"]


@dataclasses.dataclass
class KeyUse:
    """Live records and snapshots signed by an old key given, or by no key given."""

    records: int = 0
    snapshots: int = 0
    unknown_records: int = 0
    unknown_snapshots: int = 0
    oldest_job: str | None = None  # the first job (in arrival order) an old key signed
    oldest_unknown: str | None = None  # the same, for no key given

    @property
    def old(self) -> int:
        return self.records + self.snapshots


@dataclasses.dataclass(frozen=True)
class RekeyReport:
    """What one ``rekey`` did, and what still needs an old key after it."""

    records_resigned: int
    snapshots_resigned: int
    records_left: int  # signed by an old key meanwhile (a process not yet given the new key)
    snapshots_left: int
    old_keys_pending: int  # still listed: retired by the first open without them
    compaction: Any = None  # the directory engine's CompactReport (it re-signs by compacting)

    @property
    def can_drop_old_keys(self) -> bool:
        return not (self.records_left or self.snapshots_left)
