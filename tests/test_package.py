"""The ``jobq`` package: its public names, and what importing it and a worker's modules costs
(issue 19: neither imports structlog nor logging; a worker writing JSON lines never imports
structlog, one writing for a terminal imports it once, before it forks its children)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import jobq

PUBLIC = ["Queue", "current_job", "JobContext", "JobPayload", "JobState", "Status",
          "PermanentFailure", "periodic", "Group", "GroupStatus", "WorkerInfo", "WorkerState", "ChildInfo", "errors",
          "__version__"]


def _imported_after(code: str) -> set[str]:
    """Modules a fresh interpreter holds after running ``code``."""
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(*sys.modules)"],
                         check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_all_is_unchanged_and_every_name_resolves() -> None:
    assert jobq.__all__ == PUBLIC
    from jobq.queue import Queue
    from jobq.worker_info import WorkerState
    assert jobq.Queue is Queue and jobq.WorkerState is WorkerState
    assert jobq.errors.JobqError.__module__ == "jobq.errors"
    namespace: dict[str, object] = {}
    exec("from jobq import *", namespace)
    assert set(PUBLIC) <= set(namespace)
    assert set(PUBLIC) <= set(dir(jobq))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        jobq.no_such_name  # noqa: B018


def test_import_jobq_loads_no_submodule() -> None:
    loaded = _imported_after("import jobq")
    assert {m for m in loaded if m.startswith("jobq.")} == set()


def test_a_workers_start_path_imports_no_logging_library(tmp_path: Path) -> None:
    """Nor hashlib, where the queue has no secret key, nor compaction and purging (a child never
    needs them; its supervisor imports them once its children started)."""
    loaded = _imported_after("import jobq.cli, workers.worker, workers.child\n"
                             f"jobq.Queue({str(tmp_path / 'q')!r}).close()")
    assert {"structlog", "logging", "traceback", "jobq.cli.worker_view", "hashlib",
            "hmac", "jobq.schedule", "jobq.local.compaction", "jobq.local.upkeep",
            "jobq.local.purging"} & loaded == set()


def test_a_submodule_is_an_attribute_as_before() -> None:
    """``import jobq`` used to import most submodules: ``jobq.periodic_jobs`` still reads."""
    loaded = _imported_after("import jobq\nassert jobq.periodic_jobs.registered() == []")
    assert "jobq.periodic_jobs" in loaded


def test_jobq_version_imports_neither_the_queue_nor_the_other_commands() -> None:
    """``jobq --version`` is parsed by a parser that knows no command (jobq.cli.parser)."""
    loaded = _imported_after("import jobq.cli\ntry:\n    jobq.cli.main(['--version'])\n"
                             "except SystemExit:\n    pass")
    assert {m for m in loaded if m.startswith("jobq.")} == \
        {"jobq._logging", "jobq._json_lines", "jobq.cli", "jobq.cli.parser"}
    assert {"dataclasses", "json", "sqlite3"} & loaded == set()


def test_a_commands_parser_imports_what_that_command_needs_only() -> None:
    """The worker's parser, above all: none of the other commands' modules nor jobq.state."""
    loaded = _imported_after("from jobq.cli.parser import parse\nparse(['worker', '--burst'])")
    assert {m for m in loaded if m.startswith("jobq.")} == {
        "jobq._logging", "jobq._json_lines", "jobq.cli", "jobq.cli.parser"}


@pytest.mark.parametrize("location", ["postgres"], indirect=True)
def test_a_queue_in_postgresql_never_loads_the_directory_engine(location: str) -> None:
    """A worker on PostgreSQL (its supervisor and children) has no use for jobq.local: some
    70 ms of its start (issue 19)."""
    loaded = _imported_after("import jobq.cli, workers.worker, workers.child\n"
                             f"jobq.Queue({location!r}).close()")
    assert "jobq.postgres" in loaded
    assert {m for m in loaded if m.startswith("jobq.local")} == set()


def test_jobq_worker_forks_its_child_without_the_other_commands_modules(tmp_path: Path) -> None:
    """What the supervisor holds when it forks its first child: neither the other commands'
    modules (jobq.cli.commands and what it imports), nor q.map's (jobq.groups: two dataclasses,
    some 10 M instructions) nor the workers view's (jobq.worker_info: two more), nor a heap the
    child's collector would walk (frozen: gc.freeze); and only the dataclasses of jobq named below
    (each costs some 3.5 M instructions to build: internal records are named tuples). Nor
    structlog: its events are JSON lines (stderr is not a terminal), which jobq writes itself
    (see test_logging)."""
    jobq.Queue(str(tmp_path / "q")).close()  # an existing queue: no queue_created warning
    code = ("import gc, sys\n"
            "def dataclasses():\n"
            "    return [f'{v.__module__}.{v.__qualname__}' for m in list(sys.modules.values())\n"
            "            for v in list(vars(m).values()) if isinstance(v, type)\n"
            "            and '__dataclass_fields__' in v.__dict__ and v.__module__ == m.__name__\n"
            "            and m.__name__.partition('.')[0] in ('jobq', 'workers')]\n"
            "def hook(event, args):\n"
            "    if event == 'os.fork' and not hasattr(sys, 'at_fork'):\n"
            "        sys.at_fork = (set(sys.modules), gc.get_freeze_count(), gc.isenabled(),\n"
            "                       dataclasses())\n"
            "sys.addaudithook(hook)\n"
            "import jobq.cli\n"
            f"assert jobq.cli.main(['worker', '--burst', '--dir', {str(tmp_path / 'q')!r}]) == 0\n"
            "loaded, frozen, enabled, built = sys.at_fork\n"
            "print(','.join(built), frozen, enabled, *loaded)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    built, frozen, enabled, loaded = set(out[0].split(",")), int(out[1]), out[2], set(out[3:])
    assert "workers.child" in loaded and "structlog" not in loaded
    assert {"jobq.cli.commands", "jobq.cli.inputs", "jobq.cli.render",
            "jobq.cli.upkeep", "jobq.groups", "jobq.worker_info"} & loaded == set()
    # Nor what only enqueueing, limits, dependencies or listings use (their dataclass and named
    # tuples: some 7 M instructions of the supervisor's start, issue 19).
    assert {"jobq.limits", "jobq.batches", "jobq.dependencies",
            "jobq.local.damage"} & loaded == set()
    assert frozen > 10_000 and enabled == "True"
    assert built == {"jobq.config.QueueConfig", "jobq.payload.JobPayload",
                     "jobq.state.JobState", "workers.config.WorkerConfig"}
