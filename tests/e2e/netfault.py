"""Network faults on loopback for the end-to-end tests: a TCP proxy that can go silent
mid-conversation, a port that completes TCP handshakes and then never answers, and a DNS
server that reads queries and never replies. Each runs in threads of the test process, binds
only to 127.0.0.0/8, and stops with close()."""
import select
import socket
import threading
import time


class Proxy:
    """Forwards 127.0.0.1:port to the target port. go_silent(), or the first client bytes that
    contain `silent_on`, make it stop forwarding both ways while every connection stays open
    (a partition or a frozen server as the client sees it): nothing is read, written or
    closed, and new connections are no longer accepted. `silenced` is set at that moment, and
    `silenced_at` holds its time.monotonic()."""

    def __init__(self, target_port, silent_on=None):
        self.target_port = target_port
        self.silent_on = silent_on
        self.silenced = threading.Event()
        self.silenced_at = None
        self._closing = False
        self._listen = socket.socket()
        self._listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listen.bind(("127.0.0.1", 0))
        self._listen.listen(64)
        self.port = self._listen.getsockname()[1]
        self._pairs = {}  # socket -> its peer
        self._clients = set()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def go_silent(self):
        if not self.silenced.is_set():
            self.silenced_at = time.monotonic()
            self.silenced.set()

    def _accept(self):
        client, _ = self._listen.accept()
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        self._clients.add(client)
        self._pairs[client] = upstream
        self._pairs[upstream] = client

    def _forward(self, s):
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        peer = self._pairs.get(s)
        if not data:
            for x in (s, peer):
                self._pairs.pop(x, None)
                self._clients.discard(x)
                if x:
                    x.close()
            return
        if self.silent_on and s in self._clients and self.silent_on in data:
            self.go_silent()  # this chunk is swallowed: the server never sees it
            return
        peer.sendall(data)

    def _loop(self):
        while not self._closing:
            if self.silenced.is_set():
                time.sleep(0.05)
                continue
            socks = [self._listen, *self._pairs]
            try:
                readable, _, _ = select.select(socks, [], [], 0.05)
            except (OSError, ValueError):
                continue
            for s in readable:
                if self.silenced.is_set():
                    break
                if s is self._listen:
                    self._accept()
                elif s in self._pairs:
                    self._forward(s)

    def close(self):
        self._closing = True
        self._thread.join(timeout=5)
        for s in list(self._pairs):
            s.close()
        self._listen.close()


class BlackHole:
    """A listening port that never accepts: the kernel completes the TCP handshake (up to the
    backlog), the startup packet is buffered, and no byte ever comes back."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]

    def close(self):
        self._sock.close()


class SilentDNS:
    """A UDP and TCP name server on 127.X.Y.Z:53 that reads every query and never replies.
    `queried` is set when the first query arrives, `queried_at` holds its time.monotonic()."""

    def __init__(self, address):
        self.address = address
        self.queried = threading.Event()
        self.queried_at = None
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind((address, 53))
        self._tcp = socket.socket()
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((address, 53))
        self._tcp.listen(16)
        self._closing = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        held = []
        while not self._closing:
            readable, _, _ = select.select([self._udp, self._tcp], [], [], 0.05)
            for s in readable:
                if s is self._udp:
                    s.recvfrom(4096)
                else:
                    conn, _ = s.accept()
                    held.append(conn)  # kept open, never answered
                if not self.queried.is_set():
                    self.queried_at = time.monotonic()
                    self.queried.set()
        for c in held:
            c.close()

    def close(self):
        self._closing = True
        self._thread.join(timeout=5)
        self._udp.close()
        self._tcp.close()
