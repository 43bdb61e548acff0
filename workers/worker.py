"""``Worker``: a supervisor that claims jobs and runs each in one of its child processes.

The loop, one step at a time: collect what children report; handle children that died (a crash
is recorded as an interrupted attempt with its cause, and the child is replaced); kill children
whose job overran its timeout or ignored a cancellation past the grace period; reclaim the jobs of
workers that died; renew leases; then record every ended attempt and claim new jobs for idle
children in one transaction. Execution is at least once: a job whose worker dies runs again.
"""

from __future__ import annotations

import importlib
import itertools
from logging import DEBUG
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

import structlog

from jobq import Queue, transitions
from jobq.errors import ConfigError
from jobq.execution import Outcome, change_for, failure, log_transition
from jobq.state import Status
from jobq.store import Change, Claim

from . import liveness, slots
from .config import WorkerConfig
from .signals import StopRequests, handled
from .slots import Slot

log = structlog.get_logger(__name__)

GATHER_PAUSE = 0.001  # seconds; far below any job's latency that matters



@dataclass(frozen=True)
class Ended:
    """An attempt that ended, waiting to be recorded with the next transaction."""

    job_id: str
    token: int
    change: Change
    extra: dict[str, Any]


class Worker:
    """Runs jobs from ``queue`` in ``concurrency`` child processes until stopped.

    ``run(burst=True)`` returns once nothing is ready, nothing is running and no retry it
    scheduled is still to come.
    """

    def __init__(self, queue: Queue, *, concurrency: int = 1, **options: Any) -> None:
        self.queue = queue
        try:
            self.config = WorkerConfig(concurrency=concurrency, **options)
        except TypeError as exc:  # an unknown option name
            raise ConfigError(f"bad worker option: {exc}") from exc
        self.id = liveness.new_worker_id()
        self.stops = StopRequests()
        self.processed = 0
        self._log: Any = log
        self._log_claims = True
        self._slots: list[Slot] = []
        self._finished: list[Ended] = []
        self._started: list[tuple[str, int]] = []  # prefetched claims now running, to record
        self._retrying: set[str] = set()
        self._lock: liveness.LivenessLock | None = None
        self._next_reap = self._next_renew = 0.0
        self._stop_deadline: float | None = None

    def stop(self) -> None:
        """Ask for a graceful stop (as SIGTERM does); a second call stops at once."""
        self.stops.request()

    # -- the loop --------------------------------------------------------------------------------

    def run(self, burst: bool = False) -> int:
        """Run jobs until stopped (or, with ``burst``, until there is nothing left to do)."""
        self._import_modules()  # before forking, so every child has them already
        # Bound once: per-job events then cost only their formatting (claims: nothing at all,
        # unless debug events are wanted).
        self._log = log.bind(worker=self.id)
        self._log_claims = getattr(self._log, "is_enabled_for", lambda level: True)(DEBUG)
        self._lock = liveness.LivenessLock(self.queue.path, self.id)
        try:
            with handled(self.stops):
                self._slots = [self._start_child() for _ in range(self.config.concurrency)]
                log.info("worker.started", worker=self.id, concurrency=self.config.concurrency,
                         burst=burst)
                while not self._step(burst):
                    pass
        finally:
            self._shutdown()
        log.info("worker.stopped", worker=self.id, processed=self.processed)
        return self.processed

    def _step(self, burst: bool) -> bool:
        """One turn of the loop; True when the worker should stop."""
        now = time.monotonic()
        self._collect(self.config.poll_interval if not self._finished else 0)
        self._enforce_limits(now)
        if now >= self._next_reap:
            self._next_reap = now + self.config.reap_interval
            self._reap_dead_workers()
            self._watch_cancellations(now)
        if now >= self._next_renew:
            self._next_renew = now + self.config.lease_seconds / 3
            self.queue.store.renew(self.id, self.config.lease_seconds)
        self._settle()
        return self._should_stop(burst, now)

    def _import_modules(self) -> None:
        for name in self.config.imports:
            try:
                importlib.import_module(name)
            except Exception as exc:  # the module itself may raise anything while importing
                raise ConfigError(f"cannot import {name}: {type(exc).__name__}: {exc}") from exc

    def _should_stop(self, burst: bool, now: float) -> bool:
        self.stops.log_requests()
        busy = any(s.busy for s in self._slots)
        if self.stops.immediate or (self.stops.graceful and not busy):
            return True
        if self.stops.graceful:
            if self._stop_deadline is None:
                self._stop_deadline = now + self.config.shutdown_grace
            return now >= self._stop_deadline
        if burst and not busy and not self._finished and not self.queue.store.has_ready():
            return not self._retries_pending()
        return False

    def _retries_pending(self) -> bool:
        waiting = {Status.QUEUED, Status.FAILED}
        self._retrying = {j for j in self._retrying if self.queue.store.status(j) in waiting}
        return bool(self._retrying)  # the next turn's _collect waits poll_interval: no spin

    # -- children --------------------------------------------------------------------------------

    def _start_child(self) -> Slot:
        assert self._lock is not None
        return slots.start(self.queue, [self._lock.fd])

    def _collect(self, timeout: float) -> None:
        """Receive children's messages and notice children that died."""
        if self._slots and all(len(s.claims) > 1 for s in self._slots):
            # Every child has prefetched work to go on with: let reports gather rather than
            # waking up (and making a child wait on the pipe) for each one.
            time.sleep(GATHER_PAUSE)
        conns = {s.conn: s for s in self._slots}
        sentinels = {s.process.sentinel: s for s in self._slots}
        for ready in wait([*conns, *sentinels], timeout):
            slot = conns.get(ready)  # type: ignore[call-overload]
            while slot is not None and slot.conn.poll() and self._receive(slot):
                pass
        for index, slot in enumerate(self._slots):
            if not slot.process.is_alive():
                # A report sent just before it died still counts. At EOF poll() stays True, so
                # stop at the first message that cannot be read.
                while slot.conn.poll() and self._receive(slot):
                    pass
                self._child_died(slot)
                self._slots[index] = self._start_child()

    def _receive(self, slot: Slot) -> bool:
        """Handle one message from a child; False once its pipe is closed."""
        try:
            message = slot.conn.recv()
        except (EOFError, OSError):
            return False
        if message[0] == "started":
            if slot.claim is not None and slot.claim.job_id == message[1]:
                slot.started_at, slot.timeout = time.monotonic(), message[2]
        elif message[0] == "done":
            outcome: Outcome = message[3]
            claim = slot.finished(message[1], outcome.duration)
            if claim is None:
                return True  # never: a child reports only what it was sent, in order
            self._finish(claim, change_for(outcome, self._retry_delay), duration=outcome.duration)
            head = slot.claim
            if head is not None and head.job_id in slot.not_started:  # prefetched, running now
                slot.not_started.discard(head.job_id)
                self._started.append((head.job_id, head.token))
        return True

    def _child_died(self, slot: Slot) -> None:
        slot.process.join()
        claim, reason = slot.claim, slot.kill_reason
        slot.conn.close()
        if claim is None:
            if reason is None:
                log.warning("worker.child_died", worker=self.id,
                            cause=slots.death_cause(slot.process.exitcode))
            return
        slot.claims.popleft()
        for waiting in slot.claims:  # prefetched, never started: given back, attempt not charged
            self._finish(waiting, lambda s, now, _: transitions.released(s, now),
                         cause="not started: the process holding it ended")
        slot.claims.clear()
        elapsed = time.monotonic() - slot.started_at
        if reason == "timeout":
            outcome = failure(f"timed out after {slot.timeout} s: the process running it was"
                              " killed", elapsed)
            self._finish(claim, change_for(outcome, self._retry_delay), duration=elapsed,
                         cause="timeout")
        elif reason == "cancel":
            self._finish(claim, lambda s, now, _: transitions.cancelled(s, now), duration=elapsed,
                         cause="cancelled and did not stop within the grace period")
        elif reason in ("shutdown", "undelivered"):
            self._finish(claim, lambda s, now, _: transitions.released(s, now), duration=elapsed,
                         cause="worker shutdown")
        else:
            self._finish(claim, self._crash(slots.death_cause(slot.process.exitcode)),
                         duration=elapsed, cause="crash")

    def _enforce_limits(self, now: float) -> None:
        for slot in self._slots:
            if slot.busy and slot.kill_reason is None and slot.timeout is not None \
                    and now - slot.started_at > slot.timeout:
                slot.kill("timeout")

    def _watch_cancellations(self, now: float) -> None:
        if not any(s.busy for s in self._slots):
            return
        asked = set(self.queue.store.cancelling(self.id))
        for slot in self._slots:
            if slot.claim is None or slot.claim.job_id not in asked or slot.kill_reason:
                continue
            if slot.cancel_seen_at is None:
                slot.cancel_seen_at = now
            elif now - slot.cancel_seen_at > self.config.cancel_grace:
                slot.kill("cancel")

    # -- recording and claiming --------------------------------------------------------------

    def _crash(self, cause: str) -> Change:
        max_crashes = self.config.max_crashes
        return lambda s, now, max_attempts: transitions.interrupted(
            s, cause, now, max_attempts=max_attempts, max_crashes=max_crashes)

    def _retry_delay(self, attempt: int) -> float:
        return transitions.backoff(attempt, base=self.config.retry_base, cap=self.config.retry_cap)

    def _finish(self, claim: Claim, change: Change, **extra: Any) -> None:
        self._finished.append(Ended(claim.job_id, claim.token, change, extra))

    def _settle(self) -> None:
        """Record ended attempts and claim for children, in one transaction.

        An idle child gets a first claim that starts at once; a child whose recent jobs were short
        also gets prefetched ones (see :meth:`Slot.wanted`), so it never waits for this commit.
        """
        alive = [s for s in self._slots if s.process.is_alive() and s.kill_reason is None]
        wanted = {id(s): 0 if self.stops.graceful else s.wanted(self.config.prefetch)
                  for s in alive}
        idle = [s for s in alive if not s.busy and wanted[id(s)]]
        extra = sum(wanted.values()) - len(idle)
        if not self._finished and not self._started \
                and (not idle and not extra or not self.queue.store.has_ready()):
            return
        claims = self._record(len(idle), extra)
        batches: dict[int, list[Claim]] = {id(s): [] for s in alive}
        for slot, claim in zip(idle, claims):
            batches[id(slot)].append(claim)
            wanted[id(slot)] -= 1
        rest = iter(claims[len(idle):])
        for slot in alive:
            batches[id(slot)].extend(itertools.islice(rest, wanted[id(slot)]))
        for slot in alive:
            batch = batches[id(slot)]
            if not batch:
                continue
            first = 1 if any(slot is s for s in idle) else 0  # the rest were prefetched
            try:
                slot.send(batch, {c.job_id for c in batch[first:]})
            except (OSError, ValueError):  # the child died just now; its jobs are given back
                slot.kill("undelivered")
                continue
            if self._log_claims:
                for claim in batch:
                    log_transition(claim.state, logger=self._log)

    def _record(self, claim_limit: int = 0, prefetch: int = 0) -> list[Claim]:
        finished, self._finished = self._finished, []
        started, self._started = self._started, []
        states, claims = self.queue.store.settle(
            [(e.job_id, e.token, e.change) for e in finished], self.id, claim_limit,
            lease_seconds=self.config.lease_seconds, prefetch=prefetch, started=started)
        for ended, state in zip(finished, states):
            if state is None:
                if "reaped_from" not in ended.extra:  # else another worker reaped it first
                    log.warning("job.stale_result", job_id=ended.job_id, token=ended.token,
                                worker=self.id, **ended.extra)
                continue
            self.processed += 1
            if state.status in (Status.FAILED, Status.QUEUED):
                self._retrying.add(state.job_id)
            log_transition(state, logger=self._log, **ended.extra)
        return claims

    # -- other workers -----------------------------------------------------------------------

    def _reap_dead_workers(self) -> None:
        """Reclaim the jobs of workers that died, and of live ones whose leases ran out."""
        assert self._lock is not None
        self._lock.check()
        now = time.time()
        dead: dict[str, bool] = {}
        for job_id, token, owner, lease_expires, started in self.queue.store.running_claims():
            if owner == self.id:
                continue
            if owner not in dead:
                dead[owner] = liveness.is_dead(self.queue.path, owner)
            if dead[owner]:
                cause = f"worker {owner} died"
            elif lease_expires is not None and lease_expires < now:
                cause = f"lease expired: worker {owner} stopped renewing it"
            else:
                continue
            change = self._crash(cause) if started else \
                (lambda s, now, _: transitions.released(s, now))  # prefetched, never started
            self._finished.append(Ended(job_id, token, change,
                                        {"cause": cause, "reaped_from": owner}))

    # -- stopping ----------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Kill what still runs, release its jobs at once, record everything, reap children."""
        self.stops.log_requests()
        for slot in self._slots:
            while slot.conn.poll() and self._receive(slot):  # results already sent still count
                pass
            if slot.busy:
                slot.kill("shutdown")
        for slot in self._slots:
            if slot.claim is not None:  # killed just above: wait for it, then release its job
                slot.process.join(5)
                self._child_died(slot)
            else:
                slots.stop(slot)
        if self._finished:
            self._record()
        if self._lock is not None:
            self._lock.close()



def run(queue: Queue, *, burst: bool = False, **options: Any) -> int:
    """Convenience: ``Worker(queue, **options).run(burst=burst)``."""
    return Worker(queue, **options).run(burst=burst)


