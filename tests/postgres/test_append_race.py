"""Two producers appending the same job ids while a worker finishes them: each id is stored
once and runs once (an append used to insert the job row of an id that a finish was moving to
jobq_done, and the job ran twice)."""

from __future__ import annotations

import json

import psycopg
from conftest import Children, wait_until

from .pgq import frame, open_url

JOBS = 1500

PRODUCER = """
import sys
from postgres.pgq import frame, open_url
eng = open_url(sys.argv[1])
for i in range(int(sys.argv[2])):
    eng.append([frame(f"r{i}")])
eng.close()
"""

FINISHER = """
import json, sys, time
from postgres.pgq import open_url, succeed
eng = open_url(sys.argv[1])
jobs = int(sys.argv[2])
claimed, finished, done = [], [], set()
deadline = time.monotonic() + 60
while len(done) < jobs and time.monotonic() < deadline:
    _, claims = eng.settle(finished, "w", 20)
    finished = [(c.job_id, c.token, succeed()) for c in claims]
    claimed += [c.job_id for c in claims]
    done.update(c.job_id for c in claims)
# Any late duplicate shows up within a moment of the producers' end.
for _ in range(20):
    _, claims = eng.settle(finished, "w", 20)
    finished = [(c.job_id, c.token, succeed()) for c in claims]
    claimed += [c.job_id for c in claims]
    time.sleep(0.02)
eng.settle(finished, "w", 0)
print(json.dumps(claimed))
"""


def test_two_producers_and_a_finisher_store_and_run_each_id_once(pg_url: str,
                                                                  children: Children) -> None:
    """Real processes on their own connections, racing appends of each id against its finish."""
    open_url(pg_url).close()  # the tables exist before the race
    finisher = children.start(FINISHER, pg_url, str(JOBS))
    producers = [children.start(PRODUCER, pg_url, str(JOBS)) for _ in range(2)]
    for p in producers:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    out, err = finisher.communicate(timeout=120)
    assert finisher.returncode == 0, err
    claimed = json.loads(out)
    twice = sorted({i for i in claimed if claimed.count(i) > 1})
    assert twice == [] and len(claimed) == JOBS
    eng = open_url(pg_url)
    try:
        assert eng.counts()["succeeded"] == JOBS and eng.counts()["queued"] == 0
    finally:
        eng.close()


def test_an_append_waiting_on_a_finishing_job_stores_nothing(pg_url: str, pg_engine_dsn: str,
                                                             children: Children) -> None:
    """The finish is held open in a transaction of another connection while the append waits
    on the job's row; once the finish commits, the append must not bring the id back."""
    eng = open_url(pg_url)
    try:
        eng.append([frame("x")])
        queue = pg_url.rsplit("queue=", 1)[1]
        with psycopg.connect(pg_engine_dsn) as conn:
            conn.execute(
                "WITH gone AS (DELETE FROM jobq_jobs WHERE queue = %s AND job_id = 'x'"
                " RETURNING *) INSERT INTO jobq_done (queue, job_id, seq, status, priority,"
                " run_at, max_attempts, task, enqueued_at, updated_at)"
                " SELECT queue, job_id, seq, 'succeeded', priority, run_at, max_attempts, task,"
                " enqueued_at, updated_at FROM gone", (queue,))
            producer = children.start(PRODUCER.replace('f"r{i}"', '"x"'), pg_url, "1")
            wait_until(lambda: producer.poll() is not None or conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()").fetchone()[0])  # type: ignore[index]
            conn.commit()
        _, err = producer.communicate(timeout=60)
        assert producer.returncode == 0, err
        assert eng.counts()["succeeded"] == 1 and eng.counts()["queued"] == 0
        assert eng.status("x").value == "succeeded"
    finally:
        eng.close()
