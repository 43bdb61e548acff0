"""The dashboard's WSGI app on every engine (the ``q`` fixture: a real queue directory, a real
PostgreSQL queue): pages, paging, escaping, actions and their guards, auth, metrics."""

from __future__ import annotations

import base64
import re
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from jobq import Queue, Status
from jobq.dashboard import Dashboard
from jobq.errors import InvalidArgument
from jobq.schedule import Schedule
from jobq.testing import run_burst

from .serving import call, token_in

ADD, BOOM = "jobtasks:add", "jobtasks:boom"
XSS = '<script>alert("x")</script>'


def _ids_on(text: str) -> list[str]:
    return re.findall(r'<tr><td><a href="/jobs/[^"]+">([^<]+)</a>', text)


def test_the_overview_shows_counts_oldest_due_workers_and_failures(q: Queue):
    q.enqueue_many(ADD, [(i, i) for i in range(3)])
    q.enqueue_call(BOOM, args=("bad",), job_id="broken", max_attempts=1, priority=5)
    assert run_burst(q, max_jobs=1) == 1
    reply = call(Dashboard(q), "/")
    assert reply.code == 200 and reply.headers["content-type"].startswith("text/html")
    assert re.search(r'data-status="queued">.*?<strong>3</strong>', reply.text)
    assert re.search(r'data-status="dead">.*?<strong>1</strong>', reply.text)
    assert 'id="oldest-due">' in reply.text and "none waiting" not in reply.text
    assert re.search(r'id="failures">.*href="/jobs/broken"', reply.text)
    assert "no workers" in reply.text and 'data-refresh="2.0"' in reply.text



def _doing(text: str, worker_id: str) -> str:
    """The workers table's last column for ``worker_id``, as text ("" if it is not listed)."""
    row = re.search(rf"<tr><td>{re.escape(worker_id)}</td>(.*?)</tr>", text)
    if row is None:
        return ""
    return re.sub(r"<[^>]+>", "", re.findall(r"<td>(.*?)</td>", row.group(1))[-1])


def test_a_killed_worker_is_shown_holding_its_job_not_running_it_until_reaped(
        q: Queue, location: str, workers):
    from conftest import wait_until
    slow = q.enqueue_call("jobtasks:sleep_for", args=(120,), max_attempts=5)
    first = workers(location)
    first_id = wait_until(lambda: first.events("worker.started"))[0]["worker"]
    app = Dashboard(q)
    wait_until(lambda: "jobtasks:sleep_for" in _doing(call(app, "/").text, first_id))
    first.kill_all()
    dead = wait_until(lambda: (d := _doing(call(app, "/").text, first_id)).startswith("held")
                      and d, timeout=30)
    assert dead == f"held, reclaimed when a worker starts: {slow}"  # not "running" it
    second = workers(location)
    second_id = wait_until(lambda: second.events("worker.started"))[0]["worker"]
    reaped = wait_until(lambda: (d := _doing(call(app, "/").text, first_id)).startswith(
        "reaped") and d)
    assert reaped == f"reaped by {second_id}, which reclaimed: {slow}"
    assert f'href="/jobs/{slow}"' in call(app, "/").text

def test_every_page_sends_the_security_headers(q: Queue):
    app = Dashboard(q)
    for path in ("/", "/jobs", "/metrics", "/nowhere"):
        headers = call(app, path).headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "'unsafe-inline'" not in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "same-origin"


def test_values_from_jobs_are_escaped_everywhere(q: Queue):
    jid = q.enqueue_call(BOOM, args=(XSS,), job_id=f"id-{XSS}", max_attempts=1)
    q.enqueue_call(BOOM, kwargs={"message": XSS}, job_id="kw")  # errors and kwargs too
    assert run_burst(q) == 4
    app = Dashboard(q, allow_actions=True)
    for path in ("/", "/jobs", f"/jobs/{jid.replace('/', '%2F')}", "/jobs/kw",
                 "/jobs?task=" + XSS, "/jobs?q=" + XSS):
        reply = call(app, path.replace(" ", "%20").replace('"', "%22").replace("<", "%3C")
                     .replace(">", "%3E"))
        assert "<script>alert" not in reply.text, path
    page = call(app, "/jobs/id-%3Cscript%3Ealert(%22x%22)%3C%2Fscript%3E").text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page  # shown, as text


