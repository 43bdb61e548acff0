"""The no-op job of ``scripts/bench_startup.py``: it creates a file, the signal that a worker's
first job is running, and writes in it the CPU time its worker had used by then."""

import os


def _cpu_ns(pid: str) -> int:
    """CPU time a process has run, in ns (Linux: the scheduler's own count); 0 elsewhere."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def touch(path: str) -> None:
    """Create ``path``, holding the CPU ns of this process and of its parent (the supervisor)."""
    used = _cpu_ns("self") + _cpu_ns(str(os.getppid()))
    with open(path + ".tmp", "w") as f:
        f.write(str(used))
    os.rename(path + ".tmp", path)  # whole when it appears
