"""The dashboard in a real browser: Debian's chromium driven by Playwright (no browser
download), against the real ``jobq dashboard`` command and a real queue and worker.

These tests fail, never skip, when the browser or Playwright is missing: .ci/run installs both.
Screenshots of each page are saved under the test's temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobq import Queue, Status
from jobq.testing import run_burst

from .serving import Served

# $JOBQ_TEST_CHROMIUM names another Chromium (macOS: the app's binary), else Debian's.
CHROMIUM = os.environ.get("JOBQ_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ADD, BOOM = "jobtasks:add", "jobtasks:boom"
XSS = ('<img src=x onerror="window.__xss=1;alert(1)">', "<script>window.__xss=2</script>",
       '"><svg onload=alert(3)>')


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One Chromium for the session: each test gets a fresh context (cookies, pages) of it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need Playwright for Python: pip install -e '.[test]'"
                    " (or pip install playwright; no browser download is needed)", pytrace=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"the browser tests need Chromium, not found at {CHROMIUM}: apt-get install"
                    " -y chromium (Debian/Ubuntu), or set JOBQ_TEST_CHROMIUM to a Chromium"
                    " binary", pytrace=False)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


class Watched:
    """A page, and what it did that it must not: dialogs (alert), console errors (a CSP
    violation is one), uncaught script errors."""

    def __init__(self, page: Any, shots: Path) -> None:
        self.page, self.shots, self.problems = page, shots, []  # type: Any, Path, list[str]
        page.on("dialog", lambda d: (self.problems.append(f"dialog: {d.message}"), d.dismiss()))
        page.on("console", lambda m: m.type == "error" and self.problems.append(
            f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"pageerror: {e}"))

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


@pytest.fixture
def page(browser: Any, tmp_path: Path, serve: Callable[..., Served]) -> Iterator[Watched]:
    # After serve, so closed before the dashboards stop: a live refresh that found its server
    # gone would be a console error of the teardown, not of the page.
    context = browser.new_context()
    watched = Watched(context.new_page(), tmp_path)
    try:
        yield watched
    finally:
        context.close()
    assert watched.problems == []


@pytest.fixture
def qdir(tmp_path: Path) -> str:
    return str(tmp_path / "queue")


# The main tests run on both engines (``location``: a queue directory, a PostgreSQL queue).

def test_the_overview_updates_live_while_a_worker_drains(
        page: Watched, location: str, serve: Callable[..., Served],
        workers: Callable[..., Any]):
    from playwright.sync_api import expect
    qdir = location
    with Queue(qdir) as q:
        q.enqueue_many(ADD, [(i, i) for i in range(5)])
    served = serve(qdir, "--refresh", "0.3")
    page.page.goto(served.url + "/")
    queued = page.page.locator('[data-status="queued"] strong')
    expect(queued).to_have_text("5")
    page.shot("overview-before")
    workers(qdir, "--burst")
    expect(queued).to_have_text("0", timeout=30_000)  # no reload: the live part refreshed
    expect(page.page.locator('[data-status="succeeded"] strong')).to_have_text("5")
    expect(page.page.locator("#activity rect.succeeded").first).to_be_visible()  # the chart
    page.shot("overview-after")


def test_refreshing_stops_while_the_tab_is_hidden(page: Watched, qdir: str,
                                                  serve: Callable[..., Served]):
    Queue(qdir).close()
    served = serve(qdir, "--refresh", "0.2")
    p = page.page
    p.goto(served.url + "/")
    stamp = _poll(p, lambda v: v is not None)
    p.evaluate("""() => { Object.defineProperty(document, 'hidden', {value: true,
                          configurable: true});
                          document.dispatchEvent(new Event('visibilitychange')); }""")
    p.wait_for_timeout(300)  # a refresh under way ends
    stamp = p.evaluate("document.body.dataset.refreshed")
    p.wait_for_timeout(1000)  # five periods
    assert p.evaluate("document.body.dataset.refreshed") == stamp
    p.evaluate("""() => { Object.defineProperty(document, 'hidden', {value: false,
                          configurable: true});
                          document.dispatchEvent(new Event('visibilitychange')); }""")
    _poll(p, lambda v: v != stamp)


def _poll(p: Any, done: Callable[[Any], bool], timeout: float = 30) -> Any:
    """The page's last refresh stamp once ``done`` says so (``wait_for_function`` would eval a
    string, which the dashboard's CSP forbids)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = p.evaluate("document.body.dataset.refreshed")
        if done(value):
            return value
        p.wait_for_timeout(50)
    raise AssertionError("the page did not refresh as expected")


