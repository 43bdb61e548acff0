"""What each ``jobq`` subcommand does. Each takes the parsed arguments and returns an exit status."""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from .. import config as config_mod
from .. import retention
from ..ago import ago
from ..errors import DamagedRecord, InvalidArgument, JobNotFound, JobqError, NotAQueue, StorageError
from ..queue import Queue
from ..state import Status, last_line
from . import importable_cwd, inputs, render

TIMEOUT_EXIT = 124  # like coreutils timeout(1)


def open_queue(args: argparse.Namespace, *, create: bool, for_worker: bool = False) -> Queue:
    """The queue named by --dir; only ``worker`` and ``enqueue`` create one, the others say
    there is none (a mistyped --dir, a command run from another directory)."""
    cfg = config_mod.build(args.dir)
    if not create and not exists(cfg.path):
        raise NotAQueue(f"no queue at {config_mod.describe(cfg)}: give its directory with --dir"
                        f" or ${config_mod.ENV_HOME} (jobq enqueue or jobq worker creates one)",
                        path=cfg.path)
    return Queue._for_worker(args.dir) if for_worker else Queue(args.dir)


def exists(path: str) -> bool:
    """Is there a queue at ``path``? A queue this user may not look into is an error that says
    so (QueuePermissionError), never "no queue"."""
    return Queue.exists(path)


def init(args: argparse.Namespace, out: TextIO) -> int:
    """Create the queue (if it does not exist), and share it with a group if asked."""
    with open_queue(args, create=True) as q:
        made = "created" if q.created else "found"
    if args.shared_group is None:
        print(f"{made} queue {q.location}", file=out)
        return 0
    with Queue(q.share(args.shared_group)) as q:
        group = _group(q)
    print(f"{made} queue {q.location}, shared with group {group}:"
          " directories 2770 and files 0660 of that group, also those created later by any"
          " of its users", file=out)
    return 0


def run_into_new(run: Callable[[Queue, argparse.Namespace, TextIO], int],
                 args: argparse.Namespace, out: TextIO) -> int:
    """A command that creates the queue (``jobq enqueue``, ``schedule add``, ``limit set``) at
    a location where none exists yet: ``run`` on a scratch queue first.

    A command refused (a task that does not import, arguments that do not fit or pickle, an
    option out of range, a bad cron expression or limit) must not leave a new queue behind at a
    mistyped --dir. Every check is the command's own, so none is repeated here; the scratch
    copy costs a few milliseconds, once.
    """
    import tempfile  # only for these commands

    with tempfile.TemporaryDirectory(prefix="jobq-check-") as scratch:
        with Queue(os.path.join(scratch, "queue"), fsync=False) as q:
            run(q, args, io.StringIO())
    with open_queue(args, create=True) as q:
        status = run(q, args, out)
        if q.created:  # a mistyped --dir would otherwise send jobs where no worker looks
            print(f"jobq: created a new queue at {config_mod.describe(q.config)}",
                  file=sys.stderr)
        return status


