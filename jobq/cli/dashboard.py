"""``jobq dashboard``: serve the web dashboard of a queue until interrupted."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..errors import StorageError
from . import commands

DEFAULT_PORT = 8181


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("dashboard", parents=[common],
                       help="serve a web dashboard of the queue (read-only unless"
                            " --allow-actions); prints the address to open")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT}; 0: any free one)")
    p.add_argument("--allow-actions", action="store_true",
                   help="show retry and cancel buttons (POST with a per-run token); beyond"
                        " loopback this needs JOBQ_DASHBOARD_PASSWORD")
    p.add_argument("--refresh", type=float, default=2.0, metavar="S",
                   help="seconds between live updates of a visible page (default 2)")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text!r} (0 to 65535)")
    return port


def dashboard(args: argparse.Namespace, out: TextIO) -> int:
    from ..dashboard import Dashboard
    from ..dashboard.server import check_exposure, password_from_env, serve

    commands.importable_cwd()  # a job page shows arguments of the project's own classes
    password = password_from_env()
    check_exposure(args.host, args.allow_actions, password)
    with commands.open_queue(args, create=False) as queue:
        app = Dashboard(queue, allow_actions=args.allow_actions, password=password,
                        refresh=args.refresh)
        try:
            server = serve(app, args.host, args.port)
        except OSError as exc:
            raise StorageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
                               ) from exc
        with server:
            host, port = server.server_address[:2]
            shown = f"[{host}]" if ":" in str(host) else host
            mode = "actions on" if args.allow_actions else "read-only"
            print(f"jobq dashboard of {queue.location} at http://{shown}:{port}/ ({mode}"
                  f"{', password needed' if password else ''}; Ctrl-C stops it)",
                  file=out, flush=True)
            try:
                server.serve_forever()
            except KeyboardInterrupt:  # the way to stop it: not an error
                print("jobq dashboard: stopped", file=out)
    return 0
