"""Module-level tasks for the tests: importable by reference, also from child processes."""

from __future__ import annotations

from typing import Any

from jobq import current_job

CALLS: list[Any] = []


def add(a: int, b: int) -> int:
    return a + b


def echo(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def record_call(tag: Any) -> Any:
    CALLS.append(tag)
    return tag


def boom(message: str = "boom") -> None:
    raise ValueError(message)


def fail_until(attempt_ok: int) -> int:
    """Fails on every attempt before ``attempt_ok``; returns the attempt that succeeded."""
    ctx = current_job()
    if ctx.attempt < attempt_ok:
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return ctx.attempt


def count_with_checkpoints(n: int, crash_at: int | None = None) -> int:
    """Counts to ``n`` saving a checkpoint each step; raises once at ``crash_at`` on attempt 1."""
    ctx = current_job()
    i = ctx.checkpoint or 0
    while i < n:
        i += 1
        ctx.save(i, progress=i / n)
        if crash_at is not None and i == crash_at and ctx.attempt == 1:
            raise RuntimeError("interrupted")
    return i


def unpicklable_result() -> Any:
    return lambda: None


def wait_for_cancel() -> str:
    ctx = current_job()
    if ctx.cancelled:
        return "saw cancel"
    return "not cancelled"


def fail_unless_exists(path: str) -> str:
    """Fails until ``path`` exists: a dependency that gets fixed between attempts."""
    import os
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return "fixed"


def slow_steps(n: int, step_seconds: float, marker_dir: str) -> dict[str, int]:
    """Checkpoints after each of ``n`` steps; leaves ``step-<attempt>-<i>`` files behind.

    Returns the step this attempt resumed from and the attempt number, so tests can see a resume.
    """
    import os
    import time
    ctx = current_job()
    start = ctx.checkpoint or 0
    for i in range(start + 1, n + 1):
        time.sleep(step_seconds)
        ctx.save(i, progress=i / n)
        open(os.path.join(marker_dir, f"step-{ctx.attempt}-{i}"), "w").close()
    return {"resumed_from": start, "attempt": ctx.attempt}


def kill_own_process() -> None:
    """A poison job: kills the process running it, every time."""
    import os
    import signal
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_for(seconds: float) -> float:
    import time
    time.sleep(seconds)
    return seconds


def ignore_cancel(seconds: float) -> str:
    """Runs to the end whatever ctx.cancelled says."""
    import time
    time.sleep(seconds)
    return "ignored"


def stop_when_cancelled(limit: float) -> str:
    """Polls ctx.cancelled and stops early when asked."""
    import time
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if current_job().cancelled:
            return "stopped early"
        time.sleep(0.01)
    return "ran to the end"


def pid_then_sleep(path: str, seconds: float) -> int:
    """Writes the running process's pid to ``path`` (after a checkpoint), then sleeps."""
    import os
    import time
    current_job().save("started", progress=0.1)
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(seconds)
    return os.getpid()


def note_run(path: str, tag: Any) -> Any:
    """Appends a line ``tag`` to ``path`` (one write per run): counts runs across processes."""
    import os
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{tag}\n".encode())
    finally:
        os.close(fd)
    return tag


def give_up(reason: str) -> None:
    """Fails for good: no retry can help."""
    from jobq import PermanentFailure
    try:
        raise LookupError(reason)
    except LookupError as exc:
        raise PermanentFailure(f"giving up: {reason}") from exc


def keyword_only(a: int, *, scale: int, offset: int = 0) -> int:
    return a * scale + offset


def sum_steps(n: int, step_seconds: float, pid_path: str,
              resumed_step_seconds: float | None = None, release_when_stopping: bool = False,
              fast_once: str | None = None) -> dict[str, int]:
    """Adds 1..n, one number every ``step_seconds`` (``resumed_step_seconds`` once resumed from a
    checkpoint; no wait once the file ``fast_once`` exists, so a test that is done killing the
    job lets it finish at once), saving ``(i, total)`` after each and then writing ``<pid> <i>``
    to ``pid_path``, so a test can kill the process after a save. With
    ``release_when_stopping``, it ends its attempt early once its worker is stopping (the
    resumable pattern of ctx.stopping)."""
    import os
    import time
    ctx = current_job()
    start, total = ctx.checkpoint or (0, 0)
    if start and resumed_step_seconds is not None:
        step_seconds = resumed_step_seconds
    for i in range(start + 1, n + 1):
        if step_seconds and fast_once is not None and os.path.exists(fast_once):
            step_seconds = 0.0
        time.sleep(step_seconds)
        total += i
        ctx.save((i, total), progress=i / n)
        with open(pid_path + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {i}")
        os.replace(pid_path + ".tmp", pid_path)
        if release_when_stopping and ctx.stopping:
            ctx.release()
    return {"sum": total, "resumed_from": start, "attempt": ctx.attempt}


def save_then_die() -> None:
    """A poison job that saves before it kills its process: the same checkpoint every time."""
    import os
    import signal
    ctx = current_job()
    ctx.save(ctx.checkpoint or "start")
    os.kill(os.getpid(), signal.SIGKILL)


def release_at_once() -> str:
    """Gives its job back whether or not its worker is stopping."""
    current_job().release()
    return "not reached"


def barrier(path: str, parties: int, timeout: float = 90.0) -> int:
    """Notes its arrival in ``path``, then waits until ``parties`` runs have arrived: so many
    of them can only end if that many run at once (each in its own worker child)."""
    import os
    import time
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"+\n")
    finally:
        os.close(fd)
    deadline = time.monotonic() + timeout
    while True:
        with open(path) as f:
            arrived = len(f.read().split())
        if arrived >= parties:
            return arrived
        if time.monotonic() > deadline:
            raise RuntimeError(f"barrier: {arrived} of {parties} runs arrived in {timeout} s")
        time.sleep(0.01)


def mark_then_sleep(path: str, seconds: float) -> str:
    """The first run writes ``path`` and sleeps (saving no checkpoint: a death during it is
    charged); a later run, once ``path`` exists, returns at once."""
    import os
    import time
    if os.path.exists(path):
        return "again"
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return "first"


def gc_threshold() -> tuple[int, ...]:
    """The collector's thresholds in the process running the job."""
    import gc

    return tuple(gc.get_threshold())


def signal_names() -> list[str]:
    """How this process handles SIGINT and SIGTERM: the names of the two handlers."""
    import signal

    return [getattr(h, "name", None) or h.__name__
            for h in map(signal.getsignal, (signal.SIGINT, signal.SIGTERM))]


def signals_of_started_processes() -> list[str]:
    """How this process handles SIGINT and SIGTERM, then a process it forks, then a program it
    runs with subprocess."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, " ".join(signal_names()).encode())
        os._exit(0)
    os.close(write)
    forked = os.read(read, 1000).decode().split()
    os.close(read)
    os.waitpid(pid, 0)
    program = "import jobtasks; print(*jobtasks.signal_names())"
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    return [*signal_names(), *forked, *run.stdout.split()]


def pool_map(start_method: str, rounds: int) -> list[int]:
    """A multiprocessing Pool's map, ``rounds`` times, each Pool ended by its with-block (which
    terminates its workers with SIGTERM)."""
    import multiprocessing

    results = []
    for _ in range(rounds):
        with multiprocessing.get_context(start_method).Pool(2) as pool:
            results = pool.map(abs, [-1, -2, -3])
    return results
