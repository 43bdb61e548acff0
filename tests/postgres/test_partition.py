"""A network cut between workers and the server, for real, in a private network namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SOAK_ONLY, child_env

SCRIPT = Path(__file__).with_name("partition_netns.py")
LIMIT = 60.0  # seconds: an upper bound only; the defaults aim at about 25-30 s
SHORT_LIMIT = 15.0  # the same with both ends' timeouts set short by the URL (about 2-4 s)


def _unshare() -> list[str]:
    """``unshare --net`` as root; otherwise a user namespace too, keeping our uid (the private
    cluster refuses to run as root, even a namespace's) and the capabilities to set routes."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (util-linux, iproute2): the network cut"
                        " needs it", pytrace=False)
    if os.geteuid() == 0:
        return ["unshare", "--net"]
    return ["unshare", "--user", "--map-current-user", "--keep-caps", "--net"]


def _measure(limit: float, urls: str, timeout: float) -> dict:
    proc = subprocess.run([*_unshare(), sys.executable, str(SCRIPT), "--limit", str(limit),
                           "--urls", urls],
                          env=child_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    print(found)  # the figures, with -s
    return found


@pytest.mark.timeout(90)
def test_a_cut_off_worker_and_the_server_both_notice_as_the_url_says() -> None:
    """Both ends notice a silent cut (no reset, no error) within the URL's short timeouts (its
    own libpq tcp_user_timeout, the server's through options): the worker's statement fails,
    the server frees its lock. The defaults' ~25 s bound: the soak test below."""
    found = _measure(SHORT_LIMIT, "url_both_short", timeout=75)
    noticed, freed = found["client_noticed_s"], found["server_freed_lock_s"]
    assert set(noticed) == set(freed) == {"url_both_short"}, found
    figures = [*noticed.values(), *freed.values()]
    assert all(isinstance(s, float) and s < SHORT_LIMIT for s in figures), found


@pytest.mark.soak
@pytest.mark.timeout(180)
@SOAK_ONLY
def test_a_cut_off_worker_and_the_server_both_notice_within_the_bound() -> None:
    """Both ends notice a silent cut, with jobq's defaults and with a URL's own
    tcp_user_timeout, within the ~25-30 s the defaults aim at (JOBQ_SOAK=1: it waits them)."""
    found = _measure(LIMIT, "defaults,url_tcp_user_timeout_3000", timeout=150)
    noticed, freed = found["client_noticed_s"], found["server_freed_lock_s"]
    assert set(noticed) == set(freed) == {"defaults", "url_tcp_user_timeout_3000"}, found
    figures = [*noticed.values(), *freed.values()]
    assert all(isinstance(s, float) and s < LIMIT for s in figures), found
