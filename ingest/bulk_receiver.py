"""The bulk receiver: the receiver process's MQTT side without a Python call a packet (``WANLI_INGEST_RECEIVER=bulk``).

Everything but the MQTT connection is ``ingest.receiver._Receiver``'s, unchanged: the pipe
protocol to ingest (batches out; ``A`` safe, ``G`` the grant's deadline, ``Q`` stop in), the
backpressure (at most ``max_batches_in_flight`` batches out, then the socket is not read), the
alarm lane's topics acknowledged at once and not handed over, and the grant (leave when it
passes). What differs is how messages come in and how they are acknowledged:

- a plain TCP socket read with ``recv_into`` into a 4 MiB buffer, every complete frame parsed
  by the ``mqtt5`` codec (Rust) in one loop (``ingest.mqtt_frames.FrameBuffer``), one receive
  timestamp a read; paho reads a packet per call and calls back into Python for each
  (docs/benchmarks.md: 1.3 µs of CPU a message against paho's 19–21 at QoS 1);
- a batch's PUBACKs joined into one write once ingest said the batch is safe.

It speaks MQTT 5 (the codec speaks nothing else; the rest of the service stays on 3.1.1):

- CONNECT with the login (never logged), clean start false and a session expiry that does not
  run out (as a 3.1.1 persistent session: the broker's ``persistent_client_expiration`` bounds
  it), Receive Maximum as the window (``batch_size * max_batches_in_flight``, at most 65,535),
  a Maximum Packet Size as large as the buffer (above the broker's own, so the broker never
  drops a message as too large for us: it reaches ingest, which dead-letters it as oversized);
- every CONNACK and SUBACK reason code checked: a refused login or subscription is told to
  ingest as a ``D`` frame naming the reason (the service shows the lane as not subscribed), logged
  as an error, and retried with ``foundation.background.Backoff``; every connection subscribes;
- keepalive: a PINGREQ when nothing was sent for the keepalive (the broker's Server Keep Alive
  overriding ours), also while it waits for ingest (backpressure), so a long wait does not cost
  the connection; the connection is dropped when nothing at all came back within a keepalive of
  a PINGREQ (the broker froze, or the network between);
- **a packet id acknowledged once per delivery.** A batch remembers the connection it came on;
  its PUBACKs are written only on that connection. After a reconnect the broker sends again,
  with DUP set and their original ids, every message not yet acknowledged; those copies come
  in new batches and are acknowledged with them. A PUBACK of an old connection's id on the new
  one could acknowledge a different message the broker has since given that id, one ingest
  has not made safe. (Ingest drops the second copy of a message it already stored: sequence
  numbers, ``duplicates`` in its counters.)
- a PUBLISH whose topic is not UTF-8 (the codec panics on it) is read by hand, its topic with
  U+FFFD (ingest dead-letters it, as with paho), acknowledged like any other once safe, and
  counted: it cannot stall the session (``ingest.mqtt_frames``);
- a clean stop sends DISCONNECT (normal: the session stays, with whatever was not acknowledged).

No TLS: ``ReceiverConfig`` carries none (the service's MQTT connections are plain TCP on the
host or its private network; foundation/mqtt.py), so there is nothing to wrap.
"""

from __future__ import annotations

import logging
import random
import select
import socket
import time
from typing import Any

import mqtt5

from foundation.background import Backoff
from foundation.service_clock import wall_ms
from ingest.mqtt_frames import BUFFER_BYTES, FrameBuffer, MalformedFrame
from ingest.receiver import DISCONNECTED, SUBSCRIBED, ReceiverConfig, _Receiver, main

log = logging.getLogger(__name__)

SESSION_NEVER_EXPIRES = 0xFFFF_FFFF  # MQTT 5's "does not expire": a 3.1.1 persistent session's life
HANDSHAKE_TIMEOUT_S = 10.0
MAX_RECEIVE_WINDOW = 65_535  # Receive Maximum is two bytes


class Refused(Exception):
    """The broker refused the login or a subscription (its reason code in the message)."""


class ConnectionLost(Exception):
    """The connection ended (the reason in the message); the session stays at the broker."""