def test_jobs_are_paged_by_key_and_filtered(q: Queue):
    ids = q.enqueue_many(ADD, [(i, i) for i in range(120)])
    booms = [q.enqueue_call(BOOM, job_id=f"boom-{i}") for i in range(3)]
    app, seen, path = Dashboard(q), [], "/jobs?task=" + ADD
    while path:
        reply = call(app, path)
        assert reply.code == 200
        seen += _ids_on(reply.text)
        nxt = re.search(r'<a href="([^"]+)" rel="next"', reply.text)
        path = nxt.group(1).replace("&amp;", "&") if nxt else ""
    assert seen == ids[::-1]
    assert _ids_on(call(app, "/jobs?q=boom-&order=oldest").text) == booms
    assert _ids_on(call(app, "/jobs?q=boom-1&status=queued").text) == [booms[1]]
    assert "no jobs match" in call(app, "/jobs?status=dead").text


def test_bad_queries_are_one_clear_message(q: Queue):
    app = Dashboard(q)
    reply = call(app, "/jobs?status=bogus")
    assert reply.code == 400 and "no status &#x27;bogus&#x27;" in reply.text
    assert call(app, "/jobs?order=sideways").code == 400
    reply = call(app, "/jobs?after=gone")
    assert reply.code == 404 and "to page from" in reply.text
    assert call(app, "/jobs/nope").code == 404
    assert call(app, "/nowhere").code == 404
    assert call(app, "/", method="PUT").code == 405
    assert call(app, "/jobs?id=nope").code == 404


def test_a_job_page_shows_payload_history_errors_and_progress(q: Queue):
    jid = q.enqueue_call(BOOM, args=("it broke",), max_attempts=2)
    run_burst(q)
    page = call(Dashboard(q), f"/jobs/{jid}").text
    assert "&#x27;it broke&#x27;" in page  # the arguments, as repr
    assert page.count("Traceback (most recent call last)") == 2  # one per attempt
    assert page.count("ValueError: it broke") == 4  # and its cause on the timeline
    assert all(step in page for step in ("enqueued", "run at", "started", "finished"))
    assert "<progress" in page and 'class="status dead"' in page
    reply = call(Dashboard(q), f"/jobs?id={jid[:6]}")  # jump by a prefix
    assert reply.code == 303 and reply.headers["location"] == f"/jobs/{jid}"


def test_actions_are_off_unless_allowed(q: Queue):
    jid = q.enqueue_call(BOOM, max_attempts=1)
    run_burst(q)
    app = Dashboard(q)
    assert "<form action=\"/jobs/" not in call(app, f"/jobs/{jid}").text
    reply = call(app, f"/jobs/{jid}/retry", method="POST", form=f"token={app.token}")
    assert reply.code == 403 and "--allow-actions" in reply.text
    assert q.state(jid).status is Status.DEAD


def test_an_action_needs_this_runs_token_and_the_same_site(q: Queue):
    jid = q.enqueue_call(BOOM, job_id="a/b", max_attempts=1)
    run_burst(q)
    app = Dashboard(q, allow_actions=True)
    token = token_in(call(app, "/jobs/a%2Fb").text)
    for form, headers in (("token=forged", {}), ("", {}),
                          (f"token={token}", {"Sec-Fetch-Site": "cross-site"}),
                          (f"token={token}", {"Origin": "http://evil.example"}),
                          (f"token={Dashboard(q, allow_actions=True).token}", {})):
        reply = call(app, "/jobs/a%2Fb/retry", method="POST", form=form, headers=headers)
        assert reply.code == 403, (form, headers)
    assert q.state(jid).status is Status.DEAD
    reply = call(app, "/jobs/a%2Fb/retry", method="POST", form=f"token={token}",
                 headers={"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8181"})
    assert reply.code == 303 and reply.headers["location"] == "/jobs/a%2Fb"
    assert q.state(jid).status is Status.QUEUED
    reply = call(app, "/jobs/a%2Fb/cancel", method="POST", form=f"token={token}")
    assert reply.code == 303 and q.state(jid).status is Status.CANCELLED
    reply = call(app, "/jobs/a%2Fb/cancel", method="POST", form=f"token={token}")
    assert reply.headers["location"] == "/jobs/a%2Fb?not=cancel"  # nothing left to cancel
    assert "nothing to cancel" in call(app, "/jobs/a%2Fb?not=cancel").text
    assert call(app, "/jobs/nope/retry", method="POST", form=f"token={token}").code == 404


