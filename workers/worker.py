"""``Worker``: a supervisor whose child processes claim, run and record jobs in batches.

Each child works on its own (see :mod:`workers.child`): it claims a batch, runs it, and records
the batch's outcomes with its next claim in one transaction. The supervisor watches: it notices
children that died (the attempt on the child's board is recorded as interrupted with its cause,
the claims it never started are given back, and the child is replaced), kills children whose job
overran its timeout or ignored a cancellation past the grace period, reclaims the jobs of workers
that died, and renews leases. Execution is at least once: a job whose worker dies runs again.
Where the engine can hear of new jobs (:meth:`jobq.engine.Engine.wakeups`), the supervisor
listens, for all its children, and wakes the idle ones, which then poll only now and then.
"""

from __future__ import annotations

import importlib
import os
import time
from typing import Any

from jobq import Queue, transitions
from jobq.errors import ConfigError, JobqError, StorageError
from jobq.execution import change_for, failure, log_transition
from jobq.state import Status
from jobq.engine import Change, Liveness, Upkeep, Wakeups, owner_of

from . import outage, scheduling, slots
from .config import WorkerConfig
from .forked import wait
from .heartbeat import Heartbeat
from .reaping import Ended, crash, reap_dead_workers, released
from .signals import StopRequests, handled
from .slots import Slot
from jobq import _logging
from jobq._logging import get_logger

