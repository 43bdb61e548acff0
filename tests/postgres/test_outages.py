"""Workers and producers through a lost PostgreSQL: a restart, terminated sessions, a partition.

Each test drains resumable jobs (outage_kit.Drain) with real worker processes while the private
cluster is restarted or crashed, a worker's sessions are terminated, or a worker is cut off by a
TCP proxy that stops forwarding. Then every acknowledged job must have succeeded exactly once
with its own attempt's result, no checkpoint may have gone backwards, and the workers must still
be running. Each test prints its figures (``pytest -s``): jobs run more than once (allowed: at
least once), results refused by their claim token, and for the restart how long the drain
stalled.
"""

from __future__ import annotations

import signal
import time

import psycopg
import pytest
from conftest import wait_until

import pg
from jobq import Queue
from jobq.errors import StorageError

from .outage_kit import Drain, MakeDrain, queue_url, summary, terminate, wall, with_app
from .pgq import frames
from .tcp_proxy import TcpProxy


@pytest.mark.parametrize("how", ["restart", "crash"])
def test_workers_drain_on_through_a_server_restart(
        make_drain: MakeDrain, pg_cluster: pg.Cluster, how: str) -> None:
    """A restart (or a crash and start) mid-drain: the workers reconnect and finish."""
    drain = make_drain(40)
    drain.enqueue()
    workers = [drain.worker(), drain.worker()]
    wait_until(lambda: drain.succeeded() >= 8)
    if how == "restart":
        pg_cluster.restart()
    else:
        pg_cluster.stop("immediate")
        pg_cluster.start()
    back = time.time()
    drain.wait_done()
    figures = drain.check()
    assert all(w.proc.poll() is None for w in workers)
    assert all(w.events("storage.unreachable") and w.events("storage.reconnected")
               for w in workers)
    resumed = min(wall(e) for e in drain.events("job.succeeded") if wall(e) > back) - back
    summary(f"server {how}", figures, drain_resumed_after=f"{resumed:.2f}s")


@pytest.mark.parametrize("only_lock", [False, True], ids=["all-sessions", "lock-session"])
def test_a_worker_whose_sessions_are_terminated_carries_on(
        make_drain: MakeDrain, pg_cluster: pg.Cluster, only_lock: bool) -> None:
    """Its sessions terminated, a worker reconnects and takes its liveness lock again; jobs
    reclaimed meanwhile by the other worker refuse its late results."""
    drain = make_drain(36)
    ids = sorted(drain.specs)
    drain.enqueue(ids[:30])
    hit = drain.worker(with_app(drain.url, "hit"))
    other = drain.worker(with_app(drain.url, "other"))
    wait_until(lambda: any(o.startswith(_worker_id(hit)) for _, o in drain.running_jobs())
               if hit.events("worker.started") else None)
    assert terminate(pg_cluster, "hit", only_lock) >= 1
    wait_until(lambda: hit.events("worker.liveness_retaken"))
    drain.wait_done()
    other.proc.send_signal(signal.SIGTERM)
    assert other.wait(30) == 0
    drain.enqueue(ids[30:])  # only the worker hit is left to run them
    drain.wait_done()
    figures = drain.check()
    assert hit.proc.poll() is None
    late = {e["job_id"] for e in hit.events("job.succeeded")}
    assert set(ids[30:]) <= late
    summary(f"terminated {'lock session' if only_lock else 'sessions'}", figures)


