"""The queue directory: its layout, its format file, and the checks made before anything is read.

Layout::

    <queue>/jobq.json        on-disk format version and whether records are signed (written once)
    <queue>/log/             append-only segment files (jobq.log) and append.lock
    <queue>/state.sqlite3    job state snapshots (shelve), the index and the covered log offset
    <queue>/state.lock       serialises write transactions on state.sqlite3
    <queue>/quarantine/      damaged or torn log bytes, copied aside before they are skipped or cut

The directory and everything in it are owner-only (0700 / 0600): pickle runs code, so who may write
here may run code in every worker unless records are signed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from . import durable, keys
from ._logging import get_logger
from .errors import IncompatibleFormat, NotAQueue, StorageError, WrongSecretKey

log = get_logger(__name__)

# 2: log segments may end in zero fill (jobq.log), which format 1 read as torn;
# 3: records may be signed by old keys (jobq.keys), which format 2 took for damage. A queue is
# marked 3 only while old keys are pending, and 2 again once they are retired.
FORMAT = keys.ROTATING_FORMAT
FORMAT_FILE = keys.FORMAT_FILE
key_check = keys.key_check


@dataclass(frozen=True)
class QueueDir:
    """Paths inside one checked queue directory, and the settings every opener must share."""

    root: str
    fixed: dict[str, int] = field(default_factory=dict)  # FIXED_SETTINGS recorded at creation
    created: bool = False  # this open made the queue (wrote its format file)
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
    ``secret_key`` if the queue's key is among ``old_keys``: see :mod:`jobq.keys`).

    ``settings`` are recorded if the queue is new; the returned QueueDir says which values the
    queue was created with (a directory from before a setting was recorded lacks it).
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotAQueue(f"{path} exists and is not a directory", path=path)
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        durable.make_dir(path)
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
        if info["format"] < keys.PLAIN_FORMAT:  # type: ignore[operator]  # an int: checked
            _upgrade_format(qdir, info)
        missing = () if secret_key is None else keys.check(path, info, secret_key, old_keys)
        qdir = QueueDir(path, {k: v for k in FIXED_SETTINGS
                               if isinstance(v := info.get(k), int) and v > 0}, created,
                        missing)
        durable.make_dir(qdir.log)
        durable.make_dir(qdir.quarantine)
    except OSError as exc:
        if isinstance(exc, StorageError):
            raise
        raise StorageError(f"cannot use queue directory {path}: {exc.strerror or exc}",
                           path=path, errno=exc.errno) from exc
    return qdir


def _read_format(qdir: QueueDir) -> dict[str, object] | None:
    file = os.path.join(qdir.root, FORMAT_FILE)
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


def _upgrade_format(qdir: QueueDir, info: dict[str, object]) -> None:
    """Record that this directory now holds the current format, so that an older jobq, which
    would take the zero fill after the records for a torn write, refuses it instead.

    Format 1 is read as it is: its segments are format 2 segments without zero fill.
    """
    keys.write(qdir.root, {**info, "format": keys.PLAIN_FORMAT})
    log.info("queue.format_upgraded", path=qdir.root, found=info["format"],
             now=keys.PLAIN_FORMAT)


def _check_format(path: str, info: dict[str, object], secret_key: bytes | None) -> None:
    version = info.get("format")
    if not isinstance(version, int) or version < 1:
        raise NotAQueue(f"{path}/{FORMAT_FILE} has no valid format version", path=path)
    if version > FORMAT:
        raise IncompatibleFormat(
            f"{path} was written by on-disk format {version}; this jobq reads format {FORMAT}:"
            " upgrade jobq to open it", path=path, found=version, supported=FORMAT)
    if info.get("signed") and secret_key is None:
        raise WrongSecretKey(f"{path} holds signed records: open it with its secret_key"
                             " (or set JOBQ_SECRET_KEY)", path=path)
    if not info.get("signed") and secret_key is not None:
        raise WrongSecretKey(f"{path} was created without a secret key; its records are not"
                             " signed, so it cannot be opened with one", path=path)
