#!/usr/bin/env python3
"""Successive ``jobq worker --burst`` drains (2 workers x 1 child, scripts/pg_jobq.py's) of N
jobs in one database, with VACUUM or ANALYZE between them, to see what the tables' state and
their statistics do to a drain (a server without autovacuum, or autovacuum's ANALYZE of an
emptied jobq_jobs, followed by a burst).

    N=20000 python scripts/bench_pg_stats.py REPO SERVER_DSN TAG STEP...

STEP: d a drain in the run's database, f a drain in a fresh database of its own (made before the
first step and dropped after the last: a DROP DATABASE checkpoints, and the drain after it would
pay full-page writes for every page it touches first), v VACUUM, a ANALYZE, va VACUUM ANALYZE
(of jobq's hot tables), e N ``Queue.enqueue`` of another queue; and the rest of a round of
scripts/bench_pg.py, in the run's database: i the INSERT loop (N rows), c a COPY (5N), m
``Queue.enqueue_many`` of 5N jobs to another queue, k the bare claim loops (K=1 of N/10, K=10, 50
and 200 of N). ``N=20000 ... f i e c m k d f d`` compares a drain after a round's steps with
drains in fresh databases.
Printed per drain, as JSON: jobs/s from the start (and from the first completion), CPU
microseconds a job of the server (its backends, scripts/bench_pg_cpu.py's sampling) and of the
client, blocks a job per table (heap, index, toast: pg_statio deltas), the first lines of an
EXPLAIN (ANALYZE, BUFFERS) of a 250-job claim at the drain's start, and the tables' row counts
and sizes after it. PLAN=1 prints the whole claim plan.
"""
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

repo = Path(sys.argv[1]); sys.path[:0] = [str(repo), str(repo / "scripts")]
os.chdir(repo)
import pg_baselines, pg_jobq, pg_server, psycopg, resource  # noqa: E402
from bench_pg_cpu import BackendCpu  # noqa: E402
from peers.tasks import noop_with  # noqa: E402
from jobq import Queue  # noqa: E402
from jobq.postgres import settle as S  # noqa: E402

N = int(os.environ.get("N", "20000"))
root = Path(tempfile.mkdtemp(prefix="pgvacuum-"))

STATIO = ("SELECT relname, coalesce(heap_blks_hit,0)+coalesce(heap_blks_read,0),"
          " coalesce(idx_blks_hit,0)+coalesce(idx_blks_read,0),"
          " coalesce(toast_blks_hit,0)+coalesce(toast_blks_read,0)"
          " FROM pg_statio_user_tables WHERE relname LIKE 'jobq%'")
TABLES = ("SELECT relname, n_live_tup, n_dead_tup, last_vacuum IS NOT NULL,"
          " last_autovacuum IS NOT NULL, last_analyze IS NOT NULL, last_autoanalyze IS NOT NULL,"
          " pg_relation_size(relid)/8192, pg_indexes_size(relid)/8192"
          " FROM pg_stat_user_tables WHERE relname IN ('jobq_jobs','jobq_done','jobq_payloads')")


def statio(conn):
    return {r[0]: r[1:] for r in conn.execute(STATIO).fetchall()}


