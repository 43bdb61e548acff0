"""The settle's write probes a finished job's ttl and dependents only in a queue that has some:
whether it has any is asked once a statement (jobq.postgres.jobs._ANY_RETENTION,
_ANY_DEPENDENCIES), in the statement's snapshot. Another queue's ttls and dependencies in the
same database do not make a queue pay for them, and a queue that has them still gets them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

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
    """The plan's per-job probes: scans of those indexes by a finished job's id (the gates
    seek the same tables by queue alone)."""
    lines = plan.splitlines()
    return [line for line, cond in zip(lines, lines[1:]) if any(p in line for p in _PROBES)
            and ("g.job_id" in cond or "jobq_done.job_id" in cond)]


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


@pytest.mark.parametrize("gate", ["_ANY_RETENTION", "_ANY_DEPENDENCIES"])
def test_the_gates_seek_an_index_even_planned_generically(pg_url: str, gate: str) -> None:
    """A prepared statement's generic plan does not know the queue: the gate must still be one
    index seek, not a scan of other queues' rows (an EXISTS was planned as a Seq Scan)."""
    other = f"other_{gate}"
    with psycopg.connect(parse(pg_url).conninfo, autocommit=True) as conn:
        open_url(pg_url).close()  # the tables
        conn.execute("INSERT INTO jobq_retention SELECT %s, 'j' || i, 1, 1"
                     " FROM generate_series(1, 3000) i", (other,))
        conn.execute("INSERT INTO jobq_dependencies SELECT %s, 'c' || i, 0, 'p' || i, 'run'"
                     " FROM generate_series(1, 3000) i", (other,))
        try:
            conn.execute("ANALYZE jobq_retention")
            conn.execute("ANALYZE jobq_dependencies")
            conn.execute("SET plan_cache_mode = force_generic_plan")
            text = getattr(pg_jobs, gate).replace("%(q)s", "$1")
            conn.execute(f"PREPARE gate(text) AS SELECT {text}")
            for queue, expected in ((parse(pg_url).queue, False), (other, True)):
                run = sql.SQL("EXECUTE gate({})").format(sql.Literal(queue))
                assert conn.execute(run).fetchone()[0] is expected  # type: ignore[index]
                plan = "\n".join(r[0] for r in conn.execute(
                    sql.SQL("EXPLAIN (COSTS OFF) {}").format(run)))
                assert "Seq Scan" not in plan and "Index Only Scan" in plan, plan
        finally:
            conn.execute("DELETE FROM jobq_retention WHERE queue = %s", (other,))
            conn.execute("DELETE FROM jobq_dependencies WHERE queue = %s", (other,))
