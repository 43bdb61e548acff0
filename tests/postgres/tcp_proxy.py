"""A TCP proxy for the tests that can stop forwarding without closing: a network partition.

While partitioned, every connection through it stays open at both ends (the kernel acknowledges
what is sent, keepalives are answered) and not a byte passes; a new connection is accepted and
hears nothing. So neither side learns of the partition from TCP: the client's calls hang, and
the server keeps the client's sessions (and their advisory locks) until the partition heals,
when what was held back is delivered.
"""

from __future__ import annotations

import socket
import threading

CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:``port`` (``port``: any free one by default) to ``target``, in
    threads of the test's process."""

    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self._open = threading.Event()  # set while forwarding
        self._open.set()
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def partition(self) -> None:
        """Stop forwarding; connections stay open."""
        self._open.clear()

    def heal(self) -> None:
        """Forward again, starting with what was held back."""
        self._open.set()

    def close(self) -> None:
        self._closed = True
        self._open.set()  # release the pumps, which then find their sockets closed
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in [self._listener, *sockets]:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._open.wait()  # partitioned: the connection is accepted, the server never hears of it
        try:
            server = socket.create_connection(self.target, timeout=10)
            server.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets += [client, server]
        for src, dst in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                self._open.wait()
                data = src.recv(CHUNK)
                self._open.wait()  # read just before the partition: held back until it heals
                if not data or self._closed:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):  # one side ended: end the other, as a plain connection would
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
