"""SQLite failures on the state database as jobq errors: a damaged file, a full disk, a file
another user owns each get a :class:`StorageError` that names the file and what to do.

Split from :mod:`jobq.local.state_db`, whose transactions raise them.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from . import permissions, wal
from ..errors import CorruptStore, StorageError


# Errors of the caller, not of the file: never translated into StorageError.
_BUGS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.NotSupportedError,
         sqlite3.DataError)


def storage_error(exc: sqlite3.Error, path: str) -> StorageError:
    """The StorageError for a SQLite failure on the state database: the file and what to do."""
    code = getattr(exc, "sqlite_errorname", "")  # Python 3.11+; else judged by the message
    text = str(exc)
    if code.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) \
            or "malformed" in text or "not a database" in text:
        return damaged(path, text)
    if code.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")) \
            or "readonly" in text or "unable to open" in text:
        root = os.path.dirname(path)
        try:  # another user's file, or one this user may only read: say whose and what to do
            permissions.check(root, [root, path, wal.path_of(path), path + "-shm"])
        except StorageError as err:
            return err
    if code.startswith(("SQLITE_FULL", "SQLITE_IOERR")) or "disk" in text:
        return StorageError(
            f"cannot use state database {path}: {text}. Free disk space (or raise the file size"
            " limit) and retry: the failed change was rolled back, nothing stored was lost",
            path=path)
    return StorageError(f"cannot use state database {path}: {text}", path=path)


def damaged(path: str, what: str) -> CorruptStore:
    """The error for a damaged state database, with the two ways out."""
    return CorruptStore(
        f"state database {path} is damaged ({what}). Stop the workers, then restore it from a"
        " backup, or move it aside with its -wal and -shm files and open the queue again: the"
        " index is rebuilt from the log with every job, but finished jobs run again and saved"
        " checkpoints and results are lost", path=path)


@contextmanager
def translated(path: str) -> Iterator[None]:
    """Raise a SQLite failure on ``path`` as StorageError (see :func:`storage_error`)."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise_translated(exc, path)
        raise


def raise_translated(exc: BaseException, path: str) -> None:
    """Raise a SQLite failure on ``path`` as StorageError; return for any other exception (and
    for a SQLite error that is the caller's bug), which the caller then raises as it is."""
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, _BUGS):
        raise storage_error(exc, path) from exc
