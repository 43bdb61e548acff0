"""The ``jobq`` command line. Errors are one line on stderr and a non-zero exit, never a traceback.

Exit status: 0 success; 1 an error (unknown job, bad input, a job that failed, verify found
problems); 2 a usage error (and for ``verify``, any error that kept it from checking);
124 ``wait`` timed out; 130 interrupted.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import time
from collections.abc import Sequence

from .. import _logging
from .parser import LEVELS, parse

TYPE_CHECKING = False  # typing costs a few ms to import: a type checker reads this block
if TYPE_CHECKING:
    import argparse
    from typing import Any

def configure_logging(verbose: bool = False, fmt: str = "auto", level: int | None = None
                      ) -> None:
    """Events go to stderr, so stdout stays for output a script can read.

    Events below ``level`` cost almost nothing (a filtering logger drops them before any
    formatting), which matters for a worker running thousands of jobs a second. ``auto`` writes
    for people on a terminal and JSON to files and log collectors, as structlog recommends; JSON
    also costs half as much per event (10 against 20 µs here), and jobq writes it without
    importing structlog (some 130 M instructions a process: issue 19), which is then configured
    only once imported (by the application), to write the same lines.
    """
    if level is None:
        level = _logging.INFO if verbose else _logging.WARNING
    if fmt == "auto":
        fmt = _logging.auto_format(sys.stderr)
    stderr, least = sys.stderr, level

    def apply() -> None:
        import structlog

        from .._json_lines import writer_factory

        structlog.configure(
            processors=_logging.processors(fmt),
            wrapper_class=structlog.make_filtering_bound_logger(least),
            # One write() per event (message and newline together): the children of a worker
            # share its stderr, and events written in two pieces could interleave.
            logger_factory=writer_factory(stderr),
            cache_logger_on_first_use=False)

    # Applied when structlog is imported: a worker's first job need not wait for it.
    _logging.configure_when_used(apply, level, json_file=stderr if fmt == "json" else None)


def _worker(args: argparse.Namespace) -> int:
    # Starting allocates some hundred thousand objects (modules, classes, functions) and frees
    # almost none: the collector would only walk them again and again as they are made (3% of
    # the instructions to the first fork). Frozen once made (the standard library's recipe for a
    # process that forks: see gc.freeze), no collection in the supervisor or its children walks
    # them again, and a child's collections no longer write into pages it shares with its parent.
    gc.disable()
    try:
        queue, options = _start_worker(args)
    finally:
        gc.freeze()
        gc.enable()
    from workers import Worker
    from .. import config

    with queue:
        if queue.created:
            from .._logging import get_logger
            get_logger("jobq.cli").warning(
                "worker.queue_created", queue=queue.location, queue_from=queue.config.origin,
                message=f"this worker created a new, empty queue at"
                        f" {config.describe(queue.config)} and waits for jobs there: if you"
                        " meant an existing queue, stop it and give that one's --dir")
        Worker(queue, **options).run(burst=args.burst)
    return 0


def _start_worker(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The worker's imports (structlog's for the console format) and its queue, opened (and
    created if missing)."""
    # The worker runtime is only loaded by the command that runs it.
    from workers import WorkerConfig
    from workers.worker import import_modules

    importable_cwd()
    options = dict(concurrency=args.concurrency, imports=tuple(args.imports),
                   shutdown_grace=args.shutdown_grace, max_crashes=args.max_crashes,
                   **({} if args.prefetch is None else {"prefetch": args.prefetch}),
                   **({} if args.compact_threshold is None
                      else {"compact_threshold": args.compact_threshold}))
    # Checked before the queue is opened: a refused worker leaves no new queue behind.
    import_modules(WorkerConfig(**options).imports)
    queue = _open_when_reachable(args, args.wait_for_storage)
    # Here already for the console format (Worker.run loads it too, for programs that run a
    # Worker themselves): the command line imports it with the collector off, then frozen with
    # the rest (some 5 M instructions fewer, and no child's collection walks it); Worker.run's
    # call is then free. The JSON format needs no structlog.
    _logging.load()
    return queue, options


