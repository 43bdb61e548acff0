"""Several processes draining one queue with settle: every job run once, none lost."""

from __future__ import annotations

from conftest import Children
from jobq.postgres import PgEngine

from .pgq import frames

DRAINER = """
import sys
from jobq import transitions
from postgres.pgq import open_url
engine = open_url(sys.argv[1])
owner = sys.argv[2]
done = lambda s, now, m: transitions.succeeded(s, owner, now)
finished, seen = [], []
while True:
    states, claims = engine.settle(finished, owner, 20, prefetch=5)
    assert all(s is not None for s in states)
    if not claims:
        break
    seen += [c.job_id for c in claims]
    finished = [(c.job_id, c.token, done) for c in claims]
print(" ".join(seen))
"""


def test_processes_drain_each_job_exactly_once(engine: PgEngine, pg_url: str,
                                               children: Children) -> None:
    ids = [f"j{i:04d}" for i in range(3000)]
    engine.append(frames(ids))
    procs = [children.start(DRAINER, pg_url, f"w{n}") for n in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    claimed = [job for out, _ in outs for job in out.split()]
    assert sorted(claimed) == ids  # none lost, none claimed twice
    assert all(len(out.split()) > 0 for out, _ in outs)  # all of them took part
    counts = engine.counts()
    assert counts["succeeded"] == len(ids) and counts["queued"] == counts["running"] == 0
