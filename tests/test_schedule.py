"""Schedules as values: validation, deterministic job ids, misfire policies and DST edges, all
decided by pure functions on an injected clock."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from jobq.errors import InvalidArgument, InvalidSchedule, ScheduleNotFound
from jobq.schedule import GRACE, MAX_CATCH_UP, Schedule, job_id


def at(*fields: int, tz: str = "UTC") -> float:
    return datetime(*fields, tzinfo=ZoneInfo(tz)).timestamp()  # type: ignore[misc]


def utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M")


def every(cron: str, tz: str = "UTC", **options: str) -> Schedule:
    return Schedule(name="s", cron=cron, task="jobtasks:noop", tz=tz, **options)


def fires(s: Schedule, start: float, end: float) -> list[str]:
    """Every fire time in (start, end], in UTC."""
    out, t = [], start
    while (t := s.next_after(t)) <= end:
        out.append(utc(t))
    return out


@pytest.mark.parametrize("field,value,words", [
    ("cron", "61 * * * *", "bad cron expression"),
    ("cron", "* * *", "bad cron expression"),
    ("tz", "Mars/Olympus", "unknown time zone"),
    ("misfire", "later", "misfire must be one of skip, once, all"),
    ("overlap", "queue", "overlap must be one of skip, allow"),
    ("name", "a b", "name must be"),
    ("name", "", "name must be"),
    ("task", "noop", "'module:function'"),
    ("args", (object(),), "JSON values"),
], ids=lambda v: str(v)[:20])
def test_bad_fields_are_refused(field: str, value: object, words: str) -> None:
    fields: dict = dict(name="s", cron="* * * * *", task="jobtasks:noop")
    fields[field] = value
    with pytest.raises(InvalidSchedule, match=words) as err:
        Schedule(**fields)
    assert isinstance(err.value, InvalidArgument)


def test_errors_pickle_with_their_fields() -> None:
    err = pickle.loads(pickle.dumps(InvalidSchedule("bad", name="x")))
    assert str(err) == "bad" and err.name == "x"
    assert isinstance(ScheduleNotFound("no schedule 'x'", name="x"), KeyError)


def test_job_ids_are_the_utc_fire_time() -> None:
    s = every("0 9 * * *", tz="Europe/Berlin")
    t = s.next_after(at(2026, 7, 1))
    assert s.job_id(t) == job_id("s", t) == "periodic:s:2026-07-01T07:00:00Z"


def test_json_round_trip() -> None:
    s = Schedule(name="n", cron="*/5 * * * *", task="m:f", args=(1, "a"), kwargs={"k": [1]},
                 tz="America/New_York", misfire="all", overlap="allow")
    assert Schedule.from_json(s.to_json()) == s


def test_not_due_fires_nothing() -> None:
    s = every("*/5 * * * *")
    assert s.firing(at(2026, 1, 1, 0, 5), at(2026, 1, 1, 0, 4, 59)) == ([], at(2026, 1, 1, 0, 5))


def test_on_time_fires_once_and_moves_on() -> None:
    s = every("*/5 * * * *")
    f = s.firing(at(2026, 1, 1, 0, 5), at(2026, 1, 1, 0, 5, 1))
    assert f == ([at(2026, 1, 1, 0, 5)], at(2026, 1, 1, 0, 10))


def test_skip_fires_a_time_late_by_the_grace_at_most() -> None:
    s = every("0 * * * *")
    due = at(2026, 1, 1, 3)
    assert s.firing(due, due + GRACE).times == [due]
    late = s.firing(due, due + GRACE + 1)
    assert late == ([], at(2026, 1, 1, 4))


def test_skip_after_downtime_fires_the_latest_time_if_just_missed() -> None:
    s = every("*/5 * * * *")
    f = s.firing(at(2026, 1, 1, 0, 5), at(2026, 1, 1, 2, 0, 30))  # 24 times missed
    assert f == ([at(2026, 1, 1, 2)], at(2026, 1, 1, 2, 5))


def test_once_fires_one_catch_up() -> None:
    s = every("0 * * * *", misfire="once")
    f = s.firing(at(2026, 1, 1, 3), at(2026, 1, 1, 7, 30))
    assert f == ([at(2026, 1, 1, 7)], at(2026, 1, 1, 8))


def test_all_fires_every_missed_time_oldest_first() -> None:
    s = every("0 * * * *", misfire="all")
    f = s.firing(at(2026, 1, 1, 3), at(2026, 1, 1, 7, 30))
    assert [utc(t) for t in f.times] == [f"2026-01-01 0{h}:00" for h in range(3, 8)]
    assert f.next_at == at(2026, 1, 1, 8)


def test_all_is_bounded_to_the_latest_times() -> None:
    s = every("* * * * *", misfire="all")
    now = at(2026, 1, 3)
    f = s.firing(at(2026, 1, 1), now)  # 2,880 missed
    assert len(f.times) == MAX_CATCH_UP and f.times[-1] == now
    assert f.times[0] == now - 60 * (MAX_CATCH_UP - 1)


@pytest.mark.parametrize("tz,day,skipped_to", [
    ("Europe/Berlin", (2026, 3, 29), "2026-03-29 01:00"),       # 02:30 does not exist: 03:00 CEST
    ("America/New_York", (2026, 3, 8), "2026-03-08 07:00"),    # 02:30 does not exist: 03:00 EDT
], ids=["Berlin", "New_York"])
def test_a_local_time_in_the_spring_gap_fires_at_the_first_instant_after(
        tz: str, day: tuple[int, int, int], skipped_to: str) -> None:
    s = every("30 2 * * *", tz=tz)
    start = at(*day, tz=tz) - 86400
    got = fires(s, start, start + 3 * 86400)
    assert len(got) == 3 and got[1] == skipped_to


@pytest.mark.parametrize("tz,day,once", [
    ("Europe/Berlin", (2026, 10, 25), "2026-10-25 00:30"),      # 02:30 CEST, not CET too
    ("America/New_York", (2026, 11, 1), "2026-11-01 05:30"),   # 01:30 EDT, not EST too
], ids=["Berlin", "New_York"])
def test_an_ambiguous_local_time_fires_once(tz: str, day: tuple[int, int, int],
                                            once: str) -> None:
    hour = 2 if tz == "Europe/Berlin" else 1
    s = every(f"30 {hour} * * *", tz=tz)
    start = at(*day, tz=tz)  # local midnight
    assert fires(s, start, start + 86400) == [once]


@pytest.mark.parametrize("tz,spring,autumn", [
    ("Europe/Berlin", (2026, 3, 29), (2026, 10, 25)),
    ("America/New_York", (2026, 3, 8), (2026, 11, 1)),
], ids=["Berlin", "New_York"])
def test_an_interval_schedule_keeps_real_time_across_both_transitions(
        tz: str, spring: tuple[int, int, int], autumn: tuple[int, int, int]) -> None:
    """Every 30 minutes of local time: 46 firings in the 23 hours of the short day, 50 in the 25
    of the long one, never two at one instant; a worker firing as it goes sees the same times."""
    s = every("*/30 * * * *", tz=tz, misfire="all")
    for day, count in ((spring, 46), (autumn, 50)):
        start = at(*day, tz=tz) - 1
        got = fires(s, start, start + (count / 2) * 3600)
        assert len(got) == count and len(set(got)) == count
        # A worker on an injected clock, one step a minute, fires the same times.
        fired, next_at, now = [], s.next_after(start), start
        while now < start + (count / 2) * 3600:
            now += 60
            f = s.firing(next_at, now)
            fired += [utc(t) for t in f.times]
            next_at = f.next_at
        assert fired == got
