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