def test_a_password_guards_every_page_but_health(q: Queue):
    app = Dashboard(q, password="s3cret")
    assert call(app, "/").code == 401 and call(app, "/metrics").code == 401
    assert "Basic" in call(app, "/").headers["www-authenticate"]
    good = base64.b64encode(b"anyone:s3cret").decode()
    bad = base64.b64encode(b"anyone:wrong").decode()
    assert call(app, "/", headers={"Authorization": f"Basic {good}"}).code == 200
    assert call(app, "/", headers={"Authorization": f"Basic {bad}"}).code == 401
    assert call(app, "/", headers={"Authorization": "Basic !!"}).code == 401
    assert call(app, "/health").code == 200


def test_metrics_in_the_prometheus_text_format(q: Queue):
    q.enqueue_many(ADD, [(i, i) for i in range(4)])
    run_burst(q, max_jobs=1)
    reply = call(Dashboard(q), "/metrics")
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = reply.text.splitlines()
    assert 'jobq_jobs{status="queued"} 3' in lines and 'jobq_jobs{status="succeeded"} 1' in lines
    assert "jobq_jobs_count_cap 10000" in lines and 'jobq_workers{state="live"} 0' in lines
    assert any(re.fullmatch(r"jobq_oldest_due_seconds [0-9.]+", line) for line in lines)
    assert all(line.startswith("#") or re.fullmatch(
        r'[a-z_]+(\{[a-z]+="[^"]*"(,[a-z]+="[^"]*")*\})? [0-9.]+', line) for line in lines)


def test_metrics_counters_and_durations_survive_a_restart(q: Queue):
    q.enqueue_many(ADD, [(i, i) for i in range(3)])
    q.enqueue_call(BOOM, max_attempts=2)
    run_burst(q)
    first = call(Dashboard(q), "/metrics").text.splitlines()
    for line in ("jobq_jobs_enqueued_total 4", "jobq_jobs_succeeded_total 3",
                 "jobq_jobs_failed_total 1", "jobq_jobs_retried_total 1",
                 "jobq_jobs_redelivered_total 0", "# TYPE jobq_jobs_enqueued_total counter",
                 "# TYPE jobq_job_duration_seconds histogram",
                 f'jobq_job_duration_seconds_bucket{{task="{ADD}",le="+Inf"}} 3',
                 f'jobq_job_duration_seconds_count{{task="{ADD}"}} 3',
                 f'jobq_job_duration_seconds_count{{task="{BOOM}"}} 2'):
        assert line in first, line
    buckets = [int(line.rsplit(" ", 1)[1]) for line in first
               if line.startswith(f'jobq_job_duration_seconds_bucket{{task="{ADD}"')]
    assert buckets == sorted(buckets) and buckets[-1] == 3
    q.engine.purge(frozenset({Status.SUCCEEDED, Status.DEAD}), q.engine.now() + 1)
    with q.reopen() as again:  # another dashboard, the jobs purged: the counters stay
        after = call(Dashboard(again), "/metrics").text.splitlines()
    assert [line for line in after if "_total " in line or "duration" in line] == \
        [line for line in first if "_total " in line or "duration" in line]


def test_static_files_are_package_data(q: Queue):
    app = Dashboard(q)
    js = call(app, "/static/dashboard.js")
    assert js.code == 200 and "visibilitychange" in js.text
    assert call(app, "/static/dashboard.css").code == 200
    assert call(app, "/static/../app.py").code == 404


