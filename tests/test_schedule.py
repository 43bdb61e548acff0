"""Schedules as values: validation, deterministic job ids, misfire policies and DST edges, all
decided by pure functions on an injected clock."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone
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
    ("result_ttl", -1, "result_ttl must be a number of seconds >= 0"),
    ("failure_ttl", float("inf"), "failure_ttl must be a number of seconds >= 0"),
    ("result_ttl", "60", "result_ttl must be a number of seconds >= 0"),
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


def test_ttls_are_stored_only_when_given_and_passed_to_each_firing() -> None:
    """A schedule without ttls writes the spec it wrote before they existed."""
    plain = every("*/5 * * * *")
    assert "ttl" not in plain.to_json() and plain.ttls() == {}
    kept = every("*/5 * * * *", result_ttl=60, failure_ttl=0)  # type: ignore[arg-type]
    assert Schedule.from_json(kept.to_json()) == kept
    assert kept.ttls() == {"result_ttl": 60.0, "failure_ttl": 0.0}
    assert every("*/5 * * * *", failure_ttl=3600).ttls() == {  # type: ignore[arg-type]
        "failure_ttl": 3600.0}


def test_the_decorator_takes_ttls(monkeypatch: pytest.MonkeyPatch) -> None:
    import jobtasks
    from jobq import periodic_jobs

    monkeypatch.setattr(periodic_jobs, "_registered", {})  # no worker of this process fires it
    periodic_jobs.periodic("0 * * * *", result_ttl=30)(jobtasks.add)
    (found,) = periodic_jobs.registered()
    assert found.ttls() == {"result_ttl": 30.0}


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


def interval(seconds: object = 300, **options: object) -> Schedule:
    return Schedule(name="s", every=seconds, task="jobtasks:noop", **options)  # type: ignore


@pytest.mark.parametrize("fields,words", [
    (dict(), "exactly one of cron"),
    (dict(cron="* * * * *", every=60), "exactly one of cron"),
    (dict(every=0), "at least 1"),
    (dict(every=-60), "at least 1"),
    (dict(every=1.5), "whole number of seconds"),
    (dict(every=timedelta(milliseconds=1500)), "whole number of seconds"),
    (dict(every=timedelta(0)), "at least 1"),
    (dict(every="5m"), "timedelta or a number"),
    (dict(every=True), "timedelta or a number"),
    (dict(every=60, tz="Europe/Berlin"), "time zone does not apply"),
], ids=["neither", "both", "zero", "negative", "fraction", "fraction-td", "zero-td", "text",
        "bool", "tz"])
def test_bad_intervals_are_refused(fields: dict, words: str) -> None:
    with pytest.raises(InvalidSchedule, match=words) as err:
        Schedule(name="s", task="jobtasks:noop", **fields)
    assert isinstance(err.value, InvalidArgument) and "\n" not in str(err.value)


def test_an_interval_is_whole_seconds_whatever_it_was_given_as() -> None:
    assert interval(timedelta(minutes=5)) == interval(300) == interval(300.0)
    assert interval(timedelta(minutes=5)).every == 300
    assert [interval(n).when for n in (1, 90, 300, 5400, 86400, 2 * 604800)] == \
        ["every 1s", "every 90s", "every 5m", "every 90m", "every 1d", "every 2w"]


def test_interval_fire_times_are_anchored_at_the_epoch() -> None:
    """Every 7 minutes: multiples of 420 s since 1970-01-01 UTC, wherever one starts looking."""
    s = interval(timedelta(minutes=7))
    start = at(2026, 1, 1, 0, 3)
    got = [s.next_after(start)]
    while len(got) < 5:
        got.append(s.next_after(got[-1]))
    assert all(t % 420 == 0 for t in got) and got[0] > start >= got[0] - 420
    assert [b - a for a, b in zip(got, got[1:])] == [420.0] * 4
    assert s.next_after(got[0] - 0.5) == got[0] and s.next_after(got[0]) == got[1]


def test_interval_json_round_trip_and_old_cron_json_still_reads() -> None:
    s = interval(timedelta(hours=2), args=(1,), misfire="all", overlap="allow")
    assert '"every": 7200' in s.to_json() and '"cron"' not in s.to_json()
    assert Schedule.from_json(s.to_json()) == s
    old = ('{"args": [], "cron": "*/5 * * * *", "kwargs": {}, "misfire": "skip", "name": "n",'
           ' "overlap": "skip", "task": "m:f", "tz": "Europe/Berlin"}')  # as stored before
    back = Schedule.from_json(old)
    assert back.every is None and back.when == "*/5 * * * *" and back.to_json() == old


def test_interval_misfire_policies() -> None:
    due = at(2026, 1, 1, 0, 5)
    now = at(2026, 1, 1, 1, 0, 30)  # 12 times missed, 00:05 ... 01:00
    assert interval(300).firing(due, due - 1) == ([], due)
    assert interval(300).firing(due, due + 1) == ([due], due + 300)
    assert interval(300).firing(due, now) == ([at(2026, 1, 1, 1)], at(2026, 1, 1, 1, 5))
    assert interval(300).firing(due, now + GRACE) == ([], at(2026, 1, 1, 1, 5))
    assert interval(300, misfire="once").firing(due, now + GRACE).times == [at(2026, 1, 1, 1)]
    f = interval(300, misfire="all").firing(due, now)
    assert f.times == [due + 300 * k for k in range(12)] and f.next_at == at(2026, 1, 1, 1, 5)
    f = interval(1, misfire="all").firing(due, due + 5000)
    assert len(f.times) == MAX_CATCH_UP and f.times[-1] == due + 5000


def test_interval_job_ids_are_the_utc_fire_time() -> None:
    s = interval(timedelta(hours=6))
    assert s.job_id(s.next_after(at(2026, 7, 1, 1))) == "periodic:s:2026-07-01T06:00:00Z"
