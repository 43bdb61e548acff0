#!/usr/bin/env python3
"""CPU and WAL per job of ``Queue.enqueue_many`` on PostgreSQL, against the raw COPY.

    python scripts/bench_pg_enqueue.py [--jobs N] [--runs R] [--dsn DSN] [--against CHECKOUT]...

Each run makes a database of its own per checkout (its schema never meets another's) and in it
measures the raw COPY of scripts/pg_baselines.py (N rows, one transaction), then
``Queue.enqueue_many`` of N no-op jobs with about 300 bytes of payload (scripts/pg_jobq.py's),
each on a connection opened before its clock starts. With ``--against``, every run measures each
checkout in turn (interleaved), so the machine's load falls on all alike.

Printed per checkout, medians of the runs (and the lowest CPU): jobs/s and the ratio to the raw
COPY of the same run, CPU microseconds per job of the client (this process's CPU time) and of
the server (its backend's, from /proc/PID/schedstat: the server must run on this machine), and
WAL bytes per job: the records of the measured transaction, from ``pg_waldump --xid`` when it
can read the server's pg_wal directory (run as root or the server's user), else the whole
server's WAL position moved during the call (other sessions' writes included: read it on a quiet
server).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
FIGURES = ("rate", "client_us", "server_us", "wal_bytes")


def _backend_seconds(pid: int) -> float:
    """The backend's CPU time: /proc's schedstat (nanoseconds) where the kernel keeps it, else
    its stat (clock ticks: 10 ms, half a tick a job's figure at N=20,000)."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _waldump(conn: Any) -> tuple[Path, Path] | None:
    """pg_waldump and the server's pg_wal directory, if this process can run and read them."""
    try:
        bindir = conn.execute("SELECT setting FROM pg_config() WHERE name = 'BINDIR'").fetchone()
        data = conn.execute("SHOW data_directory").fetchone()
    except Exception:  # not a superuser (psycopg's errors): the whole WAL's position then
        conn.rollback()
        return None
    waldump, wal_dir = Path(bindir[0]) / "pg_waldump", Path(data[0]) / "pg_wal"
    return (waldump, wal_dir) if waldump.exists() and os.access(wal_dir, os.R_OK) else None


def _wal_bytes(conn: Any, start: str, end: str, xid: str) -> int:
    """Bytes of WAL the transaction ``xid`` wrote between two positions (see the doc)."""
    found = _waldump(conn)
    if found is not None:
        waldump, wal_dir = found
        out = subprocess.run([str(waldump), "-p", str(wal_dir), "-s", start, "-e", end, "-x", xid,
                              "--stats"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Total"):  # "Total N record [%] FPI [%] combined [%]"
                return int(re.sub(r"\[[^\]]*\]", "", line).split()[-1])
    diff = conn.execute("SELECT pg_wal_lsn_diff(%s, %s)::bigint", (end, start)).fetchone()
    return int(diff[0])


def _measured(conn: Any, n: int, call: Callable[[], None], xid_of: str) -> dict[str, float]:
    """Figures of ``call`` (which stores n jobs and commits) on the session ``conn``;
    ``xid_of``: a query of the xid that stored them."""
    pid, start = conn.execute("SELECT pg_backend_pid(), pg_current_wal_insert_lsn()::text"
                              ).fetchone()
    conn.commit()
    server, cpu, wall = _backend_seconds(pid), time.process_time(), time.perf_counter()
    call()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    server = _backend_seconds(pid) - server
    end = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]
    xid = conn.execute(xid_of).fetchone()[0]
    wal = _wal_bytes(conn, start, end, xid)
    conn.commit()
    return {"rate": n / wall, "client_us": cpu / n * 1e6, "server_us": server / n * 1e6,
            "wal_bytes": wal / n}


def measure(dsn: str, n: int) -> dict[str, dict[str, float]]:
    """The raw COPY and enqueue_many of n jobs, in a database of their own."""
    import pg_baselines
    import pg_jobq
    import pg_server
    from peers.tasks import noop_with

    from jobq import Queue

    psycopg = pg_server.psycopg_module()
    with pg_server.bench_database(dsn, "_enqueue") as db:
        pg_baselines.reset(db)
        with psycopg.connect(db) as conn:
            def copy() -> None:
                with conn.cursor() as cur, cur.copy(
                        f"COPY {pg_baselines.TABLE} (payload) FROM STDIN") as out:
                    for _ in range(n):
                        out.write_row((pg_baselines.PAYLOAD,))
                conn.commit()
            raw = _measured(conn, n, copy, f"SELECT xmin::text FROM {pg_baselines.TABLE} LIMIT 1")
        args = [(pg_jobq.PAD,)] * n
        with Queue(pg_server.url_of(db, "many")) as q:
            conn = q.engine._db.conn  # noqa: SLF001 - the benchmark reads the session's backend
            jobq = _measured(conn, n, lambda: q.enqueue_many(noop_with, args),
                             "SELECT xmin::text FROM jobq_payloads WHERE queue = 'many' LIMIT 1")
    return {"raw": raw, "jobq": jobq}


def _one(repo: Path, dsn: str, n: int) -> dict[str, dict[str, float]]:
    """``measure`` in a process importing ``repo``'s jobq and scripts (this file is loaded by
    its path there: it imports nothing of this checkout's scripts at its top)."""
    from bench_pg_cpu import run_in

    return run_in(repo, __file__, f"m.measure({dsn!r}, {n})")  # type: ignore[no-any-return]


def _line(got: dict[str, float]) -> str:
    return (f"{got['rate']:,.0f}/s, CPU us/job client {got['client_us']:.2f} server"
            f" {got['server_us']:.2f}, WAL {got['wal_bytes']:,.0f} B/job")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=os.environ.get(
        "JOBQ_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--against", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    repos = [REPO, *(p.resolve() for p in args.against)]
    figures: dict[str, list[dict[str, float]]] = {}
    for run in range(args.runs):
        for i, repo in enumerate(repos):
            got = _one(repo, args.dsn, args.jobs)
            ratio = got["jobq"]["rate"] / got["raw"]["rate"]
            figures.setdefault(f"{i}:{repo}", []).append({**got["jobq"], "ratio": ratio})
            figures.setdefault(f"{i}:raw COPY", []).append(got["raw"])
            print(f"run {run + 1} {repo}: enqueue_many {_line(got['jobq'])} ({ratio:.2f}x);"
                  f" raw COPY {_line(got['raw'])}; load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"medians of {args.runs} runs, N={args.jobs:,} (lowest CPU in brackets):")
    for key, rows in figures.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        low = {k: min(r[k] for r in rows) for k in ("client_us", "server_us")}
        extra = f" = {med['ratio']:.2f}x the raw COPY" if "ratio" in med else ""
        print(f"  {key}: {_line(med)}{extra} [client {low['client_us']:.2f},"
              f" server {low['server_us']:.2f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