def test_bad_settings_are_refused(q: Queue):
    for kwargs in ({"password": ""}, {"refresh": 0}):
        with pytest.raises(InvalidArgument):
            Dashboard(q, **kwargs)
    with pytest.raises(InvalidArgument, match="jobq.Queue"):
        Dashboard("/tmp/queue")  # type: ignore[arg-type]


def test_the_schedules_page_shows_next_and_last_firings(q: Queue):
    daily = Schedule(name="daily", cron="30 6 * * *", task=ADD, args=(1, 2), tz="Europe/Berlin",
                     misfire="once", overlap="allow", result_ttl=86400, failure_ttl=90.5)
    q.engine.schedules.put(daily, 1_900_000_000.0)  # 2030-03-17 17:46:40 UTC
    hourly = Schedule(name="hourly", cron="0 * * * *", task=BOOM)
    fired = hourly.next_after(q.engine.now() - 7200)
    q.engine.schedules.put(hourly, fired)
    jid = q.enqueue_call(BOOM, job_id=hourly.job_id(fired), max_attempts=1)
    assert q.engine.schedules.advance("hourly", fired, hourly.next_after(fired), last_job=jid)
    run_burst(q)
    page = call(Dashboard(q), "/schedules")
    assert page.code == 200 and 'href="/schedules"' in page.text
    rows = re.findall(r"<tr>(.*?)</tr>", page.text.split('id="schedules"')[1])[1:]
    assert [re.search(r'class="name">([^<]+)', r).group(1) for r in rows] == ["daily", "hourly"]
    assert "<code>30 6 * * *</code>" in rows[0] and "Europe/Berlin" in rows[0]
    assert "<code>1, 2</code>" in rows[0]
    assert "2030-03-17 18:46:40 CET" in rows[0] and "2030-03-17 17:46:40Z" in rows[0]
    assert ">once<" in rows[0] and ">allow<" in rows[0] and ">never<" in rows[0]
    assert ">result 1d, failure 90.5s<" in rows[0] and "<td>-</td>" in rows[1]  # kept
    exact = datetime.fromtimestamp(fired, timezone.utc).isoformat(timespec="seconds")
    assert f'datetime="{exact}"' in rows[1]  # the last fire time, from the job's id
    assert f'href="/jobs/{quote(jid, safe="")}"' in rows[1]
    assert 'class="status dead"' in rows[1]  # the last firing's outcome
    q.engine.purge(frozenset({Status.DEAD}), time.time() + 1)
    assert ">purged<" in call(Dashboard(q), "/schedules").text


def test_schedules_are_escaped_and_none_is_said(q: Queue):
    assert "no schedules" in call(Dashboard(q), "/schedules").text
    q.engine.schedules.put(Schedule(name="x", cron="* * * * *", task=ADD,
                                    kwargs={"html": XSS}), 1_900_000_000.0)
    page = call(Dashboard(q), "/schedules").text
    assert "<script>" not in page.split("</head>")[1]
    assert "html=&#x27;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#x27;" in page


def test_metrics_count_schedules_and_time_their_next_firing(q: Queue):
    lines = call(Dashboard(q), "/metrics").text.splitlines()
    assert "jobq_schedules 0" in lines
    q.engine.schedules.put(Schedule(name="soon", cron="* * * * *", task=ADD),
                           q.engine.now() + 30)
    lines = call(Dashboard(q), "/metrics").text.splitlines()
    assert "jobq_schedules 1" in lines
    (line,) = [x for x in lines if x.startswith("jobq_schedule_next_fire_seconds{")]
    assert line.startswith('jobq_schedule_next_fire_seconds{schedule="soon"} ')
    assert 25 < float(line.split()[-1]) <= 30


