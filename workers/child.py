"""A worker child: claims a batch of jobs, runs them one at a time, and records how they ended
together with its next claim, in one transaction (one fsync for the whole batch).

A child is forked (:mod:`.child_process` starts it), so tasks imported by the supervisor are
already loaded. Its claims are made as ``<worker id>/<n>``, one owner per child, so that when it
dies its supervisor finds the claims it held. What it is running is on its :mod:`board`.

A batch is as many jobs as about 20 ms of work, from the recent durations (one job until they are
known; at most ``prefetch``, by default the engine's): enough that the commit is shared by many
short jobs, little enough that a job which runs long keeps few others waiting. Claims after the
first are marked not started; should the whole worker die, they are given back without charging an
attempt. A claim asked to cancel before the child starts it is given back unstarted, and ends
cancelled.

A batch that overruns, one of its jobs running past the 20 ms or the batch past twice that, is
handed over by the child's :mod:`watcher` thread: in one transaction of its own, it records the
outcomes so far and gives back the claims not started (uncharged), which idle children then
claim; the claim running then is marked started (its worker's death is charged to it). The
hand-over is exact because each claim not started is taken once from a deque, by the
main thread to start it or by the watcher to give it back (deque pops are thread-safe).

Messages to the supervisor: ``("recorded", count, ids_to_retry)`` after each commit, ``("idle",)``
when nothing was ready and ``("busy",)`` when it claims again after that, ``("error", exc)`` before
exiting on a storage error. From it: ``None`` (with the board's stop flag) to stop after the current
job. The running task reads that flag as ``ctx.stopping``, so a long one can save, release its job
(``ctx.release()``) and let the worker exit before its grace runs out. And ``("wake",)`` when jobs
may be ready: an idle child otherwise looks again only after ``Engine.idle_wait``.
"""

from __future__ import annotations

import contextlib
import pickle
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

from jobq import Queue, transitions
from jobq._json_lines import JsonLogger, batched
from jobq._logging import DEBUG, direct_json
from jobq.errors import JobqError, Released, StorageError, transient
from jobq.execution import (Outcome, change_for, execute, failure, load, log_transition,
                            unloadable)
from jobq.state import WAITING, Status
from jobq.engine import Claim, Engine, Finished, worker_of

from .board import Board
from .config import WorkerConfig
from .forked import Connection
from .outage import Outage, call_through
from .reaping import released
from .watcher import Watcher

SUCCEEDED = Status.SUCCEEDED
BATCH_WINDOW = 0.02  # seconds of expected work a child claims at once


def batch_size(average: float | None, prefetch: int) -> int:
    """Jobs to claim at once, given the moving average of their durations."""
    if average is None:
        return 1
    return max(1, min(prefetch, int(BATCH_WINDOW / max(average, 1e-6))))


