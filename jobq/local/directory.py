"""The queue directory: its layout, its format file, and the checks made before anything is read.

Layout::

    <queue>/jobq.json        on-disk format version and whether records are signed (written once)
    <queue>/log/             append-only segment files (jobq.local.log) and append.lock
    <queue>/state.sqlite3    job state snapshots (shelve), the index and the covered log offset
    <queue>/state.lock       serialises write transactions on state.sqlite3
    <queue>/quarantine/      damaged or torn log bytes, copied aside before they are skipped or cut

The directory and everything in it are owner-only (0700 / 0600): pickle runs code, so who may write
here may run code in every worker unless records are signed. Or its owner shares it with one group
(:func:`share`; see :mod:`jobq.local.permissions`): 2770 / 0660, and ``jobq.json`` names the group.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from . import durable, keys, permissions
from .._logging import get_logger
from ..errors import (ConfigError, IncompatibleFormat, NotAQueue, QueuePermissionError,
                     StorageError, WrongSecretKey)

log = get_logger(__name__)

# 2: log segments may end in zero fill (jobq.local.log), which format 1 read as torn;
# 3: what a jobq that knows only format 2 must refuse: the queue is shared with a group
#    ("shared_group"), where it would create owner-only files the group's other users cannot open;
#    or old secret keys are pending ("old_key_checks", jobq.local.keys), whose records it would take for
#    damage. Format 2 again only when neither holds (keys.with_keys).
FORMAT = keys.PLAIN_FORMAT
SHARED_FORMAT = keys.MARKED_FORMAT
FORMAT_FILE = keys.FORMAT_FILE
key_check = keys.key_check


class QueueDir(NamedTuple):
    """Paths inside one checked queue directory, and the settings every opener must share.
    (A named tuple: a frozen dataclass costs some 3.5 M instructions to build as a worker
    starts, issue 19.)"""

    root: str
    fixed: Mapping[str, int] = MappingProxyType({})  # FIXED_SETTINGS recorded at creation
    created: bool = False  # this open made the queue (wrote its format file)
    shared_group: int | None = None  # the group the queue is shared with (jobq init --shared-group)
    missing_keys: tuple[str, ...] = ()  # fingerprints of old keys pending but not given

    @property
    def log(self) -> str:
        return os.path.join(self.root, "log")

    @property
    def state_db(self) -> str:
        return os.path.join(self.root, "state.sqlite3")

    @property
    def state_lock(self) -> str:
        return os.path.join(self.root, "state.lock")

    @property
    def quarantine(self) -> str:
        return os.path.join(self.root, "quarantine")


# Settings every process opening a queue must share, so they are recorded when it is created:
# - segment_size: producers that rolled segments at different sizes would append to a segment
#   the index has already passed, and those jobs would never run;
# - max_record_size: a reader with a smaller limit would quarantine valid jobs and skip them.
FIXED_SETTINGS = ("segment_size", "max_record_size")


def open_dir(path: str, secret_key: bytes | None, settings: dict[str, int],
             old_keys: tuple[bytes, ...] = ()) -> QueueDir:
    """Create the queue directory if needed, then check its format and keys (rotating to
    ``secret_key`` if the queue's key is among ``old_keys``: see :mod:`jobq.local.keys`).

    ``settings`` are recorded if the queue is new; the returned QueueDir says which values the
    queue was created with (a directory from before a setting was recorded lacks it).
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotAQueue(f"{path} exists and is not a directory", path=path)
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        durable.make_dir(path, permissions.DIR_MODE)  # shared only when its owner says so
        qdir = QueueDir(path)
        info = _read_format(qdir)
        created = False
        if info is None:
            # Another process creating this queue at the same moment may have its temporary
            # format file here, or its format file since the read above: the first to link
            # its file wins, and the others read that one.
            leftovers = {name for name in os.listdir(path)
                         if not name.startswith(f"{FORMAT_FILE}.tmp.")} \
                - {"log", "quarantine", "state.sqlite3", "state.lock", FORMAT_FILE}
            if leftovers:
                found = ", ".join(sorted(leftovers)[:3]) + (", ..." if len(leftovers) > 3 else "")
                raise NotAQueue(f"{path} is not empty ({found}) and holds no {FORMAT_FILE}:"
                                " refusing to turn it into a queue (choose an empty or new"
                                " directory)", path=path)
            wanted = {"format": keys.PLAIN_FORMAT, "signed": secret_key is not None,
                      "key_check": key_check(secret_key),
                      **{k: settings[k] for k in FIXED_SETTINGS}}
            created = durable.atomic_write(os.path.join(path, FORMAT_FILE),
                                           json.dumps(wanted, indent=1).encode() + b"\n",
                                           exclusive=True)
            info = _read_format(qdir)
            assert info is not None
        _check_format(path, info, secret_key)
        if info["format"] < FORMAT:  # type: ignore[operator]  # an int: checked
            _upgrade_format(qdir, info)
        missing = () if secret_key is None else keys.check(path, info, secret_key, old_keys)
        qdir = QueueDir(path, {k: v for k in FIXED_SETTINGS
                               if isinstance(v := info.get(k), int) and v > 0}, created,
                        _shared_group(info), missing)
        if qdir.shared_group is not None:
            _check_shared(qdir)
        permissions.check(path, _paths(qdir))
        durable.make_dir(qdir.log)
        durable.make_dir(qdir.quarantine)
    except StorageError:
        raise
    except OSError as exc:
        raise _os_error(exc, path, "use") from exc
    return qdir


def _os_error(exc: OSError, path: str, doing: str) -> StorageError:
    if isinstance(exc, PermissionError):
        return permissions.denied(exc.filename or path, path)
    return StorageError(f"cannot {doing} queue directory {path}: {exc.strerror or exc}",
                        path=path, errno=exc.errno)


def exists(path: str) -> bool:
    """Is there a queue at ``path``? QueuePermissionError if this user may not look."""
    try:
        os.stat(os.path.join(path, FORMAT_FILE))
    except (FileNotFoundError, NotADirectoryError):
        return False
    except PermissionError as exc:
        raise permissions.denied(exc.filename or path, path) from exc
    return True


def _paths(qdir: QueueDir) -> list[str]:
    """What every process on the queue reads and writes (those that exist), in the order an
    open reaches them: checked first, so that a user who may not gets one clear error."""
    root = qdir.root
    return [root, os.path.join(root, FORMAT_FILE), qdir.log, qdir.quarantine, qdir.state_db,
            qdir.state_db + "-wal", qdir.state_db + "-shm", qdir.state_lock,
            os.path.join(qdir.log, "append.lock"), os.path.join(root, "workers"),
            os.path.join(root, "compact.lock"), os.path.join(root, keys.LOCK_FILE),
            os.path.join(root, "schedules.json")]  # jobq.local.schedules.FILE


def _shared_group(info: dict[str, object]) -> int | None:
    gid = info.get("shared_group")
    version = info.get("format")
    return gid if isinstance(version, int) and version >= SHARED_FORMAT and isinstance(gid, int) \
        else None


def _check_shared(qdir: QueueDir) -> None:
    """A shared queue whose directories are not (all) shared was changed by hand, or its
    sharing was interrupted: its owner finishes it now; anyone else is told to."""
    gid = qdir.shared_group
    assert gid is not None
    for directory in (qdir.root, qdir.log, qdir.quarantine):
        try:
            st = os.stat(directory)
        except FileNotFoundError:
            continue
        if st.st_gid == gid and permissions.is_shared_mode(st.st_mode):
            continue
        if os.geteuid() in (0, os.stat(qdir.root).st_uid):
            permissions.share(qdir.root, gid)
            log.warning("queue.sharing_finished", path=qdir.root,
                        group=permissions.group_name(gid))
            return
        raise QueuePermissionError(
            f"{qdir.root} is shared with group {permissions.group_name(gid)} ({FORMAT_FILE}),"
            f" but {directory} is not (group {permissions.group_name(st.st_gid)}, mode"
            f" {st.st_mode & 0o7777:04o}): its owner"
            f" {permissions.user_name(os.stat(qdir.root).st_uid)} must run: jobq init --dir"
            f" {qdir.root} --shared-group {permissions.group_name(gid)}", path=directory)


def share(path: str, group: str | int) -> QueueDir:
    """Share the existing queue at ``path`` with ``group``: its directories become 2770 and its
    files 0660, all of that group, and every file any process creates in it later too.

    Its format file first says so (format 3), then every file is changed: an interrupted run
    is finished by the next open of its owner, or by running it again. Only the queue's owner
    (or root) can, and only with a group they are in.
    """
    try:
        gid = permissions.group_id(group)
    except KeyError:
        raise ConfigError(f"no group {group!r} on this system (create it first: groupadd"
                          f" {group})") from None
    qdir = QueueDir(path)
    try:
        info = _read_format(qdir)
        if info is None:
            raise NotAQueue(f"no queue at {path}", path=path)
        owner = os.stat(path).st_uid
        if _shared_group(info) == gid and os.geteuid() not in (0, owner):
            return QueueDir(path, shared_group=gid)  # done already (opening it checked that)
        if os.geteuid() not in (0, owner):
            raise QueuePermissionError(
                f"only the owner of {path}, {permissions.user_name(owner)}, or root can share"
                " it with a group", path=path)
        if os.geteuid() != 0 and not permissions.member_of(gid):
            raise QueuePermissionError(
                f"{permissions.user_name(os.geteuid())} is not in group"
                f" {permissions.group_name(gid)}: only root or a member can give the queue to"
                f" it (add {permissions.user_name(os.geteuid())} to the group and log in again,"
                " or run this as root)", path=path)
        if _shared_group(info) != gid:
            with keys.lock(path):  # a key rotation rewrites the file too
                keys.write(path, {**keys.read(path), "format": SHARED_FORMAT, "shared_group": gid})
        permissions.share(path, gid)
    except StorageError:
        raise
    except OSError as exc:
        raise _os_error(exc, path, "share") from exc
    log.info("queue.shared", path=path, group=permissions.group_name(gid))
    return QueueDir(path, shared_group=gid)


def _read_format(qdir: QueueDir) -> dict[str, object] | None:
    file = os.path.join(qdir.root, FORMAT_FILE)
    permissions.check(qdir.root, [qdir.root, file])
    try:
        with open(file, "rb") as f:
            info = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotAQueue(f"{file} is not a jobq format file: {exc}", path=qdir.root) from exc
    if not isinstance(info, dict):
        raise NotAQueue(f"{file} is not a jobq format file", path=qdir.root)
    return info


def format_found(path: str) -> int:
    """The on-disk format ``path``'s format file names (checked: IncompatibleFormat if newer),
    reading nothing else and changing nothing; NotAQueue if it is not a queue."""
    info = _read_format(QueueDir(path))
    if info is None:
        raise NotAQueue(f"{path} holds no {FORMAT_FILE}: not a queue", path=path)
    return _check_version(path, info)


def _upgrade_format(qdir: QueueDir, info: dict[str, object]) -> None:
    """Record that this directory now holds the current format, so that an older jobq, which
    would take the zero fill after the records for a torn write, refuses it instead.

    Format 1 is read as it is: its segments are format 2 segments without zero fill.
    """
    keys.write(qdir.root, {**info, "format": keys.PLAIN_FORMAT})
    log.info("queue.format_upgraded", path=qdir.root, found=info["format"],
             now=keys.PLAIN_FORMAT)


def _check_version(path: str, info: dict[str, object]) -> int:
    version = info.get("format")
    if not isinstance(version, int) or version < 1:
        raise NotAQueue(f"{path}/{FORMAT_FILE} has no valid format version", path=path)
    if version > SHARED_FORMAT:
        raise IncompatibleFormat(
            f"{path} was written by on-disk format {version}; this jobq reads format"
            f" {SHARED_FORMAT}: upgrade jobq to open it", path=path, found=version,
            supported=SHARED_FORMAT)
    return version


def _check_format(path: str, info: dict[str, object], secret_key: bytes | None) -> None:
    _check_version(path, info)
    if info.get("signed") and secret_key is None:
        raise WrongSecretKey(f"{path} holds signed records: open it with its secret_key"
                             " (or set JOBQ_SECRET_KEY)", path=path)
    if not info.get("signed") and secret_key is not None:
        raise WrongSecretKey(f"{path} was created without a secret key; its records are not"
                             " signed, so it cannot be opened with one", path=path)
