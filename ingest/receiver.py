"""The MQTT receiver: paho-mqtt in a process of its own, handing batches to ingest over a pipe.

Why a process: in one process, paho's network thread and the batch worker share one GIL.
paho reads a packet per ``select()`` and each fixed header a byte at a time, so every
message costs several system calls, each giving up and re-taking the GIL while the worker
holds it; measured with py-spy, the two threads spent most of their time waiting for each
other (docs/benchmarks.md). Here the receiver has a core's worth of interpreter to itself
and ingest's worker never waits on the network.

Nothing is acknowledged to the broker until ingest says the batch is safe, so the rules of
the in-process consumer hold unchanged: a crash anywhere (receiver, ingest, both) means
redelivery, not loss. Backpressure: at most ``max_batches_in_flight`` batches wait for
ingest; at that point the receiver stops reading its socket and TCP pushes back to the
broker, which keeps the messages for the persistent session.

The pipe protocol, one ``send_bytes`` message each::

    ingest → receiver   first, its configuration: JSON of ``ReceiverConfig`` (with the MQTT
                        password, so never on the command line, where ``ps`` shows it to all)
    receiver → ingest   b"B" + msgpack [batch_no, pending, [[topic, payload, wall_ms, qos, mid], ...]]
                        b"S"  subscribed        b"D" + reason  disconnected
                        b"P" + msgpack pending  (after acknowledgements: what it still holds)
    ingest → receiver   b"A" + msgpack batch_no  (safe: acknowledge its QoS 1 messages)
                        b"G" + msgpack deadline  (the ingest role is held until then: time.monotonic(),
                                                  the host's clock both processes read)
                        b"Q"  stop

**Leave when ingest cannot say it still holds the role.** With several instances
(foundation/leases.py) only the ``ingest`` role's holder may hold the MQTT sessions. With
``grant_s`` set, the receiver stays connected only while ingest keeps telling it (``G``) until
when its lease runs; when that time passes without a word (ingest froze, or lost its lease) it
disconnects and exits, before the lease can pass to another instance, so two instances never
take the session from each other. The deadline is absolute (the host's monotonic clock), so a
frame read late, after a freeze, extends nothing.

``pending`` is how many messages the receiver holds that ingest has not yet finished (the
backlog the service reports). ``wall_ms`` is the receiver's wall clock; ingest maps it into
its own clock (tests run the service on a fake one).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from foundation.background import Backoff
from foundation.mqtt import Client, MQTTErrorCode, MQTTMessage, TopicFilters, new_client
from foundation.service_clock import wall_ms

log = logging.getLogger(__name__)

BATCH, SUBSCRIBED, DISCONNECTED, PENDING, ACK, QUIT, GRANT = b"B", b"S", b"D", b"P", b"A", b"Q", b"G"

# How many packets to read after one select() says the socket is readable: paho's loop reads
# one per select, which costs a system call per message for nothing when a backlog is waiting.
READS_PER_WAKEUP = 64


@dataclass(frozen=True)
class ReceiverConfig:
    host: str
    port: int
    topic_filters: list[str]  # already $share/-prefixed when shared
    client_id: str
    username: str = ""
    password: str = ""
    batch_size: int = 2000
    batch_wait_s: float = 0.02
    max_batches_in_flight: int = 25
    keepalive_s: int = 30
    log_level: int = logging.INFO
    subscribe_qos: int = 1
    # Topics another lane takes (the alarm lane's): acknowledged at once and not handed over here.
    leave_to_other_lane: tuple[str, ...] = ()
    # Seconds it may stay connected before ingest's first G frame; 0: for good (one instance, no lease).
    grant_s: float = 0.0
    # "paho" (this module), or "bulk": a plain socket read in large chunks, MQTT 5 frames parsed in bulk by mqtt5
    # (ingest/bulk_receiver.py); the same pipe protocol either way (WANLI_INGEST_RECEIVER).
    implementation: str = "paho"


class _Receiver:
    """The receiver's side: one thread, its own loop over the MQTT socket and the pipe."""

    def __init__(self, conn: Connection, cfg: ReceiverConfig) -> None:
        self._conn = conn
        self._cfg = cfg
        self._batch: list[tuple[str, bytes, int, int, int]] = []
        self._batch_started = 0.0
        self._batch_no = 0
        self._in_flight: dict[int, tuple[list[int], int]] = {}  # batch no → (its QoS 1 message ids, its size)
        self._pending = 0
        self._stopping = False
        self._permitted_until = time.monotonic() + cfg.grant_s if cfg.grant_s > 0 else float("inf")
        self._encoder = msgspec.msgpack.Encoder()
        self._elsewhere = TopicFilters(cfg.leave_to_other_lane)
        # a cheap first test: every filter of the other lane ends in a fixed last level
        self._elsewhere_suffixes = tuple({"/" + f.rsplit("/", 1)[-1] for f in cfg.leave_to_other_lane})
        self._setup_client()

    def _setup_client(self) -> None:
        """The MQTT side: paho here; the bulk receiver (ingest/bulk_receiver.py) has its own."""
        cfg = self._cfg
        # persistent session: the broker keeps our QoS 1 messages while we are away
        self._client = new_client(cfg.client_id, username=cfg.username, password=cfg.password, clean_session=False,
                                  manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # -- paho callbacks ------------------------------------------------------------------

    def _on_connect(self, client: Client, _userdata, _flags, reason_code, _props) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            log.error("MQTT connect to %s:%s refused: %s", self._cfg.host, self._cfg.port, reason_code)
            return
        log.info("MQTT connected to %s:%s, subscribing to %s", self._cfg.host, self._cfg.port,
                 ", ".join(self._cfg.topic_filters))
        client.subscribe([(f, self._cfg.subscribe_qos) for f in self._cfg.topic_filters])

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _props) -> None:  # type: ignore[no-untyped-def]
        if any(rc.is_failure for rc in reason_codes):
            log.error("MQTT subscription to %s refused: %s", self._cfg.topic_filters, reason_codes)
            return
        self._conn.send_bytes(SUBSCRIBED)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props) -> None:  # type: ignore[no-untyped-def]
        if not self._stopping:
            log.warning("MQTT disconnected from %s:%s (%s); reconnecting", self._cfg.host, self._cfg.port, reason_code)
            try:
                self._conn.send_bytes(DISCONNECTED + str(reason_code).encode())
            except OSError:  # ingest is gone; the loop notices and stops
                self._stopping = True

    def _on_message(self, _client, _userdata, msg: MQTTMessage) -> None:  # type: ignore[no-untyped-def]
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # not UTF-8: keep it, the topic parser rejects it with a reason
            topic = msg._topic.decode("utf-8", "replace")  # noqa: SLF001 - the raw bytes are only reachable here
        if self._elsewhere_suffixes and topic.endswith(self._elsewhere_suffixes) and self._taken_elsewhere(topic):
            if msg.qos:  # the other lane's own session holds its copy until that lane has made it safe
                self._client.ack(msg.mid, msg.qos)
            return
        if not self._batch:
            self._batch_started = time.monotonic()
        self._batch.append((topic, msg.payload, wall_ms(), msg.qos, msg.mid))
        if len(self._batch) >= self._cfg.batch_size:
            self._ship()

    def _taken_elsewhere(self, topic: str) -> bool:
        return self._elsewhere.match(topic)

    # -- batches and acknowledgements --------------------------------------------------------

    def _ship(self) -> None:
        """Hand the batch to ingest; first wait (not reading the socket: backpressure) while too many are out."""
        while len(self._in_flight) >= self._cfg.max_batches_in_flight and not self._stopping and self._permitted():
            self._take_acks(timeout_s=0.2)
        if self._stopping:
            return
        batch, self._batch = self._batch, []
        self._batch_no += 1
        self._in_flight[self._batch_no] = ([m[4] for m in batch if m[3] > 0], len(batch))
        self._pending += len(batch)
        self._conn.send_bytes(BATCH + self._encoder.encode((self._batch_no, self._pending, batch)))

    def _take_acks(self, timeout_s: float) -> None:
        """Acknowledge to the broker every batch ingest has made safe (waiting up to ``timeout_s`` for one)."""
        try:
            ready = self._conn.poll(timeout_s)
            acked = False
            while ready:
                frame = self._conn.recv_bytes()
                if frame[:1] == ACK:
                    self._acknowledge(msgspec.msgpack.decode(frame[1:]))
                    acked = True
                elif frame[:1] == GRANT:
                    self._permitted_until = float(msgspec.msgpack.decode(frame[1:]))
                elif frame[:1] == QUIT:
                    self._stopping = True
                    return
                ready = self._conn.poll(0)
            if acked:
                self._conn.send_bytes(PENDING + self._encoder.encode(self._pending))
        except (EOFError, OSError):  # ingest is gone: stop, acknowledging nothing more
            log.warning("ingest closed the pipe; the receiver stops")
            self._stopping = True

    def _serve_ingest(self, pipe_readable: bool, next_ack_check: float) -> float:
        """A turn's ingest side, once the socket was served (both receivers): ingest's word taken (its
        acknowledgements at least every 2 ms while batches are out), the batch shipped when due; returns when
        to look for acknowledgements next."""
        now = time.monotonic()
        if pipe_readable or (self._in_flight and now >= next_ack_check):
            self._take_acks(timeout_s=0)
            next_ack_check = now + 0.002
        # A partial batch goes at once when ingest is idle (an alarm alone waits for nothing),
        # else when it has waited batch_wait_s.
        if self._batch and (not self._in_flight or now - self._batch_started >= self._cfg.batch_wait_s):
            self._ship()
        return next_ack_check

    def _permitted(self) -> bool:
        """Whether ingest still holds the role, as far as it last said; if not, stop (disconnecting)."""
        if time.monotonic() < self._permitted_until:
            return True
        if not self._stopping:
            log.error("no word from ingest that it still holds the ingest role (it froze, or lost its lease): "
                      "leaving the session to the next holder")
            self._stopping = True
        return False

    def _acknowledge(self, batch_no: int) -> None:
        mids, size = self._in_flight.pop(batch_no, ((), 0))
        for mid in mids:
            self._client.ack(mid, 1)
        self._pending -= size

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        client, cfg = self._client, self._cfg
        backoff = Backoff(1.0, 30.0)  # jittered: workers do not reconnect in step
        while not self._stopping and self._permitted():
            try:
                client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
                backoff.reset()
            except OSError as exc:
                delay = backoff.next_s()
                log.warning("MQTT connect to %s:%s failed: %s; retrying in %.0f s", cfg.host, cfg.port, exc, delay)
                self._take_acks(timeout_s=delay)
                continue
            self._serve_connection()
        if client.is_connected():
            client.disconnect()  # clean: unacknowledged messages stay queued at the broker for the session
        self._conn.close()

    def _serve_connection(self) -> None:
        client, cfg = self._client, self._cfg
        next_ack_check = 0.0
        while not self._stopping and self._permitted():
            sock = client.socket()
            if sock is None:
                break
            wait_s = cfg.batch_wait_s if self._batch else 0.1
            readable, _, _ = select.select([sock, self._conn], [sock] if client.want_write() else [], [], wait_s)
            rc = pump(client, sock in readable)
            next_ack_check = self._serve_ingest(self._conn in readable, next_ack_check)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.warning("MQTT connection to %s:%s lost (%s); reconnecting", cfg.host, cfg.port, rc)
                break
        if not self._stopping:
            time.sleep(random.uniform(0.5, 1.5))


