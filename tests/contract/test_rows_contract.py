"""The reads a monitor pages with, on every engine: pages by key with filters, counts capped,
and the age of the oldest due job (the ``location`` fixture: one run per engine)."""

from __future__ import annotations

import time

import pytest

from jobq import Queue, Status, listing
from jobq.errors import InvalidArgument, JobNotFound
from jobq.testing import run_burst

ADD, BOOM = "jobtasks:add", "jobtasks:boom"


def _pages(q: Queue, size: int, **filters: object) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = [r["job_id"] for r in q.engine.rows(limit=size, after=after, **filters)]
        if not page:
            return pages
        pages.append(page)
        after = page[-1]


def test_pages_by_key_cover_every_job_once_in_arrival_order(q: Queue):
    ids = [q.enqueue_call(ADD, args=(i, i), job_id=f"job-{i:02d}") for i in range(11)]
    newest = _pages(q, 4)
    assert [len(p) for p in newest] == [4, 4, 3]
    assert sum(newest, []) == ids[::-1]
    assert sum(_pages(q, 5, newest_first=False), []) == ids


def test_a_page_started_by_key_ignores_jobs_that_came_after_it(q: Queue):
    first = [q.enqueue(ADD, i, i) for i in range(3)]
    page = [r["job_id"] for r in q.engine.rows(limit=2)]
    for i in range(3):
        q.enqueue(ADD, i, i)  # new jobs: an offset would shift, the key does not
    rest = [r["job_id"] for r in q.engine.rows(limit=10, after=page[-1])]
    assert page + rest == first[::-1]


def test_filters_by_status_task_and_id_substring_combine(q: Queue):
    adds = [q.enqueue_call(ADD, args=(1, 1), job_id=f"a_{i}%x") for i in range(3)]
    booms = [q.enqueue_call(BOOM, job_id=f"b_{i}") for i in range(2)]
    assert run_burst(q, max_jobs=1) == 1  # the oldest, adds[0], succeeds
    rows = q.engine.rows(task=BOOM)
    assert [r["job_id"] for r in rows] == booms[::-1] and {r["task"] for r in rows} == {BOOM}
    assert [r["job_id"] for r in q.engine.rows(status=Status.SUCCEEDED)] == [adds[0]]
    assert [r["job_id"] for r in q.engine.rows(status=Status.QUEUED, task=ADD)] == adds[:0:-1]
    # A substring, not a pattern: _ and % are themselves.
    assert [r["job_id"] for r in q.engine.rows(id_contains="_1%")] == [adds[1]]
    assert q.engine.rows(id_contains="%") and not q.engine.rows(id_contains="a%")
    assert q.engine.rows(id_contains="nothing-like-it") == []
    assert len(q.engine.rows(id_contains="")) == 5  # an empty filter is no filter
    assert [r["job_id"] for r in q.engine.rows(task=ADD, id_contains="2")] == [adds[2]]
    row = q.engine.rows(limit=1, newest_first=False)[0]
    assert set(row) >= {"job_id", "task", "status", "priority", "attempts", "progress", "run_at",
                        "enqueued_at", "updated_at", "owner"}


def test_filtered_pages_by_key(q: Queue):
    ids = [q.enqueue(ADD, i, i) if i % 2 else q.enqueue(BOOM, str(i)) for i in range(9)]
    pages = _pages(q, 2, task=ADD, status=Status.QUEUED)
    assert sum(pages, []) == [jid for i, jid in enumerate(ids) if i % 2][::-1]


def test_bad_pages_are_refused(q: Queue):
    q.enqueue(ADD, 1, 1)
    for limit in (0, -1, listing.MAX_PAGE + 1, 2.5, True):
        with pytest.raises(InvalidArgument, match="a page holds"):
            q.engine.rows(limit=limit)
    with pytest.raises(JobNotFound, match="to page from"):
        q.engine.rows(after="no-such-job")
    with pytest.raises(InvalidArgument):
        q.engine.rows(id_contains=3)


def test_rough_counts_are_exact_below_the_cap_and_stop_at_it(q: Queue, monkeypatch):
    q.enqueue_many(BOOM, [() for _ in range(2)], max_attempts=1)
    q.enqueue_many(ADD, [(i, i) for i in range(5)])
    assert run_burst(q, max_jobs=3) == 3
    q.enqueue_call("jobtasks:fail_until", args=(3,), priority=9, max_attempts=5)
    assert run_burst(q, max_jobs=1) == 1  # failed, its retry due at once (ready)
    assert q.counts()["failed"] == 1
    assert q.engine.rough_counts() == q.counts()
    monkeypatch.setattr(listing, "ROUGH_CAP", 2)
    capped = q.engine.rough_counts()
    assert capped == {s: min(2, n) for s, n in q.counts().items()}
    assert set(capped) == {s.value for s in Status} - {"waiting"}  # shown while jobs wait


