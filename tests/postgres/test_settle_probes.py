"""The settle's write probes a finished job's ttl and dependents only in a queue that has some:
whether it has any is asked once a statement (jobq.postgres.jobs._ANY_RETENTION,
_ANY_DEPENDENCIES), in the statement's snapshot. Another queue's ttls and dependencies in the
same database do not make a queue pay for them, and a queue that has them still gets them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from jobq.postgres import PgEngine
from jobq.postgres import jobs as pg_jobs
from jobq.postgres.url import parse
from jobq.state import Status

from .pgq import frames, new_queue_url, open_url, succeed

_PROBES = ("jobq_retention_pkey", "jobq_dependencies_parent")


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The EXPLAIN ANALYZE of every settle write from now on (each also run for real after it,
    the explained one rolled back)."""
    seen: list[str] = []
    execute = psycopg.Connection.execute

    def explained(self: psycopg.Connection[Any], query: Any, params: Any = None,
                  **kwargs: Any) -> Any:
        if query == pg_jobs._WRITE:  # noqa: SLF001 - the statement under test
            with self.transaction(force_rollback=True):
                rows = execute(self, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + query,
                               params).fetchall()
            seen.append("\n".join(r[0] for r in rows))
        return execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", explained)
    yield seen


def _probe_lines(plan: str) -> list[str]:
    return [line for line in plan.splitlines() if any(p in line for p in _PROBES)]


def _drain(engine: PgEngine, ids: list[str]) -> None:
    _, claims = engine.settle([], "w1", len(ids))
    assert sorted(c.job_id for c in claims) == sorted(ids)
    engine.settle([(c.job_id, c.token, succeed()) for c in claims], "w1", 0)


def test_a_queue_without_ttls_or_dependents_probes_for_none(engine: PgEngine, pg_url: str,
                                                            plans: list[str]) -> None:
    other = open_url(new_queue_url(parse(pg_url).conninfo))
    try:  # another queue of the database has both
        other.append(frames(["p"]))
        other.append_dependent(frames(["c"])[0], "c", ["p"], "cancel")
        other.keep_for(["p"], 60.0, 60.0)
    finally:
        other.close()
    engine.append(frames(["a", "b", "c"]))
    plans.clear()
    _drain(engine, ["a", "b", "c"])
    (plan,) = plans
    probes = _probe_lines(plan)
    assert len(probes) == 2, plan
    assert all("never executed" in line for line in probes), plan
    assert engine.counts()["succeeded"] == 3


def test_a_queue_with_them_still_probes_and_keeps_them(engine: PgEngine, pg_url: str,
                                                       plans: list[str]) -> None:
    engine.append(frames(["p", "q"]))
    engine.append_dependent(frames(["c"])[0], "c", ["p"], "cancel")
    engine.keep_for(["p"], 60.0, 60.0)
    plans.clear()
    _drain(engine, ["p", "q"])
    probes = _probe_lines(plans[0])
    assert len(probes) == 2 and not any("never executed" in line for line in probes), plans[0]
    with psycopg.connect(parse(pg_url).conninfo) as conn:
        expiry = dict(conn.execute("SELECT job_id, expires_at - updated_at FROM jobq_done"
                                   " WHERE queue = %s", (parse(pg_url).queue,)).fetchall())
    assert expiry["p"] == pytest.approx(60.0) and expiry["q"] is None
    assert engine.get("c").status is Status.QUEUED  # released by its parent's success
