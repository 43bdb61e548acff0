"""The upkeep of a queue directory that a worker's supervisor does while its children run jobs:
the SQLite WAL kept at its working size and checkpointed (see :mod:`jobq.local.wal`), and automatic
compaction once purges have left enough dead log bytes.

The supervisor calls :meth:`LocalUpkeep.step` every ``reap_interval``. A compaction step is one bounded
piece of work: a look at the count of records purged since the last compaction (one read); when
it changed, an estimate of the dead bytes (:func:`jobq.local.compaction.dead_bytes`, at most every
ESTIMATE_EVERY seconds); during a
compaction, one segment (:func:`jobq.local.compaction.compaction_steps`). So the supervisor is never
away from its children for longer than one segment takes, and the children keep draining
meanwhile: they wait only while a segment's seqs are repointed and its file renamed. Only one
compaction runs at a time across processes; a worker that finds another one running tries again
at the next purge.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .compaction import compaction_steps, dead_bytes, purged_since
from ..errors import JobqError
from ..retention import Expiry

if TYPE_CHECKING:
    from .parts import Parts

# A segment is rewritten once half its bytes are dead: its live jobs are repointed under the write
# lock (about 10 µs each), so the children's claims never wait longer than the purges justify.
MIN_DEAD_SHARE = 0.5
# Nor a segment with more jobs still in it than this: about 0.5 s of repointing, measured with
# scripts/bench_compact.py (100,000 jobs held the claims for 0.9 s). jobq compact takes those.
MAX_LIVE = 50_000
# The most zeros the WAL is given at one upkeep step (every reap_interval): about 1 ms of the write
# lock with their fdatasync here, against some 6 ms for the whole 4 MiB at once.
PRESIZE_STEP = 1 << 20
# The estimate counts the jobs (tens of milliseconds for a million): at most this often, even
# while a large purge changes the purged count at every batch.
ESTIMATE_EVERY = 5.0


class LocalUpkeep:
    """Keeps the WAL ready, and compacts ``engine`` a segment at a time once about ``threshold``
    bytes of it are dead (never, with a threshold of 0)."""

    def __init__(self, engine: Parts, threshold: int, logger: Any) -> None:
        self.engine, self.threshold, self.log = engine, threshold, logger
        self._steps: Iterator[None] | None = None
        self._seen = 0  # the purged count last estimated: a new estimate only when it changes
        self._next_estimate = 0.0  # time.monotonic()
        self._expiry = Expiry(engine, logger)  # type: ignore[arg-type]  # a LocalEngine

    @property
    def busy(self) -> bool:
        """Is a compaction under way?"""
        return self._steps is not None

    def step(self, *, children_busy: bool) -> None:
        """One bounded piece of upkeep; a compaction's errors are logged, never raised (jobs come
        first)."""
        store = self.engine.store
        # A step of it at a time, not while the children make their first claims: the zeros
        # are written under the write lock (see jobq.local.wal). One stat once it is whole.
        store.presize_wal(PRESIZE_STEP)
        if children_busy:
            # The supervisor is idle while its children work: it checkpoints the WAL, which
            # a child committing a batch would otherwise do itself, now and then, for long.
            store.checkpoint()
        self._expiry.step()  # its purges count towards the next compaction
        if self.threshold:
            self._compact()

    def _compact(self) -> None:
        try:
            if self._steps is None and not self._start():
                return
            assert self._steps is not None
            next(self._steps)
        except StopIteration:
            self._steps = None
        except (JobqError, OSError) as exc:
            self.log.warning("worker.compaction_failed", error=str(exc))
            self.close()

    def _start(self) -> bool:
        purged = purged_since(self.engine)
        now = time.monotonic()
        if purged == self._seen or now < self._next_estimate:
            return False
        self._seen, self._next_estimate = purged, now + ESTIMATE_EVERY
        dead = dead_bytes(self.engine) if purged else 0
        if dead < self.threshold:
            return False
        self.log.info("worker.compaction_started", dead_bytes=dead, threshold=self.threshold)
        self._steps = compaction_steps(self.engine, min_dead_share=MIN_DEAD_SHARE,
                                       max_live=MAX_LIVE)
        return True

    def close(self) -> None:
        """Stop a compaction part-way (it lets go of its lock; what it did stays done)."""
        if self._steps is not None:
            self._steps.close()
            self._steps = None