def test_the_overview_charts_jobs_ended_per_minute_as_svg(q: Queue):
    q.enqueue_many(ADD, [(i, i) for i in range(3)])
    q.enqueue_call(BOOM, args=(XSS,), max_attempts=1)
    assert run_burst(q) == 4
    page = call(Dashboard(q), "/").text
    svg = re.search(r'<svg [^>]*id="activity".*?</svg>', page, re.S).group(0)
    minute = datetime.now(timezone.utc).strftime("%H:%M")
    bars = re.findall(r'<rect [^>]*class="(\w+)" data-minute="([0-9:]+)" data-count="(\d+)"',
                      svg)
    assert {(cls, n) for cls, _, n in bars} == {("succeeded", "3"), ("dead", "1")}
    assert {m for _, m, _ in bars} <= {minute, (datetime.now(timezone.utc) - timedelta(
        minutes=1)).strftime("%H:%M")}  # this minute (or the last, on a minute's edge)
    assert "succeeded: 3" in svg and "failed for good (dead): 1" in svg
    assert "<script" not in svg and "alert" not in svg  # counts and times only


def test_the_chart_of_an_idle_queue_has_no_bars(q: Queue):
    svg = re.search(r'<svg [^>]*id="activity".*?</svg>', call(Dashboard(q), "/").text,
                    re.S).group(0)
    assert "data-minute" not in svg and "succeeded: 0" in svg and "60m ago" in svg


def test_a_job_page_links_its_parents_with_their_statuses(q: Queue):
    first = q.enqueue_call(ADD, args=(1, 2), job_id="first")
    assert run_burst(q) == 1
    odd = q.enqueue_call(ADD, args=(3, 4), job_id=f"p-{XSS}")
    child = q.enqueue_call(ADD, args=(5, 6), job_id="child", depends_on=[first, odd])
    page = call(Dashboard(q), f"/jobs/{child}").text
    parents = page.split('id="parents">')[1].split("</ul>")[0]
    items = re.findall(r'<li><a href="([^"]+)">([^<]+)</a> <span class="status (\w+)">',
                       parents)
    assert [(text, status) for _, text, status in items] == [
        ("first", "succeeded"), ("p-&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;", "queued")]
    assert items[0][0] == "/jobs/first" and XSS not in page
    for href, _, _ in items:  # each link opens the parent's own page
        assert call(Dashboard(q), href.replace("&amp;", "&")).code == 200
    assert 'id="parents"' not in call(Dashboard(q), "/jobs/first").text


def test_the_schedules_page_shows_an_interval(q: Queue):
    q.engine.schedules.put(Schedule(name="iv", every=timedelta(minutes=5), task=ADD), 3000.0)
    page = call(Dashboard(q), "/schedules").text
    assert "<code>every 5m</code>" in page


def _timeline(text: str) -> list[str]:
    found = re.search(r'<ol id="timeline"[^>]*>(.*?)</ol>', text, re.S)
    assert found, "no timeline on the page"
    items = re.findall(r"<li[^>]*>(.*?)</li>", found.group(1), re.S)
    return [re.sub(r"<[^>]+>", "", re.sub(r'^(<time .*?</time>|<span class="untimed">.*?</span>) ',
                                          "", item)) for item in items]


def test_a_job_page_has_a_timeline_of_its_attempts(q: Queue):
    import html
    jid = q.enqueue_call(BOOM, args=(XSS,), max_attempts=2)
    ok = q.enqueue(ADD, 1, 2)
    run_burst(q)
    text = call(Dashboard(q), f"/jobs/{jid}").text
    steps = [html.unescape(s) for s in _timeline(text)]
    assert [s.split(" ValueError")[0] for s in steps] == [
        "enqueued", "attempt 1 failed", "attempt 2 started", "attempt 2 failed",
        "finished: dead"]
    assert all(f"ValueError: {XSS}" in s for s in steps[1:4:2])  # each attempt's cause
    assert XSS not in text and text.count("Traceback (most recent call last)") == 2
    assert '<a href="#error-2"><code>ValueError: ' in text and 'id="error-2"' in text
    assert '<span class="untimed">time not kept</span> <span class="status failed">attempt 1' \
        in text  # an earlier attempt's times are not stored
    steps = _timeline(call(Dashboard(q), f"/jobs/{ok}").text)
    assert steps == [
        "enqueued", "attempt 1 started", "attempt 1 succeeded", "finished: succeeded"]


