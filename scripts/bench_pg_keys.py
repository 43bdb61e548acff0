#!/usr/bin/env python3
"""What key rotation costs on PostgreSQL: records an old key signed, and ``jobq rekey``.

Usage::

    python scripts/bench_pg_keys.py [--quick] [--jobs N] [--dsn DSN]

On the server at ``--dsn`` (default ``JOBQ_BENCH_PG_DSN``, else
postgresql://postgres@127.0.0.1:5432/postgres), in a database made for the run and dropped at
its end:

1. ``decode``: verifying one job record with the current key, or with old keys given (the same
   figures as scripts/bench_keys.py: the frames are the directory engine's).
2. ``claim+load``: a worker's claims of N jobs (settle, 200 at a time) and each job's verified
   payload, when the current key signed the records and when an old key did (before rekey),
   alternately on fresh queues, best of three.
3. ``rekey``: re-signing N records an old key signed, and the snapshots of N/5 of them (half
   waiting to be retried in ``jobq_snapshots``, half finished in ``jobq_done``), against a rekey
   of the same queue with nothing left to re-sign (the reads alone) and against enqueueing the N
   jobs; then the scan an open without a pending old key makes once (``require``).

A ratio of 1.00 is no cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

from jobq import Queue, transitions  # noqa: E402
from jobq.maintenance import rekey  # noqa: E402

from bench_keys import CURRENT, OLD, TASK, bench_decode  # noqa: E402
from bench_pg import DEFAULT_DSN, bench_database  # noqa: E402

BATCH = 200


def url_of(dsn: str) -> str:
    import psycopg
    d = psycopg.conninfo.conninfo_to_dict(dsn)
    return (f"postgresql://{d.get('user', 'postgres')}@{d.get('host', '127.0.0.1')}"
            f":{d.get('port', 5432)}/{d['dbname']}")


def fill(url: str, key: bytes, jobs: int) -> tuple[str, float]:
    """A new queue of ``jobs`` jobs signed with ``key``; (its URL, seconds enqueueing took)."""
    queue = f"{url}?queue=k{uuid.uuid4().hex[:10]}"
    with Queue(queue, secret_key=key) as q:
        start = time.perf_counter()
        for first in range(0, jobs, 10_000):
            q.enqueue_many(TASK, [(i, "x" * 200) for i in range(first, min(jobs, first + 10_000))])
        return queue, time.perf_counter() - start


def claim_and_load(q: Queue) -> None:
    while claims := q.engine.settle([], "bench", BATCH)[1]:
        for c in claims:
            q.engine.payload_body(c.job_id, c.ref)


def snapshots_by(queue: str, key: bytes, n: int) -> None:
    """Give ``n`` jobs a snapshot signed with ``key``: half fail once, half end (done)."""
    def failed(s, now, m):  # type: ignore[no-untyped-def]
        return transitions.failed(s, "x", now, max_attempts=m, retry_delay=3600)

    def done(s, now, m):  # type: ignore[no-untyped-def]
        return transitions.succeeded(s, None, now)

    with Queue(queue, secret_key=key) as q:
        left = n
        while left > 0:
            _, claims = q.engine.settle([], "bench", min(1_000, left))
            q.engine.settle([(c.job_id, c.token, failed if i % 2 else done)
                             for i, c in enumerate(claims)], "bench", 0)
            left -= len(claims)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--dsn", default=os.environ.get("JOBQ_BENCH_PG_DSN", DEFAULT_DSN))
    args = parser.parse_args(argv)
    jobs = args.jobs or (5_000 if args.quick else 50_000)
    bench_decode(20_000 if args.quick else 200_000)
    with bench_database(args.dsn) as dsn:
        url = url_of(dsn)
        claims: dict[bytes, list[float]] = {CURRENT: [], OLD: []}
        for _ in range(3):  # alternately: the machine's noise hits both
            for key in claims:
                queue, _ = fill(url, key, jobs)
                with Queue(queue, secret_key=CURRENT, old_secret_keys=[OLD]) as q:
                    start = time.perf_counter()
                    claim_and_load(q)
                    claims[key].append(time.perf_counter() - start)
        current, old = min(claims[CURRENT]), min(claims[OLD])
        print(f"2. claim+load, {jobs} jobs: signed by the current key {current / jobs * 1e6:.1f}"
              f" us/job; by an old key {old / jobs * 1e6:.1f} us/job, ratio {old / current:.2f}")

        queue, enqueued = fill(url, OLD, jobs)
        snapshots_by(queue, OLD, jobs // 5)
        with Queue(queue, secret_key=CURRENT, old_secret_keys=[OLD]) as q:
            start = time.perf_counter()
            report = rekey(q)
            resign = time.perf_counter() - start
            start = time.perf_counter()
            again = rekey(q)
            reads = time.perf_counter() - start
        assert report.can_drop_old_keys and again.records_resigned == 0, (report, again)
        start = time.perf_counter()
        Queue(queue, secret_key=CURRENT).close()  # retires OLD after one scan (require)
        scan = time.perf_counter() - start
        print(f"3. rekey of {report.records_resigned} records and {report.snapshots_resigned}"
              f" snapshots: {resign:.2f} s ({resign / jobs * 1e6:.1f} us/job); ratio"
              f" {resign / reads:.2f} to a rekey with nothing left to re-sign ({reads:.2f} s),"
              f" {resign / enqueued:.2f} to enqueueing the {jobs} jobs ({enqueued:.2f} s); the"
              f" open without the old key that retires it {scan:.2f} s")


if __name__ == "__main__":
    main()
