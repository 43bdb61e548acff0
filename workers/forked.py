"""A worker's child processes and the pipes it talks to them through: ``os.fork``, ``os.pipe`` and
length-prefixed pickles, as RQ and gunicorn fork their workers.

multiprocessing's fork context did this, at a price every worker paid as it started: importing
``multiprocessing.connection`` brings socket, selectors, tempfile, shutil, bz2, lzma, random and
subprocess, some 40 M instructions (10 ms here) of the 80 to a new worker's first job (issue 19),
for a pipe, a fork and ``waitpid``. Its behaviour is kept: ``exitcode`` is the exit status, or
minus the signal that killed the child; ``sentinel`` becomes readable once the child has exited;
the child's stdin reads from /dev/null; it ends its process when its target returns or raises
(1, with the traceback on stderr), once the threads it started that are not daemons have ended.
One difference: the child is not a daemonic ``multiprocessing.Process``, which multiprocessing
forbids to start processes of its own (a task may run a Pool: see
``child_process.hold_shutdown_signals``).
"""

from __future__ import annotations

import math
import os
import pickle
import select
import struct
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

_LENGTH = struct.Struct("!I")  # before each pickled message
_EVENTS = select.POLLIN | select.POLLHUP | select.POLLERR


class Connection:
    """One end of a two-way channel between a supervisor and a child: a message is a pickle
    after its length, written whole (a child's two threads send under a lock of their own)."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read, self._write = read_fd, write_fd

    def fileno(self) -> int:
        """What to wait on for the next message (:func:`wait`)."""
        return self._check(self._read)

    def send(self, message: Any) -> None:
        """BrokenPipeError (an OSError) once the other end is closed."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_LENGTH.pack(len(data)) + data)
        fd = self._check(self._write)
        while view:
            view = view[os.write(fd, view):]

    def recv(self) -> Any:
        """The next message, waiting for it; EOFError once the other end is closed."""
        size, = _LENGTH.unpack(self._read_exactly(_LENGTH.size))
        return pickle.loads(self._read_exactly(size))

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Is a message (or the other end's close) there, waiting up to ``timeout`` seconds
        (None: for ever)?"""
        return bool(wait([self._check(self._read)], timeout))

    def close(self) -> None:
        for fd in {self._read, self._write} - {-1}:
            os.close(fd)
        self._read = self._write = -1

    def __del__(self) -> None:  # an end dropped unclosed (closed ones hold -1)
        self.close()

    def _read_exactly(self, size: int) -> bytes:
        fd, parts = self._check(self._read), []
        while size:
            part = os.read(fd, size)
            if not part:
                raise EOFError("the other end of the pipe is closed")
            parts.append(part)
            size -= len(part)
        return b"".join(parts)

    @staticmethod
    def _check(fd: int) -> int:
        if fd < 0:
            raise OSError("the connection is closed")
        return fd


def pipe() -> tuple[Connection, Connection]:
    """Two connected ends: what one sends, the other receives. Not inherited across exec."""
    a_read, b_write = os.pipe()
    b_read, a_write = os.pipe()
    return Connection(a_read, a_write), Connection(b_read, b_write)


def wait(objects: Iterable[Any], timeout: float | None) -> list[Any]:
    """Those of ``objects`` (file descriptors, or objects with ``fileno()``) that are readable,
    or at their end, waiting up to ``timeout`` seconds for one (None: for ever)."""
    poller, by_fd = select.poll(), {}
    for obj in objects:
        fd = obj if isinstance(obj, int) else obj.fileno()
        by_fd[fd] = obj
        poller.register(fd, _EVENTS)
    ms = None if timeout is None else max(0, math.ceil(timeout * 1000))
    return [by_fd[fd] for fd, _ in poller.poll(ms)]


class Child:
    """A forked child process, as its parent sees it."""

    def __init__(self, pid: int, sentinel: int) -> None:
        self.pid, self.sentinel = pid, sentinel
        self.exitcode: int | None = None

    def is_alive(self) -> bool:
        if self.exitcode is None:
            self._reap(os.WNOHANG)
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds (None: for ever) for the child to exit, and reap it."""
        if self.exitcode is not None:
            return
        if timeout is not None and not wait([self.sentinel], timeout):
            return
        self._reap(os.WNOHANG if timeout == 0 else 0)

    def _reap(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): as multiprocessing does
            return
        if pid == self.pid:
            self.exitcode = os.waitstatus_to_exitcode(status)
            os.close(self.sentinel)


def fork(target: Callable[..., Any], args: tuple[Any, ...]) -> Child:
    """Run ``target(*args)`` in a forked child, which then exits."""
    _flush_std_streams()  # or what they buffered is written twice
    sentinel, held = os.pipe()  # the child holds the write end until it exits
    try:
        pid = os.fork()
    except BaseException:
        os.close(sentinel)
        os.close(held)
        raise
    if pid == 0:
        os.close(sentinel)
        _run(target, args)
    os.close(held)
    return Child(pid, sentinel)


def _run(target: Callable[..., Any], args: tuple[Any, ...]) -> NoReturn:
    code = 1
    try:
        _stdin_from_devnull()
        target(*args)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            sys.stderr.write(f"{exc.code}\n")
    except BaseException:
        import traceback
        sys.stderr.write(f"jobq child process {os.getpid()}:\n")
        traceback.print_exc()
    finally:
        try:
            for thread in threading.enumerate():
                if thread is not threading.current_thread() and not thread.daemon:
                    thread.join()
            _flush_std_streams()
        finally:
            os._exit(code)


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):  # None, closed, or its reader gone
            pass


def _stdin_from_devnull() -> None:
    """A child reading stdin would take its supervisor's input (multiprocessing does this)."""
    if sys.stdin is None:
        return
    try:
        sys.stdin.close()
        sys.stdin = open(os.devnull, encoding="utf-8")
    except (OSError, ValueError):
        pass
