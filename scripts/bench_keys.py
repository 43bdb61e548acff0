#!/usr/bin/env python3
"""What key rotation costs: old keys tried after the current one, against a key id in the frame.

Usage::

    python scripts/bench_keys.py [--quick] [--jobs N]

jobq verifies a signature with the current key first and tries the old keys only when it fails
(:mod:`jobq.local.keys`). The alternative was a short key id in the frame header, naming the key to use:
a record an old key signed would then cost one HMAC, as one the current key signed does. So the
cost a key id would save is the difference between those two, measured here on the same records:

1. ``decode``: verifying one job record (a few hundred bytes), signed by the current key, or by
   an old key with 1 and with 3 old keys configured (the last one matching). Best of five runs.
2. ``enqueue``: ``enqueue_many`` of N jobs (``fsync=False``, so the CPU is measured) with the
   current key alone, and with 3 old keys configured: signing uses the current key only.
3. ``claim+load``: claiming every job and reading its payload record, as a worker does, when the
   records were signed by the current key, and when an old key signed them (before ``jobq rekey``).
4. ``rekey``: re-signing N records and their snapshots, against a compaction of the same queue
   with nothing to do, and the scan an open without a pending old key makes once (``require``).

A ratio of 1.00 is no cost. Files go under ``.bench-tmp/`` and are removed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jobq import Queue, job_record, record  # noqa: E402
from jobq.maintenance import compact  # noqa: E402
from jobq.local.rekey import key_use  # noqa: E402
from jobq.maintenance import rekey  # noqa: E402

from bench_verify import best_of  # noqa: E402  (scripts/ is on the path of a script run from it)

TASK = "builtins:print"
CURRENT, OLD = b"current-key-0123456789abcdef", b"old-key-A-0123456789abcdef"
OTHERS = (b"old-key-X-0123456789abcdef", b"old-key-Y-0123456789abcdef")


def bench_decode(n: int) -> None:
    body = job_record.encode_fields("0" * 32, TASK, (1, "x" * 200), {}, 0, 3, None, 0.0, 0.0)
    by_current = record.encode(record.KIND_JOB, body, CURRENT)
    by_old = record.encode(record.KIND_JOB, body, OLD)

    def run(frame: bytes, old: tuple[bytes, ...]) -> Callable[[], None]:
        def loop() -> None:
            for _ in range(n):
                record.decode(frame, 0, key=CURRENT, max_body=1 << 20, old_keys=old)
        return loop

    base = best_of(5, run(by_current, ()))
    print(f"1. decode, per record: current key {base / n * 1e6:.2f} us")
    for label, frame, old in (("current key, 3 old keys given", by_current, (*OTHERS, OLD)),
                              ("old key, 1 old key given", by_old, (OLD,)),
                              ("old key, 3 old keys given (last matches)", by_old,
                               (*OTHERS, OLD))):
        t = best_of(5, run(frame, old))
        print(f"   {label:<42} {t / n * 1e6:.2f} us  ratio {t / base:.2f}")


def fill(path: Path, key: bytes, jobs: int, old: tuple[bytes, ...] = ()) -> Queue:
    q = Queue(path, secret_key=key, old_secret_keys=list(old), fsync=False)
    for start in range(0, jobs, 10_000):
        q.enqueue_many(TASK, [(i,) for i in range(start, min(jobs, start + 10_000))])
    return q


def claim_and_load(q: Queue) -> None:
    while claims := q.store.claim("bench", 200):
        for c in claims:
            q.log.read(c.payload_pos)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    jobs = args.jobs or (5_000 if args.quick else 50_000)
    bench_decode(20_000 if args.quick else 200_000)
    (REPO / ".bench-tmp").mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=REPO / ".bench-tmp", prefix="keys-"))
    try:
        times = {}
        for label, old in (("current key alone", ()), ("3 old keys given", (*OTHERS, OLD))):
            runs = []
            for i in range(3):
                start = time.perf_counter()
                fill(tmp / f"e-{len(old)}-{i}", CURRENT, jobs, old).close()
                runs.append(time.perf_counter() - start)
            times[label] = min(runs)
        base = times["current key alone"]
        print(f"2. enqueue_many, {jobs} jobs: current key alone {base / jobs * 1e6:.2f} us/job;"
              f" with 3 old keys given ratio {times['3 old keys given'] / base:.2f}")

        for key, name in ((CURRENT, "by-current"), (OLD, "by-old")):
            with fill(tmp / name, key, jobs) as q:
                q.counts()  # indexed, snapshot markers signed, by the key that enqueued
        claims: dict[str, list[float]] = {"by-current": [], "by-old": []}
        for i in range(3):  # alternately, on fresh copies: the machine's noise hits both
            for name in claims:
                shutil.copytree(tmp / name, tmp / f"{name}-{i}")
                with Queue(tmp / f"{name}-{i}", secret_key=CURRENT, old_secret_keys=[OLD]) as q:
                    start = time.perf_counter()
                    claim_and_load(q)
                    claims[name].append(time.perf_counter() - start)
        current, old_t = min(claims["by-current"]), min(claims["by-old"])
        print(f"3. claim+load, {jobs} jobs: signed by the current key {current / jobs * 1e6:.2f}"
              f" us/job; by an old key {old_t / jobs * 1e6:.2f} us/job, ratio"
              f" {old_t / current:.2f}")

        with Queue(tmp / "by-current", secret_key=CURRENT) as q:
            start = time.perf_counter()
            compact(q)
            nothing = time.perf_counter() - start
        with Queue(tmp / "by-old", secret_key=CURRENT, old_secret_keys=[OLD]) as q:
            start = time.perf_counter()
            report = rekey(q)
            resign = time.perf_counter() - start
            start = time.perf_counter()
            key_use(q.engine, unknown=True)  # what an open without the old key reads, once
            scan = time.perf_counter() - start
        print(f"4. rekey of {report.records_resigned} records and {report.snapshots_resigned}"
              f" snapshots: {resign:.2f} s ({resign / jobs * 1e6:.1f} us/job); a compaction"
              f" with nothing to do {nothing:.3f} s; the scan of an open without a pending old"
              f" key {scan:.2f} s ({scan / jobs * 1e6:.1f} us/job)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
