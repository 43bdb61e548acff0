"""How the command line shows workers: ``jobq workers``, and what ``status`` and ``show`` say of
them (how many are alive, the jobs a dead one holds, a backlog that no worker will take)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ..ago import ago
from ..queue import Queue
from ..worker_info import ChildInfo, WorkerInfo, WorkerState, worker_of
from . import render

_SHOWN_IDS = 3  # job ids named in one cell; the rest are counted


def workers(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    """One line per worker: live, stuck, dead (not reaped yet) or reaped in the last day."""
    found, now = q.workers(), time.time()
    if args.json:
        render.as_json([_as_dict(w, now) for w in found], out)
        return 0
    if not found:
        print("(no workers)", file=out)
        return 0
    anyone = any(w.alive for w in found)
    render.table(["STATE", "WORKER", "HOST", "PID", "STARTED", "HEARTBEAT", "DOING"],
                 [(w.state.value, w.id, w.host or "-", w.pid or "-", ago(w.started, now),
                   ago(w.heartbeat, now), _doing(w, anyone, now)) for w in found], out)
    return 0


def _doing(w: WorkerInfo, anyone_alive: bool, now: float) -> str:
    if w.state is WorkerState.REAPED:
        jobs = f"its {_jobs(w.held)} reclaimed" if w.held else "it held no job"
        return (f"died about {ago(w.heartbeat, now)} (its last heartbeat); reaped"
                f" {ago(w.reaped_at, now)} by {w.reaped_by or '?'}: {jobs}")
    if w.state is WorkerState.DEAD:
        if not w.held:
            return "held no job"
        return f"held {_jobs(w.held)}: {_reclaim(anyone_alive)}"
    return "; ".join(_child(c, now) for c in w.children) or "-"


def _child(c: ChildInfo, now: float) -> str:
    """'1: <job id> <task> for 3s', or '2: idle'."""
    if c.job_id is None:
        return f"{c.n}: idle"
    task = f" {c.task}" if c.task else ""
    return f"{c.n}: {c.job_id}{task} for {ago(c.since, now).removesuffix(' ago')}"


def _jobs(ids: Sequence[str]) -> str:
    named = ", ".join(ids[:_SHOWN_IDS]) + (f" and {len(ids) - _SHOWN_IDS} more"
                                           if len(ids) > _SHOWN_IDS else "")
    return f"{len(ids)} job{'s' if len(ids) != 1 else ''} ({named})"


def _reclaim(anyone_alive: bool) -> str:
    return "being reclaimed" if anyone_alive else "reclaimed when a worker starts"


def _as_dict(w: WorkerInfo, now: float) -> dict[str, Any]:
    found = dataclasses.asdict(w)
    found["state"] = w.state.value
    found["alive"] = w.alive
    found["heartbeat_age"] = None if w.heartbeat is None else now - w.heartbeat
    return found


# -- what status and show say ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Census:
    """The workers of a queue, as ``status`` sums them up."""

    workers: tuple[WorkerInfo, ...]

    @classmethod
    def of(cls, q: Queue) -> Census:
        return cls(tuple(q.workers()))

    def count(self, state: WorkerState) -> int:
        return sum(1 for w in self.workers if w.state is state)

    @property
    def alive(self) -> int:
        return sum(1 for w in self.workers if w.alive)

    def held_by_dead(self) -> dict[str, tuple[str, ...]]:
        """Dead (not yet reaped) worker id -> the running jobs it still holds."""
        return {w.id: w.held for w in self.workers if w.state is WorkerState.DEAD and w.held}

    def state_of(self, owner: str | None) -> WorkerState | None:
        """The state of the worker a claim's owner names (None: no such worker known)."""
        if not owner:
            return None
        wanted = worker_of(owner)
        return next((w.state for w in self.workers if w.id == wanted), None)

    def running_note(self) -> str:
        """'  (2 held by dead worker h-1-ab: reclaimed when a worker starts)', or ''."""
        held = self.held_by_dead()
        if not held:
            return ""
        n = sum(len(jobs) for jobs in held.values())
        whose = f"dead worker{'s' if len(held) > 1 else ''} {', '.join(held)}"
        return f"  ({n} held by {whose}: {_reclaim(self.alive > 0)})"

    def line(self) -> str:
        """'workers: 2 alive (1 stuck), 1 dead' ."""
        alive, stuck, dead = self.alive, self.count(WorkerState.STUCK), self.count(WorkerState.DEAD)
        text = f"workers: {alive or 'none'} alive" + (f" ({stuck} stuck)" if stuck else "")
        return text + (f", {dead} dead" if dead else "")

    def warning(self, jobs_waiting: bool, path: str) -> str | None:
        """Why jobs that wait to run will not, if no worker will run them."""
        if not jobs_waiting and not self.held_by_dead():
            return None
        if not self.alive:
            return (f"no worker is alive, and jobs wait to run: start one with"
                    f" 'jobq worker --dir {path}'")
        if not self.count(WorkerState.LIVE):
            return ("every worker alive is stuck (its heartbeat stopped), and jobs wait to run:"
                    " see 'jobq workers'")
        return None

    def as_json(self) -> dict[str, Any]:
        return {"alive": self.alive, **{s.value: self.count(s) for s in WorkerState
                                        if s is not WorkerState.REAPED},
                "held_by_dead": {w: list(jobs) for w, jobs in self.held_by_dead().items()}}


def describe_owner(census: Census, owner: str | None) -> str:
    """What ``show`` says of the worker running a job: its id, and whether it lives."""
    if not owner:
        return "-"
    state = census.state_of(owner)
    if state is WorkerState.DEAD:
        return f"{owner} (dead: the job is {_reclaim(census.alive > 0)})"
    if state is None:
        return f"{owner} (not known: no record, no lock)"
    info = next(w for w in census.workers if w.id == worker_of(owner))
    where = f", pid {info.pid}" if info.pid else ""
    return f"{owner} ({state.value}{where}{f' on {info.host}' if info.host else ''})"
