#!/usr/bin/env python3
"""Durable appends by P processes to one file: over zero fill (as jobq's log) vs growing the file.

    python scripts/bench_zero_fill.py [--producers P] [--records N] [--rounds R]

Each of P processes (4, started together behind a barrier) appends N records of 330 bytes (a
no-op job's record) to one file, one at a time: under an exclusive ``flock`` it writes the record
where the records end (an offset shared in a mapped page), then, the lock released, fdatasyncs,
as jobq's log does (jobq.local.log). Two ways, run alternately R times each:

- ``zero``: a write that passes the end of the file also writes 64 KiB of zeros after its record
  (jobq's zero fill), so most appends overwrite zeros and the file's size rarely changes: their
  fdatasync flushes the data alone.
- ``grow``: each write extends the file (no fill), so each fdatasync also commits the new size:
  on ext4 a journal commit, which the fdatasyncs of concurrent writers can share.

Prints the aggregate records per second of each round and the medians. The question it answers
(issue 19): does the zero fill that makes one producer faster make several slower?
"""

from __future__ import annotations

import argparse
import fcntl
import mmap
import multiprocessing as mp
import os
import statistics
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts")]

from bench_scratch import scratch_dir  # noqa: E402

RECORD = b"\x01" * 330
FILL = 1 << 16
_END = struct.Struct("<QQ")  # where the records end, the file's size


def producer(path: str, shared: str, mode: str, records: int, barrier: mp.Barrier,
             times: mp.Queue) -> None:
    fd = os.open(path, os.O_RDWR)
    lock = os.open(shared, os.O_RDWR)
    view = mmap.mmap(lock, _END.size)
    zeros = bytes(FILL)
    barrier.wait()
    start = time.perf_counter()
    for _ in range(records):
        fcntl.flock(lock, fcntl.LOCK_EX)
        end, size = _END.unpack_from(view, 0)
        if mode == "zero" and end + len(RECORD) > size:
            os.pwrite(fd, RECORD + zeros, end)
            size = end + len(RECORD) + FILL
        else:
            os.pwrite(fd, RECORD, end)
            size = max(size, end + len(RECORD))
        _END.pack_into(view, 0, end + len(RECORD), size)
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.fdatasync(fd)
    times.put((start, time.perf_counter()))
    view.close()
    os.close(lock)
    os.close(fd)


def one_round(root: Path, mode: str, producers: int, records: int) -> float:
    """Aggregate records a second of one round."""
    path, shared = root / f"{mode}.log", root / f"{mode}.end"
    path.write_bytes(b"")
    shared.write_bytes(bytes(_END.size))
    fd = os.open(path, os.O_RDWR)
    os.fsync(fd)
    os.close(fd)
    ctx = mp.get_context("fork")
    barrier, times = ctx.Barrier(producers), ctx.Queue()
    procs = [ctx.Process(target=producer, args=(str(path), str(shared), mode, records, barrier,
                                                 times)) for _ in range(producers)]
    for p in procs:
        p.start()
    spans = [times.get() for _ in procs]
    for p in procs:
        p.join()
    path.unlink()
    shared.unlink()
    return producers * records / (max(e for _, e in spans) - min(s for s, _ in spans))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--records", type=int, default=500, help="per producer")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"zero": [], "grow": []}
    with scratch_dir("zero-fill-") as root:
        for n in range(args.rounds):
            for mode in ("zero", "grow") if n % 2 == 0 else ("grow", "zero"):
                rates[mode].append(one_round(root, mode, args.producers, args.records))
                print(f"round {n + 1} {mode}: {rates[mode][-1]:,.0f} records/s", flush=True)
    zero, grow = statistics.median(rates["zero"]), statistics.median(rates["grow"])
    print(f"{args.producers} producers, median: zero fill {zero:,.0f}/s, growing {grow:,.0f}/s,"
          f" zero/grow {zero / grow:.2f}x")


if __name__ == "__main__":
    main()