def test_a_partitioned_worker_is_taken_over_and_its_late_result_refused(
        make_drain: MakeDrain, pg_cluster: pg.Cluster) -> None:
    """Cut off by a proxy that stops forwarding, a worker looks alive (its lock session is
    held) but stops renewing its lease: another worker reclaims its job once the lease runs
    out. When the partition heals, its result is refused and it carries on."""
    drain = make_drain(3, steps=(10, 10), step_ms=(60, 60))
    ids = sorted(drain.specs)
    proxy = TcpProxy(("127.0.0.1", pg_cluster.port))
    try:
        cut = drain.worker(drain.url.replace(f":{pg_cluster.port}/", f":{proxy.port}/"),
                           concurrency=1, lease=1.5)
        drain.enqueue(ids[:2])
        job = wait_until(lambda: _saved_by(drain, _worker_id(cut)))
        proxy.partition()
        taker = drain.worker(lease=1.5)
        wait_until(lambda: drain.queue.state(job).status.value == "succeeded", timeout=60)
        proxy.heal()
        refused = wait_until(lambda: [e for e in cut.events("job.stale_result")
                                      if e["job_id"] == job])
        drain.wait_done()
        taker.proc.send_signal(signal.SIGTERM)
        assert taker.wait(30) == 0
        drain.enqueue(ids[2:])
        drain.wait_done()
        figures = drain.check()
    finally:
        proxy.close()
    assert cut.proc.poll() is None
    assert any("lease expired" in e.get("cause", "") for e in taker.events("job.failed")
               + taker.events("job.queued"))
    assert set(ids[2:]) <= {e["job_id"] for e in cut.events("job.succeeded")}
    summary("partition", figures, refused_late=len(refused))


def test_a_producer_cut_off_gets_an_error_naming_the_server_and_stores_nothing_half(
        pg_cluster: pg.Cluster) -> None:
    """Server down: enqueue and enqueue_many raise StorageError naming the server (transient).
    A session terminated between calls fails the next call, a batch (COPY) of which nothing is
    stored; retrying it with the same ids stores each job once."""
    url = queue_url(pg_cluster.port, app="producer")
    server = f"127.0.0.1:{pg_cluster.port}/postgres"
    with Queue(url) as q:
        pg_cluster.stop("immediate")
        try:
            for call in (lambda: q.enqueue_call("jobtasks:add", args=(1, 2), job_id="one"),
                         lambda: q.enqueue_many("jobtasks:add", [(i, i) for i in range(50)])):
                with pytest.raises(StorageError, match=server) as info:
                    call()
                assert info.value.transient
        finally:
            pg_cluster.start()
        assert sum(q.counts().values()) == 0  # the first call after the start reconnects
        q.engine.append(frames([f"m{i}" for i in range(50)]))
        assert terminate(pg_cluster, "producer") == 1
        with pytest.raises(StorageError, match=server):
            q.engine.append(frames([f"m{i}" for i in range(100)]))
        assert q.counts()["queued"] == 50
        q.engine.append(frames([f"m{i}" for i in range(100)]))  # the retry
        q.engine.append(frames(["m3", "m99"]))  # and one whose outcome was not learnt
        assert q.counts()["queued"] == 100


def _worker_id(w: object) -> str:
    started = w.events("worker.started")  # type: ignore[attr-defined]
    return started[0]["worker"] if started else "?"


def _saved_by(drain: Drain, worker: str) -> str | None:
    """A job that ``worker`` runs and that saved a checkpoint."""
    for job_id, owner in drain.running_jobs():
        if owner.startswith(worker + "/") and (drain.trails / job_id).exists() \
                and " save " in f" {(drain.trails / job_id).read_text()}".replace("\n", " "):
            return job_id
    return None


def test_a_permanent_error_still_stops_the_worker(make_drain: MakeDrain,
                                                  pg_cluster: pg.Cluster) -> None:
    """Permission denied is no outage: the worker stops, saying so, instead of retrying."""
    drain = make_drain(30)
    drain.enqueue()
    role = f"limited_{drain.url.rsplit('=', 1)[1]}"
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
        conn.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        try:
            w = drain.worker(drain.url.replace("postgres@", f"{role}@"))
            wait_until(lambda: w.events("job.succeeded"))
            conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
            assert w.wait(30) != 0
        finally:
            conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
            conn.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
    assert "permission denied" in w.log_path.read_text()
    assert not w.events("storage.unreachable")
