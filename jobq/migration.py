"""What ``jobq migrate`` does: bring a queue's storage up to this jobq's version, or say whether
it is.

The engines' storage is :func:`jobq.engines.migrate`'s to know; this dataclass is kept out of
:mod:`jobq.engines`, which every process that opens a queue imports: a worker starts without
building it.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import config as config_mod
from . import engines


@dataclass(frozen=True)
class Migration:
    """What ``jobq migrate`` found at a location: the storage's version, and this jobq's."""

    where: str
    found: int  # 0: nothing made yet
    current: int
    kind: str  # "the jobq schema" or "the queue directory's format"

    @property
    def pending(self) -> bool:
        return self.found < self.current


def migrate(cfg: config_mod.QueueConfig, *, check: bool) -> Migration:
    """Bring the storage at ``cfg.path`` up to this jobq's version (``check``: only read it).

    IncompatibleFormat if it is newer. A directory's format is upgraded by any open; so is a
    PostgreSQL schema, but a deploy may want it done once, first, at a time it chose.
    """
    where, found, current, kind = engines.migrate(cfg, check=check)
    return Migration(where, found, current, kind)