def explain_claim(conn, queue):
    sql = (S._CLAIM.replace("%(q)s", "$1::text").replace("%(n)s", "$2::int")
           .replace("%(owner)s", "$3::text").replace("%(lease)s", "$4::float8")
           .replace("%(started)s", "$5::int").replace("%(sj)b", "$6").replace("%(st)b", "$7"))
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.execute("SET LOCAL enable_sort = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        conn.execute(f"PREPARE pgv_claim AS {sql}")
        plan = [r[0] for r in conn.execute(
            f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE pgv_claim('{queue}', 250, 'x', 60,"
            " 1, '{}', '{}')").fetchall()]
        conn.execute("DEALLOCATE pgv_claim")
    return plan


def drain(dsn, conn, k):
    queue = f"pgv{k}_{time.monotonic_ns()}"
    url = pg_server.url_of(dsn, queue)
    with Queue(url) as q:
        for start in range(0, N, 5000):
            q.enqueue_many(noop_with, [(pg_jobq.PAD,)] * min(5000, N - start))
    plan = explain_claim(conn, queue)
    before = statio(conn)
    logs = [root / f"{queue}-{i}.log" for i in range(2)]
    procs = []
    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with BackendCpu(dbname) as server:
        started = time.time()
        for log in logs:
            with open(log, "w") as err:
                procs.append(pg_server.spawn(pg_jobq.worker_cmd(url, "--burst", "-c", "1"),
                                             root, stderr=err))
        pg_server.wait(procs, "drain")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_us = ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) / N * 1e6
    time.sleep(1.2)
    after = statio(conn)
    first, last, done, twice, handed, left = pg_jobq._outcome(dsn, queue)
    assert done == N and not left, (done, left)
    blocks = {t: [round((after[t][i] - before.get(t, (0, 0, 0))[i]) / N, 2) for i in range(3)]
              for t in after if any(after[t][i] - before.get(t, (0, 0, 0))[i] for i in range(3))}
    tables = conn.execute(TABLES).fetchall()
    top = [l for l in plan if "Buffers" in l or "Execution" in l or "Planning" in l][:3]
    print(json.dumps({"step": k, "rate": round(N / (last - started)),
                      "rate_from_first": round(N / max(last - first, 1e-6)),
                      "server_us": round(server.seconds / N * 1e6, 1),
                      "client_us": round(client_us, 1),
                      "blocks_per_job(heap,idx,toast)": blocks, "claim_plan_top": top,
                      "tables_after(live,dead,vac,avac,an,aan,pages,idxpages)": tables}),
          flush=True)
    return plan


def enqueue_one(dsn, n):
    """jobs/s of ``Queue.enqueue`` one by one into a queue of its own, left queued (unlike
    pg_jobq.enqueue_one, which starts from empty tables)."""
    with Queue(pg_server.url_of(dsn, f"one{time.monotonic_ns()}")) as q:
        start = time.perf_counter()
        for _ in range(n):
            q.enqueue(noop_with, pg_jobq.PAD)
        return n / (time.perf_counter() - start)


def round_step(dsn, step):
    """The rest of a bench_pg.py round (see the docstring); what it measured."""
    if step == "i":
        return round(pg_baselines.insert_loop(dsn, N))
    if step == "c":
        return round(pg_baselines.copy_rows(dsn, 5 * N))
    if step == "m":
        with Queue(pg_server.url_of(dsn, f"many{time.monotonic_ns()}")) as q:
            start = time.perf_counter()
            q.enqueue_many(noop_with, [(pg_jobq.PAD,)] * (5 * N))
            return round(5 * N / (time.perf_counter() - start))
    return [round(pg_baselines.claim_drain(dsn, k, N // 10 if k == 1 else N, root)[0])
            for k in (1, 10, 50, 200)]


def main():
    server, tag, steps = sys.argv[2], sys.argv[3], sys.argv[4:]
    pg_server.compile_sources()
    with contextlib.ExitStack() as stack:
        fresh = [stack.enter_context(pg_server.bench_database(server, f"{tag}f{k}"))
                 for k, step in enumerate(steps) if step == "f"]
        dsn = stack.enter_context(pg_server.bench_database(server, tag))
        conn = stack.enter_context(psycopg.connect(dsn, autocommit=True))
        for k, step in enumerate(steps):
            if step == "d":
                plan = drain(dsn, conn, k)
                if os.environ.get("PLAN"):
                    print("\n".join(plan), flush=True)
            elif step == "f":  # a drain in a fresh database of its own
                dsn2 = fresh.pop(0)
                with psycopg.connect(dsn2, autocommit=True) as conn2:
                    print("fresh:", end=" ")
                    drain(dsn2, conn2, k)
            elif step == "e":
                print("enqueue one", round(enqueue_one(dsn, N)), flush=True)
            elif step in ("i", "c", "m", "k"):
                t = time.perf_counter()
                print(step, round_step(dsn, step), f"{time.perf_counter() - t:.1f}s", flush=True)
            else:
                sql = {"v": "VACUUM", "a": "ANALYZE", "va": "VACUUM ANALYZE"}[step]
                t = time.perf_counter()
                for tbl in ("jobq_jobs", "jobq_done", "jobq_payloads", "jobq_snapshots",
                            "jobq_totals"):
                    conn.execute(f"{sql} {tbl}")
                print(sql, f"{time.perf_counter() - t:.2f}s", flush=True)


main()