class Runner:
    """The child's loop: settle (record the last batch, claim the next), run, repeat."""

    def __init__(self, conn: Connection, queue: Queue, board: Board, owner: str,
                 config: WorkerConfig, logger: Any) -> None:
        self.conn, self.queue, self.board, self.owner = conn, queue, board, owner
        self.config, self.log = config, logger
        self.log_claims = getattr(logger, "is_enabled_for", lambda level: True)(DEBUG)
        self.average: float | None = None
        self.idle = False
        # Appended by the main thread; taken by it at its next settle, or by the watcher when a
        # batch overruns: each entry by one of them (see _take_all).
        self.finished: deque[Finished] = deque()
        self.outcomes: dict[str, Outcome] = {}  # of the jobs run, until their events are logged
        # Cancel requests for claims of ours, as of the queue's cancel generation last seen:
        # nothing of ours can have been asked to cancel before we claimed it.
        self.engine, self.prefetch = queue.engine, config.prefetch or queue.engine.prefetch
        self.outage = Outage(logger)
        self.after_outage = False  # claims made by a commit whose outcome we missed may be held
        self.cancel_generation: int | None = None
        self.cancelled: set[tuple[str, int]] = set()
        with self._unless_unreachable():
            self.cancel_generation = self.engine.cancel_generation()
        self._send_lock = threading.Lock()  # both threads report to the supervisor
        self._watcher: Watcher | None = None  # started with the first batch of several claims
        self._batch: list[Claim] = []  # the batch being run
        self._watcher_queue: Queue | None = None  # the watcher's connection, opened when first used

    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self.conn.send(message)

    def close(self) -> None:
        """Stop the watcher, once any hand-back it is making is committed."""
        if self._watcher is not None:
            self._watcher.close()
        if self._watcher_queue is not None:
            self._watcher_queue.close()

    def run(self) -> None:
        """:meth:`loop`, riding out storage outages (:mod:`workers.outage`): what ended meanwhile
        stays in ``finished``, recorded by the first settle that reaches the storage again."""
        while True:
            try:
                self.loop()
                return
            except StorageError as exc:
                if not self.outage.ride_out(exc, self._probe, self._wait):
                    return
                self.after_outage = True

    def _probe(self) -> None:
        """An outage's probe: the storage answers, and our supervisor holds its liveness lock
        (while it does not, other workers take our claims for a dead worker's: claim nothing)."""
        if self.engine.workers.is_dead(worker_of(self.owner)):
            raise StorageError("this worker's liveness lock is not held: waiting for its"
                               " supervisor to take it again", transient=True)

    @contextlib.contextmanager
    def _unless_unreachable(self) -> Iterator[None]:
        """Skip a read whose answer can wait when the storage is unreachable for now."""
        try:
            yield
        except StorageError as exc:
            if not transient(exc):
                raise

    def loop(self) -> None:
        while True:
            stopping = self.board.stop_requested()
            if not stopping and not self.finished and not self.engine.has_ready():
                self._set_idle(True)
                if self._wait(self.engine.idle_wait(self.config.poll_interval,
                                                    self.config.fallback_interval)):
                    return
                continue
            size = 0 if stopping else batch_size(self.average, self.prefetch)
            claims = self._settle(size)
            if stopping:
                return
            self._set_idle(not claims)
            self._run_batch(claims)

    def _set_idle(self, idle: bool) -> None:
        """Tell the supervisor when we run out of work, and when we find some again."""
        if idle != self.idle:
            self.idle = idle
            self.send(("idle",) if idle else ("busy",))

    def _wait(self, timeout: float) -> bool:
        """Sleep until a message or ``timeout``; True if told to stop (or the pipe closed)."""
        try:
            if self.conn.poll(timeout):
                return self.conn.recv() is None
        except (EOFError, OSError):
            return True
        return self.board.stop_requested()

    def _settle(self, size: int) -> list[Claim]:
        finished = _take_all(self.finished)
        try:
            lost = self._claims_of_lost_commit(finished) if self.after_outage else []
            states, claims = self.engine.settle(
                finished + lost, self.owner, min(size, 1), prefetch=max(size - 1, 0),
                lease_seconds=self.config.lease_seconds)
        except BaseException:
            self.finished.extendleft(reversed(finished))  # recorded by the next try
            raise
        self.after_outage = False
        if lost:
            self.log.info("worker.claims_given_back", jobs=len(lost),
                          cause="claimed by a commit whose outcome was lost in an outage")
        self._report(finished, states[:len(finished)])
        if self.log_claims:  # debug level: one event per claim
            for claim in claims:
                log_transition(claim.state, logger=self.log)
        return claims

    def _claims_of_lost_commit(self, finished: list[Finished]) -> list[Finished]:
        """Claims of ours we never received: a settle committed, then the connection broke
        before its answer arrived. They are given back unstarted; left alone, our supervisor
        would renew their leases for ever. (Retrying that settle is safe: a finished entry it
        recorded no longer matches a running claim, and records nothing twice.)"""
        ours = {(job_id, token) for job_id, token, _ in finished}
        return [(h.job_id, h.token, released) for h in self.engine.held(self.owner)
                if (h.job_id, h.token) not in ours]

    def _report(self, finished: list[Finished], states: list[Any],
                given_states: Sequence[Any] = ()) -> None:
        """Log the events of what was just recorded, and tell the supervisor."""
        retrying: list[str] = []
        with batched():  # one write for the batch's events
            self._log_finished(finished, states, retrying)
            for state in given_states:
                if state is not None:  # else reclaimed meanwhile: our lease ran out
                    log_transition(state, logger=self.log, cause="not started: handed back while"
                                   " a job before it in its batch ran long")
        if finished:
            self.send(("recorded", len(finished), retrying))

    def _log_finished(self, finished: list[Finished], states: list[Any],
                      retrying: list[str]) -> None:
        logger = direct_json(getattr(self.log, "resolved", lambda: self.log)())
        # A success's event straight from its values, as log_transition writes it to JsonLogger
        # (without that call's keywords: some 3,400 instructions a job).
        succeeded = logger.succeeded if type(logger) is JsonLogger else None
        for (job_id, token, _), state in zip(finished, states):
            outcome = self.outcomes.pop(job_id, None)
            if state is None:  # reclaimed meanwhile (our lease ran out): another attempt owns it
                logger.warning("job.stale_result", job_id=job_id, token=token)
                continue
            if state.status is SUCCEEDED and outcome is not None and succeeded is not None:
                succeeded(state.job_id, state.task, state.attempts, round(outcome.duration, 6))
                continue
            if state.status in WAITING:
                retrying.append(job_id)
            log_transition(state, None if outcome is None else outcome.duration, logger=logger,
                           outcome=outcome)

    def _run_batch(self, claims: list[Claim]) -> None:
        if not claims:
            return
        self._batch = claims  # for the watcher: which claim the board says is running
        rest = deque(claims[1:])  # the claims not started: see _take_all
        if not rest:  # nothing waits behind the job, and its outcome is recorded as it ends
            self._run_claims(claims[0], rest)
            return
        if self._watcher is None:
            self._watcher = Watcher(self.board, self._hand_back, BATCH_WINDOW,
                                    prepare=self._watcher_engine)
        self._watcher.watch(rest)
        try:
            self._run_claims(claims[0], rest)
        finally:
            self._watcher.done()

    def _run_claims(self, claim: Claim, rest: deque[Claim]) -> None:
        first = True
        while True:
            # Told to stop since the claim (the first one too): give back the ones not started.
            if self.board.stop_requested():
                self.finished += [(c.job_id, c.token, released) for c in [claim, *_take_all(rest)]]
                return
            # A prefetched claim may have been asked to cancel while it waited (the first one
            # of a batch starts as soon as it is claimed): given back unstarted, it ends cancelled.
            if not first and self._cancel_requested(claim):
                self.finished.append((claim.job_id, claim.token, released))
            else:
                outcome = self._run(claim)
                self.outcomes[claim.job_id] = outcome  # first: the watcher may take the entry
                self.finished.append((claim.job_id, claim.token,
                                      change_for(outcome, self._retry_delay)))
                self.average = outcome.duration if self.average is None \
                    else 0.8 * self.average + 0.2 * outcome.duration
            try:
                claim = rest.popleft()  # ours to start, unless the watcher gave it back first
            except IndexError:
                return
            first = False

    def _hand_back(self, rest: deque[Claim]) -> None:
        """From the watcher, when the batch overruns: record the outcomes so far and give back
        ``rest``, the claims not started (uncharged), in one transaction.

        On the watcher's own engine (an engine's connection is for one thread at a time, and
        the main thread's task may be saving a checkpoint). Should the child die before the
        commit, nothing was recorded: its supervisor gives back all it held, as for any death.
        """
        given = [(c.job_id, c.token, released) for c in _take_all(rest)]
        finished = _take_all(self.finished)
        started = self._started_prefetched()
        if not (finished or given or started):
            return
        try:
            states, _ = self._watcher_engine().settle(finished + given, self.owner, 0,
                                                      started=started)
        except BaseException as exc:
            self.finished += finished + given  # for the main thread's next settle
            if not isinstance(exc, JobqError):
                raise
            if not transient(exc):
                self.send(("error", exc))  # a permanent storage error: the supervisor stops
            return
        self._report(finished, states[:len(finished)], states[len(finished):])

    def _started_prefetched(self) -> list[tuple[str, int]]:
        """The claim running now (the board says which), to mark started with the hand-back:
        should the whole worker die during it, its attempt is then charged, as a batch's first
        claim's is, instead of given back uncharged to the next worker, and the next, when the
        job is what kills them. Free for short jobs (no hand-back, no write); a job that kills
        its worker before the hand-back (its first ~20 ms) still goes uncharged that time."""
        now = self.board.read()
        if now is None:
            return []
        return [(c.job_id, c.token) for c in self._batch
                if c.token == now.token and c.job_id.startswith(now.job_id)]

    def _watcher_engine(self) -> Engine:
        if self._watcher_queue is None:
            self._watcher_queue = self.queue.reopen(catch_up=False)
        return self._watcher_queue.engine

    def _cancel_requested(self, claim: Claim) -> bool:
        """Was ``claim`` asked to cancel since we claimed it?

        One cheap read per job (Engine.cancel_generation: for a queue directory, of shared
        memory); the cancelled claims are read from storage only when a claimed job somewhere in
        the queue was asked to cancel since we last looked.
        """
        try:  # as _unless_unreachable, without a generator per job: asked again at the next
            generation = self.engine.cancel_generation()
            if generation != self.cancel_generation:
                self.cancelled = self.engine.cancelling(self.owner)
                self.cancel_generation = generation
        except StorageError as exc:
            if not transient(exc):
                raise
        return bool(self.cancelled) and (claim.job_id, claim.token) in self.cancelled

    def _run(self, claim: Claim) -> Outcome:
        self.board.running(claim.job_id, claim.token)
        try:
            try:
                payload, fn = load(self.engine, claim, self.queue.config.rules)
            except JobqError as exc:
                return unloadable(self.engine, claim, exc)
            if payload.timeout is not None:
                self.board.time_limit(claim.job_id, claim.token, payload.timeout)
            outcome = execute(self.engine, claim, payload, fn,
                              stopping=self.board.stop_requested, save=partial(self._save, claim))
            return outcome if outcome.result is None else storable(outcome)
        finally:
            self.board.idle()

    def _save(self, claim: Claim, checkpoint: Any, progress: float | None) -> Any:
        """The task's ``ctx.save`` (with ``claim``): through an outage it waits and saves again
        (saving a checkpoint under its claim twice writes it once). StaleClaim once another
        attempt owns the job; Released if the worker stops first (the attempt is given back
        uncharged and resumes from the last checkpoint saved)."""
        state = call_through(Outage(self.log), lambda: self.engine.save_checkpoint(
            claim.job_id, claim.token, checkpoint, progress), self.board.stop_requested)
        if state is None:
            raise Released("the worker is stopping, and the storage cannot be reached to"
                           " save the checkpoint")
        return state

    def _retry_delay(self, attempt: int) -> float:
        return transitions.backoff(attempt, base=self.config.retry_base,
                                   cap=self.config.retry_cap)


def _take_all(items: deque[Any]) -> list[Any]:
    """Pop every item of ``items``. Another thread popping meanwhile gets items of its own: none
    is taken by both (a deque's pops are atomic), which a copy and a clear would not promise."""
    taken = []
    try:
        while True:
            taken.append(items.popleft())
    except IndexError:
        return taken


def storable(outcome: Outcome) -> Outcome:
    """The outcome, or a failure if its result cannot be pickled into the job's snapshot."""
    if outcome.kind != "succeeded" or outcome.result is None:
        return outcome
    try:
        pickle.dumps(outcome.result, protocol=5)
    except Exception as exc:  # pickle raises PicklingError, TypeError, AttributeError, ...
        return failure(f"the task's return value cannot be stored: {exc}", outcome.duration)
    return outcome

