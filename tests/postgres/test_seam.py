"""PgEngine is an engine of the seam: every method and attribute of jobq.engine.Engine."""

from __future__ import annotations

import pytest

from jobq.errors import InvalidArgument
from jobq.postgres import PgEngine
from test_engine import test_an_engine_has_every_method_and_attribute_of_the_protocol as check

from .pgq import open_url


class _Holder:
    def __init__(self, engine: PgEngine) -> None:
        self.engine = engine


def test_pg_engine_has_every_method_and_attribute_of_the_protocol(engine: PgEngine) -> None:
    check(_Holder(engine))  # type: ignore[arg-type]


def test_what_the_server_does_itself_is_said_not_done(engine: PgEngine) -> None:
    for call, says in ((engine.compact, "autovacuum"), (lambda: engine.backup("/tmp/x"), "pg_dump"),
                       (lambda: engine.share("staff"), "GRANT"), (engine.rekey, "not signed")):
        with pytest.raises(InvalidArgument, match=says):
            call()
    assert engine.old_keys_pending() == 0 and engine.damage() == []
    upkeep = engine.upkeep(compact_threshold=1, logger=None)
    upkeep.step(children_busy=True)
    assert upkeep.busy is False
    assert engine.config.path == engine.location and engine.shared_group is None


def test_old_secret_keys_are_taken(pg_url: str) -> None:
    """Rotation is supported (tests/postgres/test_keys.py): the old keys given verify."""
    open_url(pg_url, b"o" * 32).close()
    engine = open_url(pg_url, b"k" * 32, old_secret_keys=(b"o" * 32,))
    try:
        assert engine.config.old_secret_keys == (b"o" * 32,) and engine.old_keys_pending() == 1
    finally:
        engine.close()
