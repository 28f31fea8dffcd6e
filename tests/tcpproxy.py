"""A small threaded TCP proxy on loopback, to break connections to a real service in tests.

    with TcpProxy(5672) as proxy:
        url = proxy.url("amqp://guest:guest@127.0.0.1:5672//")
        ...                 # clients connect through the proxy
        proxy.cut()         # every open connection is closed at once (both sides)
        proxy.refuse()      # new connections are reset as soon as they are accepted
        proxy.hang()        # new connections are accepted and never answered
        proxy.stall()       # open connections stay open but carry nothing (a silent peer)
        proxy.forward()     # back to normal for new connections

Only loopback addresses: it listens on 127.0.0.1 and forwards to a loopback target.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
from urllib.parse import urlsplit, urlunsplit

FORWARD, REFUSE, HANG = "forward", "refuse", "hang"


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed peer's kernel would."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv on it
    except OSError:
        pass
    sock.close()


class _Conn:
    """One proxied connection: its sockets, and whether it still carries data."""

    def __init__(self, socks: tuple[socket.socket, ...]) -> None:
        self.socks = socks
        self.stalled = False


class TcpProxy:
    """Forward 127.0.0.1:<port> to ``target_host:target_port`` until told otherwise."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        if not ipaddress.ip_address(socket.gethostbyname(target_host)).is_loopback:
            raise ValueError(f"TcpProxy only forwards to loopback, not {target_host}")
        self.target = (target_host, target_port)
        self.mode = FORWARD
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[_Conn] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="tcpproxy", daemon=True)
        self._thread.start()

    def url(self, service_url: str) -> str:
        """``service_url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(service_url)
        credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{credentials}127.0.0.1:{self.port}"))

    # -- controls ----------------------------------------------------------------------------

    def forward(self) -> None:
        self.mode = FORWARD

    def refuse(self) -> None:
        self.mode = REFUSE

    def hang(self) -> None:
        self.mode = HANG

    def stall(self) -> None:
        """Open connections stay up but forward nothing from now on."""
        with self._lock:
            for conn in self._open:
                conn.stalled = True

    def cut(self) -> int:
        """Close every open connection, both sides; returns how many there were."""
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            for sock in conn.socks:
                _reset(sock)
        return len(conns)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._listener.close()
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            client.settimeout(None)
            if self.mode == REFUSE:
                _reset(client)
            elif self.mode == HANG:
                with self._lock:
                    self._open.append(_Conn((client,)))
            else:
                self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            _reset(client)
            return
        for sock in (client, upstream):  # no Nagle delays: the proxy must not add latency
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn((client, upstream))
        with self._lock:
            self._open.append(conn)
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst, conn), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, conn: _Conn) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not conn.stalled:
                    dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            if conn not in self._open:
                return  # cut: already closed
            self._open.remove(conn)
        for sock in conn.socks:
            _close(sock)