def test_a_plain_success_has_its_whole_timeline(q: Queue):
    """A success without a result (stored without its whole snapshot on both engines) shows
    when it started and finished, as one with a result does."""
    jid = q.enqueue("jobtasks:record_call", None)
    run_burst(q)
    page = call(Dashboard(q), f"/jobs/{jid}").text
    assert _timeline(page) == [
        "enqueued", "attempt 1 started", "attempt 1 succeeded", "finished: succeeded"]
    assert 'class="status succeeded"' in page and "time not kept" not in page


def test_the_timeline_names_an_attempt_whose_worker_died(q: Queue):
    from workers.reaping import crash
    jid = q.enqueue(ADD, 1, 2)
    claim = q.engine.settle([], "w1:1", 1)[1][0]
    q.engine.finish(jid, claim.token, crash("worker w1 died", claim.token, 3))
    steps = _timeline(call(Dashboard(q), f"/jobs/{jid}").text)
    assert steps[2:] == ["attempt 1 interrupted attempt 1 interrupted: worker w1 died",
                         "due again"]


def _dead(q: Queue, n: int, task: str = BOOM, prefix: str = "d") -> list[str]:
    ids = [q.enqueue_call(task, job_id=f"{prefix}{i}", max_attempts=1) for i in range(n)]
    run_burst(q)
    return ids


def test_retry_all_matching_asks_first_then_retries_what_the_filter_matches(q: Queue):
    dead = _dead(q, 3)
    app = Dashboard(q, allow_actions=True)
    page = call(app, "/jobs?status=dead").text
    assert 'href="/bulk/retry?status=dead"' in page and 'href="/bulk/purge?status=dead"' in page
    confirm = call(app, "/bulk/retry?status=dead&q=d1")
    assert confirm.code == 200 and 'id="bulk-n">1</strong>' in confirm.text
    assert "At most 1,000 jobs per click" in confirm.text
    assert all(q.state(j).status is Status.DEAD for j in dead)  # asking changed nothing
    reply = call(app, "/bulk/retry", method="POST",
                 form=f"token={token_in(confirm.text)}&status=dead&q=d1")
    assert reply.code == 303 and reply.headers["location"].endswith("done=retry%3A1")
    assert "Retried 1 jobs." in call(app, reply.headers["location"]).text
    assert [q.state(j).status for j in dead] == [Status.DEAD, Status.QUEUED, Status.DEAD]


def test_purge_all_matching_deletes_only_dead_or_cancelled_jobs_that_match(q: Queue):
    dead = _dead(q, 3)
    keep = q.enqueue(ADD, 1, 2)
    app = Dashboard(q, allow_actions=True)
    confirm = call(app, "/bulk/purge?status=dead")
    assert 'id="bulk-n">3</strong>' in confirm.text and "deleted for good" in confirm.text
    reply = call(app, "/bulk/purge", method="POST",
                 form=f"token={app.token}&status=dead")
    assert reply.code == 303 and reply.headers["location"].endswith("done=purge%3A3")
    assert not any(q.engine.exists(j) for j in dead) and q.engine.exists(keep)
    refused = call(app, "/bulk/purge", method="POST", form=f"token={app.token}&status=queued")
    assert refused.code == 400 and "dead or cancelled" in refused.text
    assert q.engine.exists(keep)
    assert 'id="bulk-count">No job matches' in call(app, "/bulk/purge?status=dead").text


def test_bulk_actions_are_refused_when_off_forged_or_cross_site(q: Queue):
    dead = _dead(q, 2)
    off = Dashboard(q)
    assert "/bulk/" not in call(off, "/jobs?status=dead").text
    assert call(off, "/bulk/retry?status=dead").code == 403
    assert call(off, "/bulk/purge", method="POST", form=f"token={off.token}&status=dead"
                ).code == 403
    on = Dashboard(q, allow_actions=True)
    assert call(on, "/bulk/purge", method="POST", form="token=forged&status=dead").code == 403
    assert call(on, "/bulk/purge", method="POST", form=f"token={on.token}&status=dead",
                headers={"Sec-Fetch-Site": "cross-site"}).code == 403
    assert call(on, "/bulk/retry", method="POST", form=f"token={on.token}&status=dead",
                headers={"Origin": "http://evil.example"}).code == 403
    assert all(q.state(j).status is Status.DEAD for j in dead)


