"""What the directory engine's operations (compaction, purge, verify, backup, rekey, upkeep)
work on: the queue's root, settings, log and state store. ``LocalEngine`` is one; typing them
against this, not the engine, keeps the engine above the operations it offers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..engine import Settings
    from .log import Log
    from .store import Store


class Parts(Protocol):
    path: str
    config: Settings
    log: Log
    store: Store
    shared_group: int | None