def receive_window(cfg: ReceiverConfig) -> int:
    """Receive Maximum: as many unacknowledged QoS 1 messages as the receiver may hold for ingest."""
    return max(1, min(MAX_RECEIVE_WINDOW, cfg.batch_size * cfg.max_batches_in_flight))


def _name(code: Any) -> str:
    try:
        return f"{code.name} ({int(code)})"
    except (AttributeError, TypeError, ValueError):
        return str(code)


class BulkReceiver(_Receiver):
    """``_Receiver`` with its MQTT side on a plain socket and the mqtt5 codec instead of paho."""

    def _setup_client(self) -> None:
        self._sock: socket.socket | None = None
        self._frames = FrameBuffer()
        self._connection_no = 0  # which connection a batch came on: its PUBACKs go on that one only
        self._batch_connection: dict[int, int] = {}
        self._keepalive_s = float(self._cfg.keepalive_s)
        self._last_sent = self._last_received = time.monotonic()
        self._ping_sent: float | None = None
        self._unread = False  # the socket went unread (a wait) since the serving loop last looked at it
        self._unsent = bytearray()  # PUBACKs of the alarm lane's topics, written at the end of the turn
        self._others: list[Any] = []
        self._publishes: list[tuple[str, bytes, int, int | None]] = []
        self.bad_topics = 0

    # -- writing -----------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Write all of ``data`` (blocking: nothing else waits on this thread meanwhile). OSError: the connection is
        gone."""
        sock = self._sock
        if sock is None:
            raise ConnectionLost("not connected")
        sock.setblocking(True)
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            sock.sendall(data)
        finally:
            sock.setblocking(False)
        self._last_sent = time.monotonic()

    def _acknowledge(self, batch_no: int) -> None:
        mids, size = self._in_flight.pop(batch_no, ((), 0))
        self._pending -= size
        if self._batch_connection.pop(batch_no, None) != self._connection_no or not mids or self._sock is None:
            return  # came on a connection that has ended: the broker sends those again, and they are acked then
        puback = mqtt5.PubAckPacket
        try:
            self._send(b"".join([puback(mid).write() for mid in mids]))
        except (OSError, ConnectionLost) as exc:  # the serving loop notices the connection is gone
            log.warning("could not acknowledge batch %d to the broker: %s", batch_no, exc)
            self._drop_socket()

    def _ship(self) -> None:
        before = self._batch_no
        super()._ship()
        if self._batch_no != before:
            self._batch_connection[self._batch_no] = self._connection_no

    def _take_acks(self, timeout_s: float) -> None:
        super()._take_acks(timeout_s)
        if timeout_s > 0:  # waiting: for ingest (backpressure) or before a reconnection, the socket not read
            # A PINGREQ each keepalive meanwhile, so that a long wait does not cost the connection (and a redelivery
            # of the window); its answer waits behind the messages, so silence is judged only once the socket has
            # been looked at again (``_serve_connection``).
            self._unread = True
            self._ping_if_due(unread=True)

    # -- messages ----------------------------------------------------------------------------

    def _take(self, publishes: list[tuple[str, bytes, int, int | None]]) -> None:
        """Messages just parsed into the batch (shipped whenever it is full); the other lane's acknowledged."""
        if not publishes:
            return
        ms = wall_ms()  # one receive stamp a read, not a call a message
        suffixes, batch, size = self._elsewhere_suffixes, self._batch, self._cfg.batch_size
        for topic, payload, qos, mid in publishes:
            if suffixes and topic.endswith(suffixes) and self._taken_elsewhere(topic):
                if qos and mid:  # the other lane's own session holds its copy until that lane has made it safe
                    self._unsent += mqtt5.PubAckPacket(mid).write()
                continue
            if not batch:
                self._batch_started = time.monotonic()
            batch.append((topic, payload, ms, qos, mid or 0))
            if len(batch) >= size:
                self._ship()
                batch = self._batch
                if self._stopping:
                    break
        publishes.clear()

    def _read(self) -> bool:
        """One ``recv_into`` and every complete frame in the buffer parsed; False when nothing was there to read."""
        sock = self._sock
        assert sock is not None
        try:
            n = sock.recv_into(self._frames.space())
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            raise ConnectionLost(f"read failed: {exc}") from exc
        if n == 0:
            raise ConnectionLost("the broker closed the connection")
        self._last_received = time.monotonic()
        self._frames.filled(n)
        try:
            self._frames.frames(self._publishes, self._others)
        except MalformedFrame as exc:
            raise ConnectionLost(f"a malformed frame from the broker: {exc}") from exc
        if self._frames.bad_topics != self.bad_topics:
            log.error("%d message(s) with a topic that is not UTF-8 (passed on to be dead-lettered)",
                      self._frames.bad_topics - self.bad_topics)
            self.bad_topics = self._frames.bad_topics
        return True

    def _handle_others(self) -> None:
        for packet in self._others:
            if isinstance(packet, mqtt5.PingRespPacket):
                self._ping_sent = None
            elif isinstance(packet, mqtt5.DisconnectPacket):
                self._others.clear()
                raise ConnectionLost(f"the broker disconnected: {_name(packet.reason_code)}"
                                     + (f": {packet.reason_str}" if getattr(packet, "reason_str", None) else ""))
            # SUBACKs of a subscription already confirmed and the like: nothing to do
        self._others.clear()

    # -- keepalive ---------------------------------------------------------------------------

    def _ping_if_due(self, unread: bool = False) -> None:
        """A PINGREQ when nothing was sent for the keepalive: once until its answer, or each keepalive while the
        socket goes ``unread`` (the answer waits behind the messages); the first unanswered one's time is kept."""
        if self._sock is None or not self._keepalive_s:
            return
        now = time.monotonic()
        if now - self._last_sent >= self._keepalive_s and (self._ping_sent is None or unread):
            try:
                self._send(mqtt5.PingReqPacket().write())
            except (OSError, ConnectionLost):
                self._drop_socket()
                return
            if self._ping_sent is None:
                self._ping_sent = now

    def _silent_too_long(self) -> bool:
        """A PINGREQ went out a keepalive ago and nothing at all has come back since (the socket read meanwhile)."""
        ping = self._ping_sent
        return (ping is not None and time.monotonic() - ping >= self._keepalive_s
                and self._last_received < ping)

    # -- the connection ----------------------------------------------------------------------

    def _drop_socket(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def _handshake_read(self, kind: type, deadline: float) -> Any:
        """Read until a packet of ``kind`` arrives; messages that come before it (a session's backlog follows the
        CONNACK) are kept in ``self._publishes``."""
        sock = self._sock
        assert sock is not None
        while True:
            for i, packet in enumerate(self._others):
                if isinstance(packet, kind):
                    del self._others[:i + 1]
                    return packet
                if isinstance(packet, mqtt5.DisconnectPacket):
                    raise ConnectionLost(f"the broker disconnected: {_name(packet.reason_code)}")
            self._others.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConnectionLost(f"no {kind.__name__} within {HANDSHAKE_TIMEOUT_S:.0f} s")
            readable, _, _ = select.select([sock], [], [], left)
            if readable:
                self._read()

    def _connect(self) -> None:
        """Open the connection, log in and subscribe. Refused: the broker said no; ConnectionLost, OSError: retry."""
        cfg = self._cfg
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
        sock = socket.create_connection((cfg.host, cfg.port), timeout=HANDSHAKE_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._frames = FrameBuffer()
        self._others.clear()
        self._publishes.clear()
        self._connection_no += 1
        self._ping_sent = None
        self._keepalive_s = float(cfg.keepalive_s)
        self._send(mqtt5.ConnectPacket(
            cfg.client_id, username=cfg.username or None, password=cfg.password.encode() if cfg.password else None,
            clean_start=False, keep_alive=cfg.keepalive_s, session_expiry_interval=SESSION_NEVER_EXPIRES,
            receive_max=receive_window(cfg), max_packet_size=BUFFER_BYTES).write())
        connack = self._handshake_read(mqtt5.ConnAckPacket, deadline)
        if connack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            raise Refused(f"login refused: {_name(connack.reason_code)}"
                          + (f": {connack.reason_str}" if connack.reason_str else ""))
        if connack.server_keep_alive is not None:  # the broker's word overrides ours
            self._keepalive_s = float(connack.server_keep_alive)
        self._send(mqtt5.SubscribePacket(1, [
            mqtt5.TopicFilter(f, max_qos=mqtt5.QoS(cfg.subscribe_qos)) for f in cfg.topic_filters]).write())
        suback = self._handshake_read(mqtt5.SubAckPacket, deadline)
        refused = [(f, rc) for f, rc in zip(cfg.topic_filters, suback.reason_codes, strict=False) if int(rc) >= 0x80]
        if refused or len(suback.reason_codes) != len(cfg.topic_filters):
            raise Refused("subscription refused: " + ", ".join(f"{f}: {_name(rc)}" for f, rc in refused)
                          + (f" ({suback.reason_str})" if suback.reason_str else ""))
        log.info("MQTT 5 connected to %s:%s (session %s), subscribed to %s", cfg.host, cfg.port,
                 "resumed" if connack.session_present else "new", ", ".join(cfg.topic_filters))

    def _report(self, kind: bytes) -> None:
        try:
            self._conn.send_bytes(kind)
        except OSError:  # ingest is gone; the loop notices and stops
            self._stopping = True

    def run(self) -> None:
        cfg = self._cfg
        backoff = Backoff(1.0, 30.0)  # jittered: workers do not reconnect in step
        while not self._stopping and self._permitted():
            try:
                self._connect()
            except Refused as exc:
                self._drop_socket()
                delay = backoff.next_s()
                log.error("MQTT %s:%s: %s; retrying in %.0f s", cfg.host, cfg.port, exc, delay)
                self._report(DISCONNECTED + str(exc).encode())
                self._take_acks(timeout_s=delay)
                continue
            except (OSError, ConnectionLost) as exc:
                self._drop_socket()
                delay = backoff.next_s()
                log.warning("MQTT connect to %s:%s failed: %s; retrying in %.0f s", cfg.host, cfg.port, exc, delay)
                self._take_acks(timeout_s=delay)
                continue
            backoff.reset()
            self._take_acks(timeout_s=0)  # G frames that came during the handshake (a slow broker's) count first
            if self._stopping or not self._permitted():
                break
            self._report(SUBSCRIBED)
            try:
                self._take(self._publishes)  # what came with the CONNACK and SUBACK
                self._serve_connection()
            except (OSError, ConnectionLost) as exc:
                self._drop_socket()
                if not self._stopping:
                    log.warning("MQTT connection to %s:%s lost (%s); reconnecting", cfg.host, cfg.port, exc)
                    self._report(DISCONNECTED + str(exc).encode())
                    time.sleep(random.uniform(0.5, 1.5))
        if self._sock is not None:
            try:  # clean: unacknowledged messages stay queued at the broker for the session
                self._send(mqtt5.DisconnectPacket().write())
            except (OSError, ConnectionLost):
                pass
            self._drop_socket()
        self._conn.close()

    def _serve_connection(self) -> None:
        cfg = self._cfg
        next_ack_check = 0.0
        while not self._stopping and self._permitted():
            sock = self._sock
            if sock is None:
                raise ConnectionLost("the connection broke while acknowledging")
            wait_s = cfg.batch_wait_s if self._batch else 0.1
            readable, _, _ = select.select([sock, self._conn], [], [], wait_s)
            self._unread = False
            if sock in readable and self._read():
                if self._others:
                    self._handle_others()
                self._take(self._publishes)
            if self._unsent:
                unsent, self._unsent = bytes(self._unsent), bytearray()
                self._send(unsent)
            next_ack_check = self._serve_ingest(self._conn in readable, next_ack_check)
            self._ping_if_due()
            if not self._unread and self._silent_too_long():
                raise ConnectionLost(f"no PINGRESP, nor anything else, within {self._keepalive_s:.0f} s of a PINGREQ")


if __name__ == "__main__":  # python -m ingest.bulk_receiver FD (ReceiverProcess starts it)
    main(receiver_type=BulkReceiver)
