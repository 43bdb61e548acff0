"""Who may use a queue's files: owner-only by default, or shared with one group.

Pickle runs code, so whoever may write a queue may run code in its workers (unless records are
signed): a queue is owner-only (directories 0700, files 0600) unless its owner shares it with a
group, for a web app and a worker that run as different users (``jobq init --shared-group``).

A shared queue's directories are ``2770`` and group-owned by that group. The setgid bit makes
the kernel give every file created in them the directory's group, whichever user creates it; the
mode is jobq's part: every file jobq creates in a directory with the setgid bit and group write
(:func:`file_mode`) is made ``0660`` with ``fchmod``, whatever the umask of the process. The rule
is read from the directory at each creation, not from a setting loaded at start, so a process
started before its queue was shared creates shared files from then on too. SQLite gives its
``-wal`` and ``-shm`` files the database file's mode itself.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat

from ..errors import QueuePermissionError

FILE_MODE = 0o600
DIR_MODE = 0o700
SHARED_FILE_MODE = 0o660
SHARED_DIR_MODE = 0o2770
_SHARED_BITS = stat.S_ISGID | stat.S_IWGRP


def is_shared_mode(mode: int) -> bool:
    """Does a directory of this mode hold a shared queue's files (setgid and group-writable)?"""
    return mode & _SHARED_BITS == _SHARED_BITS


def file_mode(directory: str) -> int:
    """The mode of a new file in ``directory``: 0660 in a shared queue, else 0600."""
    return SHARED_FILE_MODE if is_shared_mode(os.stat(directory).st_mode) else FILE_MODE


def dir_mode(parent: str) -> int:
    """The mode of a new directory in ``parent``: 2770 in a shared queue, else 0700."""
    return SHARED_DIR_MODE if is_shared_mode(os.stat(parent).st_mode) else DIR_MODE


def create_file(path: str, flags: int = os.O_RDWR) -> int:
    """Create ``path`` (FileExistsError if it exists) with the mode its directory calls for.

    In a shared queue the file is made under a temporary name, given its mode (the umask, 022
    say, took the group's write bit), then linked into place: a user of the group who opens it
    the moment it appears must never find it owner-only.
    """
    mode = file_mode(os.path.dirname(os.path.abspath(path)))
    if mode == FILE_MODE:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    tmp = f"{path}.tmp.{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(tmp, flags | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        os.link(tmp, path)  # FileExistsError if it exists, as O_EXCL would
    except BaseException:
        os.close(fd)
        raise
    finally:
        os.unlink(tmp)
    return fd


def open_file(path: str, flags: int = os.O_RDWR) -> int:
    """Open ``path``, creating it as :func:`create_file` does if it is missing."""
    try:
        return os.open(path, flags | os.O_CLOEXEC)  # the usual case: one system call
    except FileNotFoundError:
        pass
    try:
        return create_file(path, flags)
    except FileExistsError:  # another process created it meanwhile
        return os.open(path, flags | os.O_CLOEXEC)


def share(root: str, gid: int) -> None:
    """Give every directory and file under ``root`` to group ``gid`` with the shared modes.

    Each directory is changed before its entries are listed: a file another process creates in
    it meanwhile is created shared (see the module docstring), so none is missed. A read-only
    file (a sealed log segment) stays read-only: ``0440``.
    """
    os.chown(root, -1, gid)
    os.chmod(root, SHARED_DIR_MODE)
    with os.scandir(root) as entries:
        found = list(entries)
    for entry in found:
        if entry.is_dir(follow_symlinks=False):
            share(entry.path, gid)
        elif entry.is_file(follow_symlinks=False):
            try:
                writable = entry.stat(follow_symlinks=False).st_mode & stat.S_IWUSR
                os.chown(entry.path, -1, gid)
                os.chmod(entry.path, SHARED_FILE_MODE if writable else SHARED_FILE_MODE & ~0o222)
            except FileNotFoundError:
                pass  # a temporary or lock file removed meanwhile


def group_id(group: str | int) -> int:
    """A group's id from its name or number; KeyError if there is no such group."""
    if isinstance(group, int) or group.isdigit():
        return int(group)
    return grp.getgrnam(group).gr_gid


def user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def member_of(gid: int) -> bool:
    return os.getegid() == gid or gid in os.getgroups()


def denied(path: str, root: str) -> QueuePermissionError:
    """The error for a file of the queue at ``root`` this process may not use: what it may not
    do, on which file (or the directory that hides it), who owns that, and the way out."""
    path = os.path.abspath(path)
    st = None
    while st is None:
        try:
            st = os.stat(path)
        except PermissionError:  # hidden by a directory above: that directory is the problem
            path = os.path.dirname(path)
        except FileNotFoundError:
            path = os.path.dirname(path)  # not created yet: its directory must be writable
            if path == os.path.dirname(path):
                break
    if st is None:
        st = os.stat(path)
    is_dir = stat.S_ISDIR(st.st_mode)
    if not os.access(path, os.R_OK, effective_ids=True):
        action = "read"
    elif not os.access(path, os.W_OK, effective_ids=True):
        action = "write"
    elif is_dir and not os.access(path, os.X_OK, effective_ids=True):
        action = "enter"
    else:
        action = "use"
    me, owner, group = user_name(os.geteuid()), user_name(st.st_uid), group_name(st.st_gid)
    try:
        root_st: os.stat_result | None = os.stat(root)
    except OSError:
        root_st = None
    if root_st is not None and is_shared_mode(root_st.st_mode) and member_of(root_st.st_gid):
        remedy = (f"the queue is shared with group {group_name(root_st.st_gid)}, which {me} is"
                  f" in, but this file is not: its owner {owner} (or root) can share it again"
                  f" with jobq init --dir {root} --shared-group {group_name(root_st.st_gid)}")
    elif root_st is not None and is_shared_mode(root_st.st_mode):
        remedy = (f"the queue is shared with group {group_name(root_st.st_gid)}: add {me} to it"
                  f" (then start a new login session), or run jobq as {owner}")
    else:
        remedy = (f"run jobq as {owner}; or share the queue with a group {me} is in"
                  f" (as {owner}: jobq init --dir {root} --shared-group GROUP); or fix the"
                  " permissions")
    why = "; every jobq command writes to its queue, reads included" if action == "write" else ""
    return QueuePermissionError(
        f"permission denied: {me} cannot {action} {path} (owner {owner}, group {group},"
        f" mode {stat.S_IMODE(st.st_mode):04o}){why}: {remedy}", path=path, uid=os.geteuid())


def check(root: str, paths: list[str]) -> None:
    """Raise :func:`denied` for the first of ``paths`` (the queue's directories and files) that
    exists and that this process may not read and write (and enter, for a directory)."""
    for path in paths:
        try:
            is_dir = stat.S_ISDIR(os.stat(path).st_mode)
        except FileNotFoundError:
            continue  # created when needed, in a directory checked here
        except PermissionError:
            raise denied(path, root) from None
        need = os.R_OK | os.W_OK | (os.X_OK if is_dir else 0)
        if not os.access(path, need, effective_ids=True):
            if not os.path.lexists(path):
                # Gone since the stat: SQLite removes the WAL and its index as the last
                # connection to the queue closes (a process that created the queue beside us).
                continue
            raise denied(path, root)