def test_a_job_page_follows_its_progress_to_the_end(
        page: Watched, location: str, tmp_path: Path, serve: Callable[..., Served],
        workers: Callable[..., Any]):
    from playwright.sync_api import expect
    qdir = location
    with Queue(qdir) as q:
        jid = q.enqueue("jobtasks:slow_steps", 4, 0.4, str(tmp_path))
    served = serve(qdir, "--refresh", "0.2")
    page.page.goto(f"{served.url}/jobs/{jid}")
    bar = page.page.locator("#live progress")
    expect(bar).to_have_attribute("value", "0.000")
    workers(qdir, "--burst")
    expect(page.page.locator("#live .status")).to_have_text("running", timeout=30_000)
    page.shot("job-running")
    expect(bar).to_have_attribute("value", "1.000", timeout=30_000)
    expect(page.page.locator("#live .status")).to_have_text("succeeded", timeout=30_000)
    page.shot("job-done")


def test_values_from_jobs_never_run_as_script(page: Watched, location: str,
                                              serve: Callable[..., Served]):
    qdir = location
    with Queue(qdir) as q:
        ids = [q.enqueue_call(BOOM, args=(text,), job_id=f"x{i}{text}", max_attempts=1)
               for i, text in enumerate(XSS)]
        run_burst(q)
    served = serve(qdir, "--allow-actions")
    p = page.page
    for path in ("/", "/jobs", "/jobs?status=dead", *(f"/jobs?id=x{i}" for i in range(3))):
        p.goto(served.url + path)
        assert p.evaluate("window.__xss") is None, path
    assert p.locator("#errors").inner_text().count(XSS[2]) == 1  # shown as text
    p.goto(served.url + "/jobs")
    assert sorted(p.locator("#jobs tbody a").all_inner_texts()) == sorted(ids)
    page.shot("xss-jobs")


def test_filters_and_pages_by_key(page: Watched, qdir: str, serve: Callable[..., Served]):
    with Queue(qdir) as q:
        adds = q.enqueue_many(ADD, [(i, i) for i in range(110)])
        q.enqueue_many("jobtasks:echo", [(i,) for i in range(30)])
    served = serve(qdir)
    p = page.page
    p.goto(served.url + "/jobs")
    p.select_option("select[name=status]", "queued")
    p.fill("input[name=task]", ADD)
    p.select_option("select[name=order]", "oldest")
    with p.expect_navigation():
        p.click("form.filters button")
    seen = []
    while True:
        seen += p.locator("#jobs tbody a").all_inner_texts()
        if p.locator("#next-page").count() == 0:
            break
        with p.expect_navigation():
            p.click("#next-page")
    assert seen == adds
    assert "status=queued" in p.url and "task=jobtasks%3Aadd" in p.url
    page.shot("jobs-last-page")
    p.fill("input[name=q]", adds[7][-12:])
    with p.expect_navigation():
        p.click("form.filters button")
    assert p.locator("#jobs tbody a").all_inner_texts() == [adds[7]]


def test_retry_with_actions_on_and_refused_with_them_off(
        page: Watched, location: str, serve: Callable[..., Served]):
    from playwright.sync_api import expect
    qdir = location
    with Queue(qdir) as q:
        jid = q.enqueue_call(BOOM, max_attempts=1)
        run_burst(q)
    read_only = serve(qdir)
    p = page.page
    p.goto(f"{read_only.url}/jobs/{jid}")
    assert p.locator("form.action").count() == 0
    refused = p.request.post(f"{read_only.url}/jobs/{jid}/retry", form={"token": "x"})
    assert refused.status == 403 and "--allow-actions" in refused.text()

    served = serve(qdir, "--allow-actions")
    p.goto(f"{served.url}/jobs/{jid}")
    token = p.locator("form.retry input[name=token]").get_attribute("value")
    page.shot("job-dead")
    # The same form, with the right token, sent from another origin (the read-only dashboard's
    # page): refused by what the browser says of it (Origin, Sec-Fetch-Site).
    p = p.context.new_page()  # about:blank, an opaque origin of its own
    p.set_content(f'<form method="post" action="{served.url}/jobs/{jid}/retry">'
                  f'<input name="token" value="{token}"><button>go</button></form>')
    p.click("button")
    expect(p.locator("body")).to_contain_text("refused")
    with Queue(qdir) as q:
        assert q.state(jid).status is Status.DEAD

    p = page.page
    p.goto(f"{served.url}/jobs/{jid}")
    with p.expect_navigation():
        p.click("form.retry button")
    expect(p.locator("#live .status")).to_have_text("queued")
    assert p.url == f"{served.url}/jobs/{jid}"
    with Queue(qdir) as q:
        assert q.state(jid).status is Status.QUEUED
    page.shot("job-retried")


