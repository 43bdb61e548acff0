"""Durability primitives: every "atomic rename" and every fsync of a directory goes through here.

A rename is atomic but not durable until the directory holding it is fsynced; a written file is not
durable until the file is fsynced. Skipping either can lose a file that a caller was told exists.
"""

from __future__ import annotations

import os

FILE_MODE = 0o600
DIR_MODE = 0o700


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


def make_dir(path: str | os.PathLike[str]) -> bool:
    """Create ``path`` (owner-only) if missing and make its entry durable; True if it was created."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return False
    sync_dir(os.path.dirname(os.path.abspath(path)))
    return True


def atomic_write(path: str | os.PathLike[str], data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, durably.

    With ``exclusive=True`` an existing file is left alone and False is returned: the first
    writer wins, which is how several processes can race to create the same queue safely.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp.{os.getpid()}.{id(data)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        try:
            write_all(fd, data)
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
    sync_dir(directory)
    return True