def test_oldest_due_is_the_age_of_the_longest_waiting_due_job(q: Queue):
    assert q.engine.oldest_due() is None
    q.enqueue_call(ADD, args=(1, 1), delay=3600)
    assert q.engine.oldest_due() is None  # delayed: not waiting for a worker yet
    q.enqueue_call(ADD, args=(1, 1), priority=5)
    time.sleep(0.2)
    q.enqueue_call(ADD, args=(1, 1), priority=1)
    q.enqueue_call(ADD, args=(1, 1), priority=5)
    age = q.engine.oldest_due()
    assert age is not None and 0.2 <= age < 60
    assert run_burst(q) == 3
    assert q.engine.oldest_due() is None


def test_next_waiting_is_the_next_delayed_job_and_the_next_retry(q: Queue):
    now = q.engine.now()
    assert q.engine.next_waiting(now) == {}
    q.enqueue_many(ADD, [(i, i) for i in range(3)])  # ready: not waiting for a time
    q.enqueue_call(ADD, args=(1, 1), delay=7200)
    soon = q.enqueue_call(ADD, args=(1, 1), delay=3600)
    q.enqueue_call(BOOM, max_attempts=2, priority=9)
    assert run_burst(q, max_jobs=1, retry_delay=lambda attempt: 600) == 1
    now = q.engine.now()
    found = q.engine.next_waiting(now)
    assert set(found) == {Status.QUEUED, Status.FAILED}
    assert found[Status.QUEUED] == q.engine.row(soon)["run_at"]
    assert 3500 < found[Status.QUEUED] - now <= 3600 and 500 < found[Status.FAILED] - now <= 600
    exact = q.engine.waiting(now)
    assert found == {s: t for (s, due), t in exact.items() if not due}
    assert q.engine.next_waiting(now + 650) == {Status.QUEUED: found[Status.QUEUED]}


def test_finish_times_are_the_newest_ends_of_a_finished_status(q: Queue):
    started = q.engine.now()
    q.enqueue_many(ADD, [(i, i) for i in range(5)])
    q.enqueue_call(BOOM, max_attempts=1)
    assert run_burst(q) == 6
    ended = q.engine.now()
    times = q.engine.finish_times(Status.SUCCEEDED, started - 1, 100)
    assert len(times) == 5 and times == sorted(times, reverse=True)
    assert all(started - 1 <= t <= ended + 1 for t in times)
    assert q.engine.finish_times(Status.SUCCEEDED, started - 1, 2) == times[:2]
    assert len(q.engine.finish_times(Status.DEAD, started - 1, 100)) == 1
    assert q.engine.finish_times(Status.SUCCEEDED, ended + 5, 100) == []
    assert q.engine.finish_times(Status.CANCELLED, started - 1, 100) == []


def test_a_scan_limit_bounds_what_a_filter_reads_and_says_where_to_go_on(q: Queue):
    ids = [q.enqueue_call(ADD, args=(i, i), job_id=f"job-{i:02d}") for i in range(10)]
    q.enqueue_call(BOOM, job_id="boom-00")  # the newest: in every window read newest first
    page = q.engine.rows(limit=5, newest_first=False, id_contains="boom", scan_limit=4)
    assert list(page) == [] and page.resume == ids[3]
    page = q.engine.rows(limit=5, newest_first=False, id_contains="boom", scan_limit=4,
                         after=page.resume)
    assert list(page) == [] and page.resume == ids[7]
    page = q.engine.rows(limit=5, newest_first=False, id_contains="boom", scan_limit=4,
                         after=page.resume)
    assert [r["job_id"] for r in page] == ["boom-00"] and page.resume is None
    full = q.engine.rows(limit=2, task=ADD, scan_limit=4)  # filled within the budget
    assert [r["job_id"] for r in full] == [ids[9], ids[8]] and full.resume is None
    on_status = q.engine.rows(Status.QUEUED, limit=5, task=BOOM, scan_limit=3)
    assert [r["job_id"] for r in on_status] == ["boom-00"] and on_status.resume == ids[8]
    for bad in (0, -1, "10", True):
        with pytest.raises(InvalidArgument):
            q.engine.rows(limit=5, task=ADD, scan_limit=bad)  # type: ignore[arg-type]


def test_the_group_filter_is_the_groups_members_only(q: Queue):
    g = q.map("grouptasks:square", range(12))
    q.enqueue_call(ADD, args=(1, 1), job_id=g.id + "-not-a-member")
    other = q.map("grouptasks:square", range(2))
    members = [r["job_id"] for r in q.engine.rows(limit=100, newest_first=False, group=g.id)]
    assert members == [f"{g.id}.{i}" for i in range(12)]  # arrival order, not id order
    assert _pages(q, 5, group=other.id) == [[f"{other.id}.1", f"{other.id}.0"]]
    assert [r["job_id"] for r in q.engine.rows(limit=10, group=g.id, id_contains=".1",
                                               scan_limit=1)] == [
        f"{g.id}.{i}" for i in (11, 10, 1)]
    assert list(q.engine.rows(Status.DEAD, limit=10, group=g.id)) == []
    with pytest.raises(InvalidArgument):
        q.engine.rows(limit=10, group="")
