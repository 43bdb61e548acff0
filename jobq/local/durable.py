"""Durability primitives: every "atomic rename" and every fsync of a directory goes through here.

A rename is atomic but not durable until the directory holding it is fsynced; a written file is not
durable until the file is fsynced. Skipping either can lose a file that a caller was told exists.
"""

from __future__ import annotations

import errno
import os

from . import permissions


_COPY_CHUNK = 1 << 20  # copy_range reads this much at once, never a whole file

# fdatasync also flushes the file size when it changed, which is all an append needs.
_datasync = getattr(os, "fdatasync", None) or os.fsync


def sync_file(fd: int) -> None:
    """Flush a file's data (and the size needed to read it back) to stable storage."""
    _datasync(fd)


def copy_range(src: int, dst: int, start: int, length: int | None = None) -> int:
    """Append bytes ``[start, start + length)`` of ``src`` (to its end if ``length`` is None, or
    if it ends first) to ``dst``, a megabyte at a time; return how many were copied."""
    copied = 0
    while length is None or copied < length:
        want = _COPY_CHUNK if length is None else min(_COPY_CHUNK, length - copied)
        data = os.pread(src, want, start + copied)
        if not data:
            break
        write_all(dst, data)
        copied += len(data)
    return copied


def copy_file(source: str, target: str, mode: int, length: int | None = None) -> None:
    """Copy ``source`` (its first ``length`` bytes, if given) to the new file ``target``,
    synced, and give the copy ``mode``."""
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = permissions.create_file(target, os.O_WRONLY)
        try:
            copy_range(src, dst, 0, length)
            sync_file(dst)
            os.fchmod(dst, mode)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` at ``fd``'s position (a short write goes on)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def sync_dir(path: str | os.PathLike[str]) -> None:
    """Make entries created, renamed or removed in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path: str | os.PathLike[str], mode: int | None = None) -> bool:
    """Create ``path`` if missing and make its entry durable; True if it was created.

    Its mode is ``mode``, else the one its parent calls for (:func:`permissions.dir_mode`):
    owner-only, or shared inside a shared queue.
    """
    parent = os.path.dirname(os.path.abspath(path))
    want = permissions.dir_mode(parent) if mode is None else mode
    if want != permissions.DIR_MODE and mode is None:
        return _make_shared_dir(path, parent, want)
    try:
        os.mkdir(path, want)
    except FileExistsError:
        return False
    # The umask may have taken bits, and a setgid parent gives its bit to a new directory:
    # a queue made inside one (/usr/local is 2775 on some systems) must not look shared.
    if os.stat(path).st_mode & 0o7777 != want:
        os.chmod(path, want)
    sync_dir(parent)
    return True


def _make_shared_dir(path: str | os.PathLike[str], parent: str, mode: int) -> bool:
    """:func:`make_dir` in a shared queue: made under a temporary name and given its mode (the
    umask took the group's bits), then renamed into place, so that no user of the group finds
    it owner-only. (A rename over an empty directory made meanwhile replaces it: no matter.)"""
    if os.path.isdir(path):
        return False
    tmp = f"{os.fspath(path)}.tmp.{os.getpid()}.{os.urandom(4).hex()}"
    os.mkdir(tmp, mode)
    try:
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except OSError as exc:
        os.rmdir(tmp)
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False  # made meanwhile, and already in use
        raise
    sync_dir(parent)
    return True


def atomic_write(path: str | os.PathLike[str], data: bytes, *, exclusive: bool = False,
                 sync: bool = True) -> bool:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, durably.

    With ``exclusive=True`` an existing file is left alone and False is returned: the first
    writer wins, which is how several processes can race to create the same queue safely.
    ``sync=False`` keeps the atomicity and drops the two fsyncs, for what only matters while the
    machine is up (a worker's heartbeat).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp.{os.getpid()}.{id(data)}"
    fd = permissions.create_file(tmp, os.O_WRONLY)
    try:
        try:
            write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            try:
                os.link(tmp, path)  # fails if path exists: the first writer wins
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
    finally:
        # After link() or replace() the temp name is either gone or a second link to the same file.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    if sync:
        sync_dir(directory)
    return True
