"""A network cut, measured: run in a private network namespace (tests/postgres/test_partition.py
starts it with ``unshare --net``), it prints, as one JSON line, how long each side took to notice.

In the namespace: a private cluster listening on 127.0.0.3; jobq sessions to it (those of
``--urls``: jobq's defaults, the URL's ``tcp_user_timeout=3000``, both ends' timeouts short
through the URL), each holding an advisory lock as a worker's
liveness session does. Then the cut: the rule that makes 127.0.0.3 local moves behind two
blackhole rules (to it, from it), so every packet between the sessions and the server is dropped,
with no reset and no error; a unix socket (the observer's) is not touched. Each session then
sends ``SELECT 1`` and waits for it to fail; the observer waits for the server to free each lock.
Usage: ``python partition_netns.py [--limit SECONDS] [--urls NAME,...]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

import psycopg  # noqa: E402

import pg  # noqa: E402
from jobq.postgres.db import connect  # noqa: E402
from jobq.postgres.url import parse  # noqa: E402

SERVER = "127.0.0.3"
URLS = {"defaults": "", "url_tcp_user_timeout_3000": "?tcp_user_timeout=3000",
        # Both ends short, as a URL can ask (libpq's parameter, the server's through options):
        # the normal suite's case, noticed in seconds instead of the defaults' 25.
        "url_both_short": "?tcp_user_timeout=2000&options=-c%20tcp_user_timeout%3D2000"
                          "%20-c%20tcp_keepalives_idle%3D1%20-c%20tcp_keepalives_interval%3D1"}


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def cut() -> None:
    """Drop every packet to and from SERVER: the local table's rule moves behind blackholes."""
    ip("rule", "add", "pref", "100", "lookup", "local")
    ip("rule", "del", "pref", "0", "lookup", "local")
    ip("rule", "add", "pref", "10", "to", SERVER, "blackhole")
    ip("rule", "add", "pref", "11", "from", SERVER, "blackhole")


def _client(conn: psycopg.Connection, since: float, found: dict[str, float | str],
            name: str) -> None:
    try:
        conn.execute("SELECT 1")
        found[name] = "answered"  # the cut let it through: the test fails on it
    except psycopg.Error:
        found[name] = round(time.monotonic() - since, 1)


def _locks_held(observer: psycopg.Connection) -> set[int]:
    rows = observer.execute("SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory'"
                            " AND granted").fetchall()
    return {int(key) for key, in rows}


def measure(limit: float, names: list[str]) -> dict[str, object]:
    ip("link", "set", "lo", "up")
    with pg.private_cluster(settings={"listen_addresses": SERVER}) as cluster:
        base = f"postgresql://postgres@{SERVER}:{cluster.port}/postgres"
        sessions = {name: connect(parse(base + URLS[name])) for name in names}
        keys = {name: n for n, name in enumerate(sessions, 1)}
        for name, conn in sessions.items():
            conn.execute("SELECT pg_advisory_lock(%s)", (keys[name],))
        observer = psycopg.connect(host=str(cluster.root), port=cluster.port, user="postgres",
                                   dbname="postgres", autocommit=True)
        assert _locks_held(observer) >= set(keys.values())
        cut()
        since = time.monotonic()
        client: dict[str, float | str] = {}
        threads = [threading.Thread(target=_client, args=(conn, since, client, name), daemon=True)
                   for name, conn in sessions.items()]
        for thread in threads:
            thread.start()
        server: dict[str, float] = {}
        while len(server) < len(keys) and time.monotonic() - since < limit:
            held = _locks_held(observer)
            for name, key in keys.items():
                if key not in held and name not in server:
                    server[name] = round(time.monotonic() - since, 1)
            time.sleep(0.1)
        for thread in threads:
            thread.join(max(0.0, limit - (time.monotonic() - since)))
        observer.close()
        return {"client_noticed_s": client, "server_freed_lock_s": server, "limit_s": limit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=90.0)
    parser.add_argument("--urls", default=",".join(URLS),
                        help=f"which sessions, comma-separated, of: {', '.join(URLS)}")
    args = parser.parse_args()
    names = args.urls.split(",")
    if not set(names) <= set(URLS):
        parser.error(f"--urls: unknown {sorted(set(names) - set(URLS))}")
    print(json.dumps(measure(args.limit, names)), flush=True)


if __name__ == "__main__":
    main()