def test_a_bulk_click_is_capped(q: Queue, monkeypatch: pytest.MonkeyPatch):
    from jobq.dashboard import bulk
    dead = _dead(q, 5)
    monkeypatch.setitem(bulk.CAPS, "retry", 2)  # the cap's logic, on a small queue
    app = Dashboard(q, allow_actions=True)
    confirm = call(app, "/bulk/retry?status=dead").text
    assert 'id="bulk-n">2</strong>' in confirm and 'id="bulk-more"' in confirm
    call(app, "/bulk/retry", method="POST", form=f"token={app.token}&status=dead")
    assert [q.state(j).status for j in dead] == [Status.QUEUED] * 2 + [Status.DEAD] * 3


def test_bulk_pages_escape_the_filter(q: Queue):
    q.enqueue_call(BOOM, job_id=f"x{XSS}", max_attempts=1)
    run_burst(q)
    app = Dashboard(q, allow_actions=True)
    text = call(app, "/bulk/retry?status=dead&task=" + quote(BOOM) + "&q=" + quote(XSS)).text
    assert 'id="bulk-n">1</strong>' in text
    assert XSS not in text and "<code>&lt;script&gt;" in text


def _next(text: str) -> str:
    found = re.search(r'<a href="([^"]+)" rel="next"', text)
    return found.group(1).replace("&amp;", "&") if found else ""


def test_a_filter_reads_a_bounded_number_of_jobs_and_a_next_page_goes_on(
        q: Queue, monkeypatch: pytest.MonkeyPatch):
    from jobq.dashboard import views
    monkeypatch.setattr(views, "SCAN_LIMIT", 30)
    needle = q.enqueue_call(ADD, (0, 0), job_id="needle-job")
    q.enqueue_many(ADD, [(i, i) for i in range(40)])  # newer: read first, newest first
    app = Dashboard(q)
    first = call(app, "/jobs?q=needle")
    assert first.code == 200 and _ids_on(first.text) == []
    assert "searched 30 more jobs: 0 found; Next page continues the search" in first.text
    second = call(app, _next(first.text))
    assert second.code == 200 and _ids_on(second.text) == [needle]
    assert "searched" not in second.text and _next(second.text) == ""
    # an unknown task searches on the same way, to the end, and then says no more
    path, pages = "/jobs?task=no.such:task", 0
    while path:
        reply = call(app, path)
        assert reply.code == 200 and _ids_on(reply.text) == []
        path, pages = _next(reply.text), pages + 1
    assert pages == 2
    # what the budget found is shown, though the page is not full
    reply = call(app, "/jobs?task=" + ADD)
    assert len(_ids_on(reply.text)) == 30 and "searched 30 more jobs: 30 found" in reply.text
    assert len(_ids_on(call(app, _next(reply.text)).text)) == 11


def test_the_group_filter_lists_a_groups_members_and_a_member_links_to_it(q: Queue):
    g = q.map("grouptasks:square", range(5))
    other = q.map("grouptasks:square", range(3))
    q.enqueue_many(ADD, [(i, i) for i in range(10)])
    app = Dashboard(q)
    members = _ids_on(call(app, f"/jobs?group={quote(g.id)}&order=oldest").text)
    assert members == [f"{g.id}.{i}" for i in range(5)]
    assert _ids_on(call(app, f"/jobs?group={quote(other.id)}&q=.2").text) == [f"{other.id}.2"]
    assert _ids_on(call(app, "/jobs?group=grp-none").text) == []
    page = call(app, "/jobs/" + quote(f"{g.id}.3", safe=""))
    assert f'href="/jobs?group={quote(g.id)}"' in page.text
    assert 'id="group"' not in call(app, "/jobs/" + quote(_ids_on(
        call(app, "/jobs?task=" + ADD).text)[0], safe="")).text