def _open_when_reachable(args: argparse.Namespace, patience: float) -> Any:
    """The worker's queue, once its storage answers: a worker started before its database
    server (a host booting, a container started first) waits for it, up to ``patience``
    seconds, instead of failing; an error that waiting cannot fix fails at once."""
    from workers.outage import Outage, sleep_unless
    from .._logging import get_logger
    from ..errors import StorageError, transient
    from ..queue import Queue

    outage = Outage(get_logger("jobq.cli"))
    deadline = time.monotonic() + patience
    while True:
        try:
            queue = Queue._for_worker(args.dir)  # created if missing
        except StorageError as exc:
            left = deadline - time.monotonic()
            if not transient(exc):
                raise
            if left <= 0:
                if patience <= 0:
                    raise
                raise StorageError(f"{exc} (still unreachable after {patience:g} s:"
                                   " --wait-for-storage)") from exc
            sleep_unless(min(outage.failed(exc), left), lambda: False)
            continue
        outage.recovered()
        return queue


# "module:function" of jobq.cli, imported when its command runs.
RUNNERS = {"enqueue": "commands:enqueue", "status": "status_view:status",
           "list": "commands:list_jobs", "show": "commands:show", "wait": "commands:wait",
           "retry": "commands:retry", "cancel": "commands:cancel", "purge": "upkeep:purge",
           "verify": "upkeep:verify", "compact": "upkeep:compact", "backup": "upkeep:backup",
           "workers": "worker_view:workers", "rekey": "key_view:rekey", "schedule": "schedule:run",
           "limit": "limit:run",
           "migrate": "migrate:migrate", "dashboard": "dashboard:dashboard"}
NO_QUEUE_YET = {"migrate", "dashboard"}  # open the queue themselves
CREATES = {"enqueue"}


def importable_cwd() -> None:
    """Tasks of the project the command runs in are importable, as in RQ and Celery."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _runner(command: str) -> Any:
    module, _, name = RUNNERS[command].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)  # before importing the queue: `jobq --version` needs none of it
    from .. import config
    from ..errors import JobqError
    from ..engines import denied

    # A worker's events are its log: info by default; other commands keep stderr quiet.
    configure_logging(args.verbose or args.command == "worker", args.log_format,
                      LEVELS.get(args.log_level or ""))
    try:
        if args.command == "worker":
            return _worker(args)
        # Imported here: a worker's first job need not wait for the other commands' modules.
        from . import commands
        if args.command == "init":
            return commands.init(args, sys.stdout)
        if args.command in NO_QUEUE_YET:
            return _runner(args.command)(args, sys.stdout)
        if args.command == "demo":
            from .. import demo
            return demo.main(args.dir, sys.stdout)
        create = args.command in CREATES or getattr(args, "schedule_command", "") == "add" \
            or getattr(args, "limit_command", "") == "set"
        if create and not commands.exists(config.build(args.dir).path):
            return commands.run_into_new(_runner(args.command), args, sys.stdout)
        with commands.open_queue(args, create=create) as queue:
            return _runner(args.command)(queue, args, sys.stdout)
    except JobqError as exc:
        print(f"jobq: error: {exc}", file=sys.stderr)
        if args.command == "verify":
            from .upkeep import VERIFY_CANNOT_RUN
            return VERIFY_CANNOT_RUN
        return 1
    except PermissionError as exc:  # one jobq did not foresee: still the file, owner and remedy
        print(f"jobq: error: {denied(exc, _root(args))}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("jobq: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `jobq list | head`: the reader left; that is not an error
        return 0


def _root(args: argparse.Namespace) -> str:
    from .. import config
    from ..errors import JobqError

    try:
        return config.build(args.dir).path
    except JobqError:
        return args.dir or "."


if __name__ == "__main__":
    sys.exit(main())
