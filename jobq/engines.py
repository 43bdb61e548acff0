"""Which engine a queue's location names, and opening it: a ``postgresql://`` URL is a queue
in PostgreSQL, anything else a directory (the default engine)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from . import config as config_mod
from .engine import Engine
from .errors import ConfigError, JobqError

# The directory engine (jobq.local) is imported where a directory is met, not here: a process
# on a PostgreSQL queue never loads it (some 70 ms of a PostgreSQL worker's start, issue 19).


def exists(location: str) -> bool:
    """Is there a queue at ``location``? A queue in PostgreSQL is made on first use."""
    if config_mod.is_server_url(location):
        return True
    from .local import LocalEngine
    return LocalEngine.exists_at(location)


FIXED = ("segment_size", "max_record_size")  # settings a queue keeps for life


def open_engine(cfg: config_mod.QueueConfig, clock: Callable[[], float],
                 given: Mapping[str, object], catch_up: bool) -> Engine:
    """The engine of ``cfg.path``: a PostgreSQL URL's, else a directory's (the default)."""
    if config_mod.is_server_url(cfg.path):
        from . import postgres
        local_only = sorted(set(given) - {"max_record_size", "default_max_attempts",
                                          "result_ttl", "failure_ttl"})
        if local_only:
            raise ConfigError(f"{', '.join(local_only)}: a setting of a queue directory; a"
                              " queue in PostgreSQL has none")
        if not cfg.fsync:
            raise ConfigError("fsync=False: a queue in PostgreSQL is as durable as its server's"
                              " synchronous_commit says")
        return postgres.open_engine(cfg.path, secret_key=cfg.secret_key, rules=cfg.rules,
                                    max_record_size=cfg.max_record_size,
                                    clock=None if clock is time.time else clock,
                                    catch_up=catch_up, old_secret_keys=cfg.old_secret_keys)
    from .local import LocalEngine
    try:
        return LocalEngine(cfg, clock, given=given, catch_up=catch_up)
    except PermissionError as exc:  # one the checks on open could not foresee (a race)
        if isinstance(exc, JobqError):
            raise
        raise denied(exc, cfg.path) from exc


def migrate(cfg: config_mod.QueueConfig, *, check: bool) -> tuple[str, int, int, str]:
    """Bring the storage at ``cfg.path`` up to this jobq's version (``check``: only read it):
    where it is, the version found (0: nothing made yet), this jobq's, and what is versioned.
    IncompatibleFormat if the storage is newer."""
    if config_mod.is_server_url(cfg.path):
        from . import postgres
        found, current = postgres.migrate(cfg.path, check=check)
        return (f"PostgreSQL at {postgres.parse(cfg.path).server}", found, current,
                "the jobq schema")
    from .local import LocalEngine, directory
    found = directory.format_found(cfg.path)
    if not check and found < directory.FORMAT:
        LocalEngine(cfg, catch_up=False).close()  # opening upgrades
    return cfg.path, found, max(found, directory.FORMAT), "the queue directory's format"


def denied(exc: PermissionError, location: str) -> JobqError:
    """A QueuePermissionError for ``exc``, met on a file of the queue at ``location``: which
    file, who owns it, and the way out."""
    from .local import permissions
    return permissions.denied(exc.filename or location, location)


def group_name(gid: int) -> str:
    """The name of the group a shared queue is shared with (its number if it has none)."""
    from .local import permissions
    return permissions.group_name(gid)
