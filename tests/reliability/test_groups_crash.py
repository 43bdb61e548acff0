"""A fan-in under SIGKILLs: workers killed (supervisor and children at once) again and again
while they run a group's members; the group's final step must be let go exactly once, only
after every member ended, and no member may count twice (a member run again after a kill is
one end).

Real ``jobq worker`` processes on both engines. The CI size is bounded (3,000 members);
``JOBQ_SOAK=1`` runs the issue's 100,000 (marked soak). ``JOBQ_TORTURE_SEED=N`` replays the
kill timings' decisions.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
from conftest import SOAK_ONLY, wait_until

from jobq import Queue, Status

CI_MEMBERS = 3_000
SOAK_MEMBERS = 100_000


def _fan_in_under_kills(location: str, workers, tmp_path: Path, seed: int, members: int,
                        kills: int) -> None:
    rng = random.Random(seed)
    print(f"seed {seed}, {members} members, {kills} kills")
    out = tmp_path / "then.jsonl"
    with Queue(location) as q:
        g = q.map("grouptasks:slow_square", range(members), max_attempts=1000,
                  then=("grouptasks:check_then", (location, str(out))))
        # A kill charges a crash to each job its worker had started, and the next worker claims
        # those first: a member can be hit by several kills in a row. Set aside after
        # --max-crashes of them, it would end dead, not succeeded; with more allowed than there
        # are kills, none can be, whatever the timing.
        options = ("-c", "2", "--max-crashes", str(kills + 1))
        killed = 0
        while killed < kills and not q.group(g.id).done:
            w = workers(location, *options)
            # From its start: a worker still importing when killed (a loaded machine) held
            # nothing, and the kill would test nothing.
            wait_until(lambda: w.events("worker.started"), timeout=60)  # noqa: B023
            time.sleep(rng.uniform(0.05, 0.5))
            w.kill_all()
            killed += 1
        assert workers(location, "--burst", *options).wait(timeout=3600) == 0
        st = q.group(g.id)
        assert st.done and st.counts == {"succeeded": members}, st
        assert st.ended == members  # each member counted once, runs after a kill included
        then = q.state(st.then_job)
        assert then.status is Status.SUCCEEDED
        runs = [json.loads(line) for line in out.read_text().splitlines()]
        # let go once: its runs are attempts 1..n of the one job (n > 1 only if a kill hit it)
        assert [r["attempt"] for r in runs] == list(range(1, then.attempts + 1))
        assert all(r["finished"] == r["jobs"] == members for r in runs)
        assert q.gather(g.id) == [i * i for i in range(members)]
        print(f"{killed} kills; members run again after a kill:"
              f" {sum(s.attempts - 1 for s in (q.state(f'{g.id}.{i}') for i in range(members)))}")


@pytest.mark.timeout(600)
def test_a_fan_in_lets_its_final_step_go_once_while_workers_are_killed(location, workers,
                                                                       tmp_path, seed):
    _fan_in_under_kills(location, workers, tmp_path, seed, CI_MEMBERS, kills=6)


@pytest.mark.soak
@pytest.mark.timeout(3600)
@SOAK_ONLY
def test_a_fan_in_of_100000_lets_its_final_step_go_once_soak(location, workers, tmp_path,
                                                             seed):
    _fan_in_under_kills(location, workers, tmp_path, seed, SOAK_MEMBERS, kills=40)