def enqueue(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    importable_cwd()
    kwargs = inputs.parse_kwargs(args.kwargs)
    jid = q.enqueue_call(args.task, args=[inputs.parse_arg(a) for a in args.args], kwargs=kwargs,
                         job_id=args.id, priority=args.priority, delay=args.delay,
                         max_attempts=args.max_attempts, timeout=args.timeout,
                         depends_on=args.depends_on,
                         on_dependency_failure=args.on_dependency_failure,
                         concurrency_key=args.concurrency_key, unique_key=args.unique_key,
                         **retention.given(args.result_ttl, args.failure_ttl))
    print(jid, file=out)
    return 0


def _group(q: Queue) -> str | None:
    return q.shared_group_name


def list_jobs(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    wanted = Status(args.status) if args.status else None
    if getattr(args, "group", None):
        from .group_view import member_rows
        rows = member_rows(q, args.group, wanted, args.limit)
    else:
        rows = q.engine.rows(wanted, limit=args.limit)
    if args.json:
        render.as_json(rows, out)
        return 0
    render.table(["JOB ID", "STATUS", "TASK", "ATTEMPTS", "PROGRESS", "ENQUEUED", "UPDATED"],
                 [(r["job_id"], r["status"], r["task"], r["attempts"], render.percent(r["progress"]),
                   ago(r["enqueued_at"]), ago(r["updated_at"])) for r in rows], out)
    if not rows:
        print("(no jobs)", file=out)
    return 0


def _parent(q: Queue, job_id: str) -> str:
    """A parent of a job, as ``jobq show`` lists it: its id and status."""
    try:
        return f"{job_id} ({q.engine.status(job_id).value})"
    except JobNotFound:
        return f"{job_id} (purged)"


def show(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    importable_cwd()
    if args.job_id.startswith("grp-"):  # a group's whole id shows the group (jobq.group_ids)
        from .group_view import is_group, show_group
        if is_group(q, args.job_id):
            return show_group(q, args, out)
    jid = inputs.job_id_of(q, args.job_id)
    state, payload, problems = None, None, []
    try:
        state = q.state(jid)  # JobNotFound propagates: an unknown id is an error
    except JobqError as exc:
        if isinstance(exc, KeyError):
            raise
        problems.append(f"state: cannot load: {exc}")
    damaged = None
    try:
        payload = q.payload(jid)
    except DamagedRecord as exc:
        damaged = _set_aside(q, jid, exc)
        problems.append(damaged["problem"])
    except JobqError as exc:
        problems.append(f"payload: cannot load: {exc}")
    owner = q.engine.row(jid)["owner"] if state is not None \
        and state.status is Status.RUNNING else None
    # Imported here: `jobq worker` imports this module and needs none of it (issue 19).
    from .worker_view import Census, describe_owner

    census = Census.of(q) if owner else None
    parents = q.engine.parents(jid)
    if args.json:
        worker = None if census is None else {"owner": owner,
                                              "state": census.state_of(owner) or "unknown"}
        render.as_json({"job_id": jid, "state": state and state.__getstate__(),
                        "payload": payload and payload.__getstate__(), "problems": problems,
                        "damaged": damaged, "worker": worker, "depends_on": parents}, out)
        return 0
    lines: list[tuple[str, Any]] = [("job", jid)]
    if state is not None:
        lines += [("task", state.task),
                  ("status", f"{state.status.value} (attempt {state.attempts}, "
                             f"{state.crashes} crash{'es' if state.crashes != 1 else ''})"),
                  ("progress", render.percent(state.progress)),
                  ("enqueued", ago(state.enqueued_at)), ("run at", ago(state.run_at)),
                  ("started", ago(state.started_at)),
                  ("finished", ago(state.finished_at)),
                  ("checkpoint", _summary(state.checkpoint)), ("result", _summary(state.result))]
        if state.cancel_requested and not state.status.finished:
            lines.append(("cancel", "requested"))
        if census is not None:
            lines.append(("worker", describe_owner(census, owner)))
        if parents:
            lines.append(("depends on", ", ".join(_parent(q, p) for p in parents)))
    if payload is not None:
        lines += [("args", render.short(payload.args)), ("kwargs", render.short(payload.kwargs)),
                  ("priority", payload.priority), ("max attempts", payload.max_attempts),
                  ("timeout", "-" if payload.timeout is None else f"{payload.timeout:g} s")]
    for key, value in lines:
        print(f"{key:<13}{value}", file=out)
    for problem in problems:
        print(f"{'problem':<13}{problem}", file=out)
    for i, error in enumerate(state.errors if state else [], 1):
        print(f"\nerror {i}:", file=out)
        print("\n".join("  " + line for line in error.splitlines()), file=out)
    return 0


def _set_aside(q: Queue, jid: str, exc: DamagedRecord) -> dict[str, Any]:
    """A damaged record is copied aside (once, as a worker would) for the operator to look at."""
    found = {"file": exc.path, "offset": exc.offset, "reason": exc.reason, "saved_to": None}
    try:
        found["saved_to"] = q.engine.set_aside(jid, None, exc)
    except StorageError as err:
        found["problem"] = (f"payload record damaged at {exc.path}:{exc.offset}: {exc.reason};"
                            f" cannot copy it aside: {err}")
    else:
        found["problem"] = exc.with_copy(found["saved_to"])
    return found


def _summary(value: Any) -> str:
    return "-" if value is None else f"{type(value).__name__} {render.short(value, 70)}"


def wait(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    """Wait for a job, drawing a live progress bar on a terminal."""
    jid, live = inputs.job_id_of(q, args.job_id), out.isatty() and not args.json
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    shown = None
    while True:
        row = q.engine.row(jid)
        if live and (row["status"], row["progress"]) != shown:
            shown = (row["status"], row["progress"])
            print(f"\r{render.bar(row['progress'])} {render.percent(row['progress']):>4}"
                  f"  {row['status']:<9}", end="", file=out, flush=True)
        if Status(row["status"]).finished:
            break
        if deadline is not None and time.monotonic() > deadline:
            if live:
                print(file=out)
            print(f"jobq: error: job {jid} did not finish within {args.timeout:g} s",
                  file=sys.stderr)
            return TIMEOUT_EXIT
        time.sleep(0.05)
    if live:
        print(file=out)
    state = q.state(jid)
    if args.json:
        done: dict[str, Any] = {"job_id": jid, "status": state.status.value}
        if state.status is Status.SUCCEEDED:  # an error of an earlier attempt is not its outcome
            done["result"] = state.result
        else:
            done["error"] = state.error
        render.as_json(done, out)
    else:
        detail = (f"result {render.short(state.result)}" if state.status is Status.SUCCEEDED
                  else last_line(state.error) if state.error else "")
        print(f"{jid} {state.status.value}: {detail}", file=out)
    return 0 if state.status is Status.SUCCEEDED else 1


def retry(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    if args.all_dead:
        count = sum(q.retry(j) for j in list(q.engine.job_ids(Status.DEAD)))
        print(f"requeued {count} dead job{'s' if count != 1 else ''}", file=out)
        return 0
    jid = inputs.job_id_of(q, args.job_id)
    if not q.retry(jid):
        raise InvalidArgument(f"job {jid} {render.status_phrase(q.engine.status(jid))}; only dead"
                              " or cancelled jobs can be retried")
    print(f"requeued {jid}", file=out)
    return 0


def cancel(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    jid = inputs.job_id_of(q, args.job_id)
    if not q.cancel(jid):
        current = q.engine.status(jid)
        raise InvalidArgument(f"job {jid} already finished: it {render.status_phrase(current)}")
    if q.engine.status(jid) is Status.RUNNING:
        print(f"cancellation requested: {jid} is running; it ends cancelled when it stops"
              " (or is killed after the grace period)", file=out)
    else:
        print(f"cancelled {jid}", file=out)
    return 0