def test_the_schedules_page_links_the_last_firing(page: Watched, qdir: str,
                                                  serve: Callable[..., Served]):
    from playwright.sync_api import expect

    from jobq.schedule import Schedule
    with Queue(qdir) as q:
        evil = Schedule(name="evil", cron="0 0 1 1 *", task=BOOM, args=(XSS[0],),
                        kwargs={"x": XSS[1]})
        q.engine.schedules.put(evil, evil.next_after(q.engine.now()))
        hourly = Schedule(name="hourly", cron="0 * * * *", task=BOOM, tz="America/New_York")
        fired = hourly.next_after(q.engine.now() - 7200)
        q.engine.schedules.put(hourly, fired)
        jid = q.enqueue_call(BOOM, job_id=hourly.job_id(fired), max_attempts=1)
        q.engine.schedules.advance("hourly", fired, hourly.next_after(q.engine.now()),
                                   last_job=jid)
        run_burst(q)
    served = serve(qdir)
    p = page.page
    p.goto(served.url + "/")
    with p.expect_navigation():
        p.click("nav >> text=Schedules")
    assert p.evaluate("window.__xss") is None
    names = p.locator("#schedules tbody .name").all_inner_texts()
    assert names == ["evil", "hourly"]
    assert XSS[0] in p.locator("#schedules tbody tr").first.inner_text()  # shown as text
    expect(p.locator("#schedules tbody tr").nth(1)).to_contain_text(re.compile(r":00 E[SD]T"))
    page.shot("schedules")
    with p.expect_navigation():
        p.click("#schedules a.last-job")
    assert p.url == f"{served.url}/jobs/{jid.replace(':', '%3A')}"
    expect(p.locator("#live .status")).to_have_text("dead")


def test_retry_all_and_purge_all_matching_ask_first(page: Watched, location: str,
                                                   serve: Callable[..., Served]):
    from playwright.sync_api import expect
    with Queue(location) as q:
        dead = [q.enqueue_call(BOOM, args=(XSS[i % 3],), job_id=f"d{i}{XSS[i % 3]}",
                               max_attempts=1) for i in range(6)]
        run_burst(q)
    served = serve(location, "--allow-actions")
    p = page.page
    p.goto(served.url + "/jobs?status=dead&q=" + "d1")
    with p.expect_navigation():
        p.click("#bulk-retry")
    expect(p.locator("#bulk-n")).to_have_text("1")
    expect(p.locator("main")).to_contain_text("At most 1,000 jobs per click")
    page.shot("bulk-retry-confirm")
    with Queue(location) as q:  # asking changed nothing
        assert {q.state(j).status for j in dead} == {Status.DEAD}
    with p.expect_navigation():
        p.click("form.bulk.retry button")
    expect(p.locator("#message")).to_have_text("Retried 1 jobs.")
    with Queue(location) as q:
        assert q.state(dead[1]).status is Status.QUEUED
    p.goto(served.url + "/jobs?status=dead")
    with p.expect_navigation():
        p.click("#bulk-purge")
    expect(p.locator("#bulk-n")).to_have_text("5")
    assert p.evaluate("window.__xss") is None
    with p.expect_navigation():
        p.click("form.bulk.purge button")
    expect(p.locator("#message")).to_have_text("Purged 5 jobs.")
    expect(p.locator("#jobs tbody")).to_contain_text("no jobs match")
    with Queue(location) as q:
        assert [j for j in dead if q.engine.exists(j)] == [dead[1]]
    page.shot("bulk-purged")


def test_the_timeline_links_each_failed_attempt_to_its_traceback(
        page: Watched, location: str, serve: Callable[..., Served]):
    from playwright.sync_api import expect
    with Queue(location) as q:
        jid = q.enqueue_call(BOOM, args=(XSS[0],), max_attempts=2)
        run_burst(q)
    served = serve(location)
    p = page.page
    p.goto(f"{served.url}/jobs/{jid}")
    steps = p.locator("#timeline li")
    expect(steps).to_have_count(5)
    expect(steps.nth(0)).to_contain_text("enqueued")
    expect(steps.nth(1)).to_contain_text("time not kept")
    expect(steps.nth(3)).to_contain_text(f"attempt 2 failed ValueError: {XSS[0]}")
    expect(steps.nth(4)).to_contain_text("finished: dead")
    page.shot("timeline")
    p.click("#timeline li >> nth=1 >> a")
    assert p.url.endswith("#error-1")
    expect(p.locator("#error-1")).to_contain_text("Traceback (most recent call last)")
    assert p.evaluate("window.__xss") is None
