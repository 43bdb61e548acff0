"""Enqueue and drain cost of jobs with a result_ttl against jobs without, in the same run
(directory engine; microseconds per job, medians of 3 runs of 1,000 jobs):

    cd tests && PYTHONPATH=. python ../scripts/bench_retention.py
"""
from __future__ import annotations

import statistics
import tempfile
import time

from jobq import Queue
from jobq.testing import run_burst

def one(ttl, n=1000):
    with Queue(tempfile.mkdtemp() + "/q") as q:
        t0 = time.perf_counter()
        for i in range(n):
            if ttl is None:
                q.enqueue_call("jobtasks:add", (i, 1))
            else:
                q.enqueue_call("jobtasks:add", (i, 1), result_ttl=ttl)
        t1 = time.perf_counter()
        run_burst(q)
        t2 = time.perf_counter()
        many_t0 = time.perf_counter()
        if ttl is None:
            q.enqueue_many("jobtasks:add", [(i, 1) for i in range(n)])
        else:
            q.enqueue_many("jobtasks:add", [(i, 1) for i in range(n)], result_ttl=ttl)
        many = time.perf_counter() - many_t0
    return (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6, many / n * 1e6

rows = {None: [], 3600: []}
for _ in range(3):
    for ttl in rows:
        rows[ttl].append(one(ttl))
for ttl, r in rows.items():
    print(ttl, [round(statistics.median(x), 1) for x in zip(*r)])
base = [statistics.median(x) for x in zip(*rows[None])]
ttl_ = [statistics.median(x) for x in zip(*rows[3600])]
print("ratio ttl/none: enqueue_call %.2f, burst drain %.2f, enqueue_many %.2f" % tuple(b / a for a, b in zip(base, ttl_)))