log = get_logger(__name__)


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
        self.id = new_worker_id()
        self.stops = StopRequests()
        self.processed = 0
        self._log: Any = log
        self._slots: list[Slot] = []
        self._children = 0
        self._finished: list[Ended] = []
        self._retrying: set[str] = set()
        self.engine = queue.engine
        self._lock: Liveness | None = None
        self._heartbeat: Heartbeat | None = None
        self._next_reap = self._next_renew = self._next_beat = 0.0
        self._stop_deadline: float | None = None
        self._error: JobqError | None = None
        self._upkeep: Upkeep | None = None
        self._outage = outage.Outage(log)
        self._wakeups: Wakeups | None = None
        self._scheduler = scheduling.Scheduler(queue)  # fires periodic schedules

    def stop(self) -> None:
        """Ask for a graceful stop (as SIGTERM does); a second call stops at once."""
        self.stops.request()

    # -- the loop --------------------------------------------------------------------------------

    def run(self, burst: bool = False) -> int:
        """Run jobs until stopped (or, with ``burst``, until there is nothing left to do)."""
        self._import_modules()  # before forking, so every child has them already
        # structlog too, unless the command line's JSON format needs none: every child logs, and
        # imports it at its first event unless it inherits it. Imported once here, instead of by
        # the supervisor after forking and by each child, all competing for the cores while the
        # children drain (issue 19): a one-process drain of 20 jobs, 693 -> 545 M instructions.
        _logging.load()
        # Bound once, and inherited by the children: an event then costs only its formatting.
        self._log = log.bind(worker=self.id)
        self._outage = outage.Outage(self._log)
        self._lock = self.engine.workers.hold(self.id)
        try:
            with handled(self.stops):
                # Before the children: they look for jobs as they start, then rely on it.
                self._wakeups = self.engine.wakeups(logger=self._log)
                self._slots = [self._start_child() for _ in range(self.config.concurrency)]
                # Published after the lock is taken: a reader probing the lock of a worker with
                # a record never meets one that is about to take it.
                self._heartbeat = Heartbeat(self.engine.workers, self.queue.location, self.id,
                                            concurrency=self.config.concurrency,
                                            interval=self.config.heartbeat_interval,
                                            logger=self._log)
                self._log.info("worker.started", queue=self.queue.location,
                               queue_from=self.queue.config.origin,
                               concurrency=self.config.concurrency, burst=burst)
                self._upkeep = self.engine.upkeep(  # while the children claim
                    compact_threshold=self.config.compact_threshold, logger=self._log)
                while not self._turn(burst):
                    pass
        finally:
            self._shutdown()
        self._log.info("worker.stopped", processed=self.processed)
        if self._error is not None:
            raise self._error
        return self.processed

    def _turn(self, burst: bool) -> bool:
        """One turn of the loop, riding out a storage outage (:mod:`workers.outage`) while the
        children go on with their jobs; True when the worker should stop."""
        try:
            return self._step(burst)
        except StorageError as exc:
            return not self._outage.ride_out(exc, self._reconnect, self._pause)

    def _reconnect(self) -> None:
        assert self._lock is not None
        self._lock = outage.still_alive(self.engine, self._lock, self.id, self._log,
                                        lambda: [s.owner for s in self._slots])

    def _pause(self, seconds: float) -> bool:
        """Wait in an outage; True on a stop request that cannot wait (a graceful one waits for
        the storage, to record what the children finished)."""
        self.stops.log_requests()
        return outage.sleep_unless(seconds, lambda: self.stops.immediate)

    def _step(self, burst: bool) -> bool:
        """One turn of the loop; True when the worker should stop."""
        now = time.monotonic()
        self._collect(self.config.poll_interval)
        if self._wakeups is not None and self._wakeups.cancels():
            self._watch_cancellations(now)  # at once, not at the next reap
        self._enforce_limits(now)
        beat = now >= self._next_beat
        if beat and self._heartbeat is not None:
            self._next_beat = now + self.config.heartbeat_interval
            self._heartbeat.beat(self._slots)
        if now >= self._next_reap or beat:
            self._next_reap = now + self.config.reap_interval
            self._reap_dead_workers(look_at_records=beat)
            self._watch_cancellations(now)
            if self._upkeep is not None:  # one bounded piece of storage upkeep
                self._upkeep.step(children_busy=not all(s.idle for s in self._slots))
        if now >= self._next_renew:
            self._next_renew = now + self.config.lease_seconds / 3
            self.engine.renew(self.id, self.config.lease_seconds)
        self._scheduler.tick(self._log)
        self._record()
        return self._should_stop(burst, now)

    def _import_modules(self) -> None:
        import_modules(self.config.imports)

    def _should_stop(self, burst: bool, now: float) -> bool:
        if self.stops.graceful and self._stop_deadline is None:
            self._stop_deadline = now + self.config.shutdown_grace
            for slot in self._slots:
                slot.request_stop()
        # After the children were told: once "worker.stopping" is out, none claims a new job.
        self.stops.log_requests()
        if self._error is not None or self.stops.immediate:
            return True
        if self.stops.graceful:
            return not self._slots or now >= self._stop_deadline
        # Ready, held, ready again: between two reads a child's claim moves a job from ready to
        # held, and its watcher's hand-back from held to ready; read in either order alone, one
        # of the two moves would be seen by neither read, and the worker would stop with a job
        # running or waiting.
        if burst and all(s.idle for s in self._slots) and not self._finished \
                and not (self._upkeep is not None and self._upkeep.busy) \
                and not self.engine.has_ready() \
                and not any(self.engine.held(s.owner) for s in self._slots) \
                and not self.engine.has_ready():
            return not self._retries_pending()
        return False

    def _retries_pending(self) -> bool:
        waiting = {Status.QUEUED, Status.FAILED}
        self._retrying = {j for j in self._retrying if self.engine.status(j) in waiting}
        return bool(self._retrying)  # the next turn's _collect waits poll_interval: no spin

    # -- children --------------------------------------------------------------------------------

    def _start_child(self) -> Slot:
        assert self._lock is not None
        self._children += 1
        inherited = self._lock.fds_to_close_after_fork()
        if self._wakeups is not None and self._wakeups.fileno() is not None:
            inherited = [*inherited, self._wakeups.fileno()]  # the supervisor's to listen on
        return slots.start(self.queue, inherited, owner_of(self.id, self._children),
                           self.config, self._log)

    def _collect(self, timeout: float) -> None:
        """Receive children's messages and notice children that died."""
        conns = {s.conn: s for s in self._slots}
        sentinels = [s.process.sentinel for s in self._slots]
        fd = None if self._wakeups is None else self._wakeups.fileno()
        for ready in wait([*conns, *sentinels, *([] if fd is None else [fd])], timeout):
            slot = conns.get(ready)  # type: ignore[call-overload]
            while slot is not None and slot.conn.poll() and self._receive(slot):
                pass
        if self._wakeups is not None and self._wakeups.heard():
            for slot in self._slots:
                slot.wake()
        for index, slot in reversed(list(enumerate(self._slots))):
            if not slot.process.is_alive():
                # A report sent just before it died still counts. At EOF poll() stays True, so
                # stop at the first message that cannot be read.
                while slot.conn.poll() and self._receive(slot):
                    pass
                self._child_died(slot)
                if self.stops.graceful or self._error is not None:
                    del self._slots[index]
                else:
                    self._slots[index] = self._start_child()

    def _receive(self, slot: Slot) -> bool:
        """Handle one message from a child; False once its pipe is closed."""
        try:
            message = slot.conn.recv()
        except (EOFError, OSError):
            return False
        if message[0] == "recorded":
            self.processed += message[1]
            self._retrying.update(message[2])
        elif message[0] in ("idle", "busy"):
            slot.idle = message[0] == "idle"
            if slot.idle and slot.wake_missed:
                slot.wake()
        elif message[0] == "error" and self._error is None:
            self._error = message[1]
        return True

    def _child_died(self, slot: Slot) -> None:
        """Record the attempt on the dead child's board by cause; give back its other claims."""
        slot.process.join()
        running, reason = slot.board.read(), slot.kill_reason
        # Read before the pipe is closed: in an outage this raises, and the next turn comes back.
        held = [(h.job_id, h.token) for h in self.engine.held(slot.owner)]
        slot.conn.close()
        if running is None and not held:
            if reason is None and slot.process.exitcode not in (0, None):
                self._log.warning("worker.child_died",
                                  cause=slots.death_cause(slot.process.exitcode))
            slot.board.close()
            return
        for job_id, token in held:
            if running is None or (job_id, token) != (running.job_id, running.token):
                self._finish(job_id, token, released,
                             cause="not started, or its result was lost with its process")
        if running is not None:
            self._record_death(running, reason, slot.process.exitcode)
        slot.board.close()

    def _record_death(self, running: Any, reason: str | None, exitcode: int | None) -> None:
        elapsed = time.monotonic() - running.started
        job_id, token = running.job_id, running.token
        if reason == "timeout":
            outcome = failure(f"timed out after {running.timeout} s: the process running it was"
                              " killed", elapsed)
            self._finish(job_id, token, change_for(outcome, self._retry_delay), duration=elapsed,
                         cause="timeout")
        elif reason == "cancel":
            killed = (f"killed: asked to cancel, it did not stop within the"
                      f" {self.config.cancel_grace:g} s grace period")
            self._finish(job_id, token, lambda s, now, _: transitions.cancelled(s, now, killed),
                         duration=elapsed,
                         cause="cancelled and did not stop within the grace period")
        elif reason == "shutdown":
            self._finish(job_id, token, released, duration=elapsed, cause="worker shutdown")
        else:
            self._finish(job_id, token, self._crash(slots.death_cause(exitcode), token),
                         duration=elapsed, cause="crash")

    def _enforce_limits(self, now: float) -> None:
        """Kill a child whose job overran its timeout, or its cancel grace (from the boards)."""
        for slot in self._slots:
            running = slot.board.read()
            if running is None or slot.kill_reason is not None:
                continue
            if running.timeout is not None and now - running.started > running.timeout:
                slot.kill("timeout")
            elif slot.cancel_seen is not None \
                    and slot.cancel_seen[:2] == (running.job_id, running.token) \
                    and now - slot.cancel_seen[2] > self.config.cancel_grace:
                slot.kill("cancel")

    def _watch_cancellations(self, now: float) -> None:
        asked: set[tuple[str, int]] | None = None
        for slot in self._slots:
            running = slot.board.read()
            if running is None or slot.kill_reason:
                continue
            if asked is None:
                asked = self.engine.cancelling(self.id)
            if (running.job_id, running.token) not in asked:
                continue
            if slot.cancel_seen is None \
                    or slot.cancel_seen[:2] != (running.job_id, running.token):
                slot.cancel_seen = (running.job_id, running.token, now)  # killed after the grace

    # -- recording ---------------------------------------------------------------------------

    def _crash(self, cause: str, token: int) -> Change:
        return crash(cause, token, self.config.max_crashes)

    def _retry_delay(self, attempt: int) -> float:
        return transitions.backoff(attempt, base=self.config.retry_base, cap=self.config.retry_cap)

    def _finish(self, job_id: str, token: int, change: Change, **extra: Any) -> None:
        self._finished.append(Ended(job_id, token, change, extra))

    def _record(self) -> None:
        """Record what the supervisor ended (deaths, kills, reaped workers) in one transaction."""
        if not self._finished:
            return
        finished, self._finished = self._finished, []
        try:
            states, _ = self.engine.settle(
                [(e.job_id, e.token, e.change) for e in finished], self.id, 0)
        except BaseException:
            self._finished = finished + self._finished  # recorded by the next try
            raise
        for ended, state in zip(finished, states):
            if state is None:
                if "reaped_from" not in ended.extra:  # else another worker reaped it first
                    self._log.warning("job.stale_result", job_id=ended.job_id, token=ended.token,
                                      **ended.extra)
                continue
            if ended.change is not released or "reaped_from" in ended.extra:
                self.processed += 1
            if state.status in (Status.FAILED, Status.QUEUED):
                self._retrying.add(state.job_id)
            log_transition(state, logger=self._log, **ended.extra)

    # -- other workers -----------------------------------------------------------------------

    def _reap_dead_workers(self, look_at_records: bool = False) -> None:
        """Reclaim the jobs of dead workers and of expired leases (:mod:`workers.reaping`)."""
        assert self._lock is not None
        self._lock.check()
        reap_dead_workers(self.engine, self.id, self.config.max_crashes, self._finished,
                          self._log, look_at_records=look_at_records, record=self._record)

    # -- stopping ----------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Stop every child. An idle one exits at once; one still running a job (a graceful stop
        past its grace, a second signal, an error) is killed and its jobs are given back."""
        self.stops.log_requests()
        if self._upkeep is not None:
            self._upkeep.close()
        if self._wakeups is not None:
            self._wakeups.close()
        for slot in self._slots:
            slot.request_stop()
        # A burst that ends finds its children idle (one may have just claimed a retry that
        # came due: it finishes that job and exits).
        wait_for = 0.0 if self.stops.immediate or self.stops.graceful or self._error \
            else self.config.shutdown_grace
        deadline = time.monotonic() + wait_for
        for slot in self._slots:
            slot.process.join(max(0.05, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.kill("shutdown")
                slot.process.join(5)
            while slot.conn.poll() and self._receive(slot):
                pass
            self._child_died(slot)
        self._slots = []
        self._record()
        if self._heartbeat is not None:
            self._heartbeat.withdraw()  # before the lock: a record without a held lock is dead
        if self._lock is not None:
            self._lock.close()


def new_worker_id() -> str:
    """``<host>-<pid>-<random>``: unique, and says where the worker runs."""
    return f"{os.uname().nodename}-{os.getpid()}-{os.urandom(3).hex()}"  # the host name


def import_modules(names: tuple[str, ...]) -> None:
    """Import a worker's ``imports``; ConfigError naming the one that fails."""
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the module itself may raise anything while importing
            raise ConfigError(f"cannot import {name}: {type(exc).__name__}: {exc}") from exc


def run(queue: Queue, *, burst: bool = False, **options: Any) -> int:
    """Convenience: ``Worker(queue, **options).run(burst=burst)``."""
    return Worker(queue, **options).run(burst=burst)