def pump(client: Client, readable: bool) -> MQTTErrorCode:
    """One turn of paho's network loop, driven by hand: up to ``READS_PER_WAKEUP`` reads when its socket is
    ``readable`` (each read hands over one packet), then what it wants to write and its keepalive. Anything but
    success: the connection is lost."""
    rc = MQTTErrorCode.MQTT_ERR_SUCCESS
    if readable:
        for _ in range(READS_PER_WAKEUP):
            rc = client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                break
    if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and client.socket() is not None:
        if client.want_write():
            rc = client.loop_write()
        rc = rc or client.loop_misc()
    return rc


# The receiver process's module for each implementation (ReceiverConfig.implementation).
MODULES = {"paho": "ingest.receiver", "bulk": "ingest.bulk_receiver"}


def main(argv: list[str] | None = None, receiver_type: type[_Receiver] = _Receiver) -> None:
    """The receiver process: ``python -m ingest.receiver FD`` (started by :class:`ReceiverProcess`; the bulk one
    is ``python -m ingest.bulk_receiver FD``, which calls this with its own ``receiver_type``).

    Its configuration, password included, is the first message on the socket ``FD``: the
    command line of a process is readable by every user of the host (``ps``, /proc/PID/cmdline).
    """
    (fd,) = (argv or sys.argv[1:])[:1]
    conn = Connection(int(fd))
    try:
        if not conn.poll(30):
            raise SystemExit("ingest.receiver: no configuration arrived on the socket within 30 s")
        values = json.loads(conn.recv_bytes())
    except (EOFError, OSError):  # ingest went away before it sent one
        raise SystemExit("ingest.receiver: the socket closed before the configuration arrived") from None
    except KeyboardInterrupt:
        return
    cfg = ReceiverConfig(**{**values, "leave_to_other_lane": tuple(values["leave_to_other_lane"])})
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s[receiver]: %(message)s")
    if receiver_type is _Receiver and cfg.implementation != "paho":
        raise SystemExit(f"ingest.receiver: the {cfg.implementation!r} receiver is started as "
                         f"python -m {MODULES.get(cfg.implementation)}")
    try:
        receiver_type(conn, cfg).run()
    except KeyboardInterrupt:  # the terminal's Ctrl-C reaches the whole process group; ingest stops us
        pass


_SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|KEY", re.IGNORECASE)


def _without_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment minus the service's secrets (WANLI_MQTT_PASSWORD and the like): the receiver needs none."""
    return {k: v for k, v in environ.items() if not (k.startswith("WANLI_") and _SECRET_NAME.search(k))}


class ReceiverProcess:
    """Ingest's side: starts the receiver, takes its batches, tells it which are safe."""

    def __init__(self, cfg: ReceiverConfig) -> None:
        self._cfg = cfg
        self._decoder = msgspec.msgpack.Decoder(tuple[int, int, list[tuple[str, bytes, int, int, int]]])
        self._conn: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.pending = 0  # as the receiver last reported it (with each batch, and after each acknowledgement)
        self._send_lock = threading.Lock()  # the worker acknowledges, the granter grants

    def start(self) -> None:
        # A plain child process (not multiprocessing's spawn, which re-runs the parent's main
        # script): it inherits one end of a socket pair and reads its settings, as JSON, from it:
        # the MQTT password must not be on its command line (or in its environment).
        self.pending = 0
        module = MODULES.get(self._cfg.implementation)
        if module is None:
            raise ValueError(f"unknown MQTT receiver {self._cfg.implementation!r}: one of {', '.join(MODULES)}")
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-m", module, str(theirs.fileno())],
            # the same sys.path as ours: the receiver runs the same code as the ingest that started it
            pass_fds=(theirs.fileno(),), env={**_without_secrets(os.environ), "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send_bytes(json.dumps(asdict(self._cfg)).encode())  # a few hundred bytes: the socket buffer takes it

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def connection(self) -> Connection | None:
        return self._conn

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def next_frame(self, timeout_s: float) -> tuple[bytes, Any] | None:
        """The receiver's next frame: (BATCH, (batch_no, pending, messages)), (SUBSCRIBED, None),
        (DISCONNECTED, reason); None when nothing came in ``timeout_s``. EOFError: the receiver is gone."""
        assert self._conn is not None
        if not self._conn.poll(timeout_s):
            return None
        frame = self._conn.recv_bytes()
        kind = frame[:1]
        if kind == PENDING:
            self.pending = msgspec.msgpack.decode(frame[1:])
            return kind, None
        if kind == BATCH:
            batch_no, pending, messages = self._decoder.decode(memoryview(frame)[1:])
            self.pending = pending
            return BATCH, (batch_no, messages)
        return kind, frame[1:].decode("utf-8", "replace")

    def acknowledge(self, batch_no: int) -> None:
        assert self._conn is not None
        try:
            with self._send_lock:
                self._conn.send_bytes(ACK + msgspec.msgpack.encode(batch_no))
        except (BrokenPipeError, OSError):  # the receiver is gone; the broker redelivers the batch
            log.warning("could not acknowledge batch %d: the receiver is gone", batch_no)

    def grant(self, until: float) -> None:
        """Tell the receiver it may stay connected until ``until`` (time.monotonic(): the ingest role's lease;
        from another thread)."""
        conn = self._conn
        if conn is None:
            return
        try:
            with self._send_lock:
                conn.send_bytes(GRANT + msgspec.msgpack.encode(until))
        except (BrokenPipeError, OSError):  # gone: the worker restarts it, or the consumer is stopping
            pass

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._conn is not None:
            try:
                self._conn.send_bytes(QUIT)
            except OSError:
                pass
        if self._process is not None:
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout_s)
        if self._conn is not None:
            self._conn.close()
            self._conn = None


if __name__ == "__main__":
    main()
