"""A TCP relay in front of a real broker that cuts one connection in the middle of a batch of notices.

The dispatcher connects to the relay instead of the broker; the relay reads the MQTT packets each way
(fixed header and remaining length only) and counts the client's PUBLISHes that carry a ``notice_id``
(a notice, not the witness's marker). Armed with ``cut_after(k)``, the connection is cut when the
client sends its (k+1)-th notice from then on, which the broker never gets:

- ``clean=True``: the cut waits until the broker's PUBACKs for the first k have reached the client, so
  exactly k were sent and confirmed, and none of the rest reached the broker;
- ``clean=False``: nothing the broker writes reaches the client from the k-th notice on (its PUBACK, and
  the witness's copy of it, are lost with the connection): the k-th notice reached the broker and its
  subscribers, and the client was never told.

Once cut, the relay passes everything through untouched (the client's next connection).
"""

from __future__ import annotations

import socket
import threading
import time

PUBLISH, PUBACK = 3, 4


def read_packet(sock: socket.socket) -> bytes:
    """One whole MQTT packet; b"" when the connection ended."""
    head = _read(sock, 1)
    if not head:
        return b""
    length_bytes, length, shift = b"", 0, 0
    while True:
        byte = _read(sock, 1)
        if not byte:
            return b""
        length_bytes += byte
        length += (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    body = _read(sock, length) if length else b""
    return head + length_bytes + body if len(body) == length else b""


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except OSError:
            return b""
        if not chunk:
            return b""
        data += chunk
    return data


class CuttingRelay:
    def __init__(self, broker_host: str, broker_port: int) -> None:
        self._broker = (broker_host, broker_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", self._listener.getsockname()[1]
        self.armed: tuple[int, bool] | None = None  # (k, clean)
        self.counted = 0  # notices the broker got since it was armed
        self.cut = threading.Event()  # a connection was cut
        self._closing = False
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def cut_after(self, notices: int, *, clean: bool) -> None:
        self.counted = 0
        self.armed = (notices, clean)

    def close(self) -> None:
        self._closing = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            broker = socket.create_connection(self._broker)
            for s in (client, broker):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            Connection(self, client, broker).start()


class Connection:
    def __init__(self, relay: CuttingRelay, client: socket.socket, broker: socket.socket) -> None:
        self._relay, self._client, self._broker = relay, client, broker
        self._mute = False  # what the broker writes is dropped, not passed on
        self._pubacks = 0  # the broker's PUBACKs passed on to the client

    def start(self) -> None:
        threading.Thread(target=self._upstream, name="relay-up", daemon=True).start()
        threading.Thread(target=self._downstream, name="relay-down", daemon=True).start()

    def _upstream(self) -> None:
        relay = self._relay
        while packet := read_packet(self._client):
            armed = relay.armed
            if armed is not None and packet[0] >> 4 == PUBLISH and b'"notice_id":' in packet:
                limit, clean = armed
                if relay.counted == limit:  # the (k+1)-th: never reaches the broker
                    if clean:
                        deadline = time.monotonic() + 10
                        while self._pubacks < limit and time.monotonic() < deadline:
                            time.sleep(0.005)
                    # the client reads the PUBACKs, and the broker the k-th notice, before the cut: a connection
                    # closed with data unread is reset, and a reset may discard what the other side had not read
                    time.sleep(0.3)
                    self._drain(self._client)
                    relay.armed = None
                    relay.cut.set()
                    self._close()
                    return
                relay.counted += 1
                if relay.counted == limit and not clean:
                    self._mute = True  # the k-th's PUBACK (and anything after it) never reaches the client
            try:
                self._broker.sendall(packet)
            except OSError:
                break
        self._close()

    def _downstream(self) -> None:
        while packet := read_packet(self._broker):
            if self._mute:
                continue
            try:
                self._client.sendall(packet)
            except OSError:
                break
            if packet[0] >> 4 == PUBACK and self._relay.armed is not None:
                self._pubacks += 1
        self._close()

    @staticmethod
    def _drain(sock: socket.socket) -> None:
        """Read what the peer sent and nobody read (so that closing sends a FIN, not a reset)."""
        sock.setblocking(False)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    def _close(self) -> None:
        for s in (self._client, self._broker):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
