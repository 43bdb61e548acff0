"""Opening a queue in PostgreSQL: its tables created or upgraded, its key admitted, then the
engine (:class:`jobq.postgres.engine.PgEngine`) on a connection of its own."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from ..pickling import PickleRules
from . import keys, schema
from .db import Db
from .engine import PgEngine
from .url import parse


def open_engine(url: str, *, secret_key: bytes | None, rules: PickleRules,
                max_record_size: int, clock: Callable[[], float] | None = None,
                catch_up: bool = True, old_secret_keys: tuple[bytes, ...] = ()) -> PgEngine:
    """Open (creating or upgrading its schema if needed) the queue ``url`` names.

    WrongSecretKey if its records are signed with another key, or not as ``secret_key`` says
    (``old_secret_keys`` only verify: see :mod:`jobq.postgres.keys`; OldKeyNeeded if an old key
    not given still signs records);
    IncompatibleFormat if its schema is newer than this jobq; StorageError naming the server
    if it cannot be reached. ``max_record_size`` is recorded when the queue is made, and the
    recorded one is used after. ``clock`` cannot be chosen: times are the server's.
    """
    if clock is not None:
        raise ConfigError("a queue in PostgreSQL takes its time from the server's clock:"
                          " clock= cannot be given")
    loc = parse(url)
    db = Db(loc)
    try:
        with db.errors("create or upgrade the jobq tables"):
            schema.migrate(db.conn, loc)
        with db.errors("open the queue"):
            meta = schema.open_queue(db.conn, loc, secret_key, max_record_size)
        if secret_key is not None:
            missing = keys.admit(db, meta, secret_key, old_secret_keys)
            if missing:
                from . import rekey
                rekey.require(db, rekey.Signers.of(rules, secret_key, old_secret_keys,
                                                   meta.max_record_size), missing)
    finally:
        db.close()
    return PgEngine(loc, secret_key=secret_key, rules=rules,
                    max_record_size=meta.max_record_size, created=meta.created,
                    old_secret_keys=old_secret_keys)
