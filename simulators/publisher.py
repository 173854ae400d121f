"""Publishing simulated messages over MQTT, the way devices do: paho, QoS 1, a bounded window in flight.

``MqttPublisher`` is one connection (a gateway, or the load generator). At most
``inflight`` QoS 1 messages are unacknowledged at any time: ``publish`` blocks until the
broker's PUBACKs make room. Without the bound a fast publisher queues without limit, and
past 65,535 unacknowledged messages (MQTT packet ids are 16 bits) a paho client wedges.

``DevicePublishers`` gives each device its own connection with its own credentials (user
name = device id, as the broker's ACL expects, see devices/credentials.py), for brokers
that require them; its ``publish`` takes the device id from the topic. A micro fire
station's connection also subscribes to the station's own dispatch topic, as its duty
terminal does (the ACL lets it read that one topic only), and hands what arrives to
``on_dispatch``.

Both count what they sent and what the broker acknowledged (``sent``, ``acked``), and
``flush`` waits until everything sent is acknowledged. At QoS 0 nothing is acknowledged
and nothing takes a place in the window: a message counts as ``acked`` once paho has
written it to the socket, and one published while the connection is down is gone
(``lost``; paho keeps only QoS 1 messages for the next connection).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from wanli.errors import StoreUnavailable
from wanli.mqtt import MQTTErrorCode, new_client
from wanli.service_clock import ClockMs, wall_ms

MAX_INFLIGHT = 65_535  # MQTT packet identifiers are 16 bits


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


class MqttPublisher:
    def __init__(self, broker: BrokerAddress, *, client_id: str = "", username: str = "", password: str = "",
                 inflight: int = 2000, qos: int = 1, connect_timeout_s: float = 10.0,
                 will: tuple[str, bytes] | None = None,
                 listen: tuple[str, Callable[[str, bytes], None]] | None = None) -> None:
        if not 1 <= inflight <= MAX_INFLIGHT:
            raise ValueError(f"inflight must be 1..{MAX_INFLIGHT}, got {inflight}")
        self.broker, self.qos = broker, qos
        self.client_id = client_id or f"wanli-sim-{time.time_ns()}"
        self._client = new_client(self.client_id, username=username, password=password)
        if will is not None:
            self._client.will_set(will[0], will[1], qos=1)
        self._client.max_inflight_messages_set(inflight)
        self._client.max_queued_messages_set(0)  # the window below is the only bound
        self._window = threading.BoundedSemaphore(inflight)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._refused: str = ""
        self.sent = 0
        self.acked = 0
        self.lost = 0  # QoS 0 messages published while disconnected: paho drops them
        self._client.on_publish = self._on_publish
        self._client.on_connect = self._on_connect
        self._listen = listen  # (topic filter, handler): subscribed on every (re)connection
        self._subscribed = threading.Event()
        if listen is not None:
            self._client.on_subscribe = lambda *_: self._subscribed.set()
            self._client.on_message = lambda _c, _u, m: listen[1](m.topic, m.payload)
        self._client.reconnect_delay_set(0.2, 5)
        try:
            self._client.connect(broker.host, broker.port, keepalive=30)
        except OSError as exc:
            raise StoreUnavailable("mqtt", f"cannot reach the broker at {broker.url}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(connect_timeout_s) or self._refused:
            self.close()
            raise StoreUnavailable("mqtt", f"the broker at {broker.url} refused {self.client_id}: "
                                           f"{self._refused or 'no answer'}")
        if listen is not None and not self._subscribed.wait(connect_timeout_s):
            self.close()
            raise StoreUnavailable("mqtt", f"the broker at {broker.url} did not confirm {self.client_id}'s "
                                           f"subscription to {listen[0]}")

    def _on_connect(self, client, _u, _flags, reason_code, _p) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            self._refused = str(reason_code)
        elif self._listen is not None:
            client.subscribe(self._listen[0], qos=1)
        self._connected.set()

    def _on_publish(self, _c, _u, _mid, _rc, _p) -> None:  # type: ignore[no-untyped-def]
        # QoS 1: the broker's PUBACK, which frees a place in the window. QoS 0: written to the socket; it never took one.
        with self._lock:
            self.acked += 1
        if self.qos:
            self._window.release()

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def publish(self, topic: str, payload: bytes) -> None:
        if self.qos:
            self._window.acquire()
        info = self._client.publish(topic, payload, qos=self.qos)
        with self._lock:
            self.sent += 1
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and not self.qos:
                self.lost += 1  # at QoS 1 paho keeps it and sends it on reconnecting; the window holds its place

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until the broker acknowledged everything sent (and not lost); False if it did not in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self.acked + self.lost >= self.sent:
                    return True
            time.sleep(0.005)
        return False

    def drop(self) -> None:
        """Cut the connection without a DISCONNECT (the broker then publishes the last will)."""
        self._client.loop_stop()
        sock = self._client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()


class DevicePublishers:
    """One connection per device, as devices connect: client id = user name = the device's login.

    With a password for the device it logs in as itself (brokers that require credentials), under
    its login from ``usernames`` (the service issues ``street/kind/device_id``, devices/credentials.py);
    with ``wills`` each connection sets the device's ``offline`` status as its last will,
    made when it connects (its timestamp and sequence number reserved then, as the contract
    says), so the broker announces a connection that dies.
    """

    def __init__(self, broker: BrokerAddress, passwords: Mapping[str, str] | None = None, *, inflight: int = 100,
                 wills: Mapping[str, Callable[[int], tuple[str, bytes]]] | None = None,
                 now_ms: ClockMs = wall_ms,
                 dispatch_topics: Mapping[str, str] | None = None,
                 on_dispatch: Callable[[str, bytes], None] | None = None,
                 usernames: Mapping[str, str] | None = None) -> None:
        self.broker, self._passwords, self._inflight = broker, dict(passwords or {}), inflight
        self._usernames = dict(usernames or {})
        self._wills, self._now_ms = dict(wills or {}), now_ms
        # station id → its duty topic, and who takes (station id, notice) when one arrives
        self._dispatch_topics, self._on_dispatch = dict(dispatch_topics or {}), on_dispatch
        self._open: dict[str, MqttPublisher] = {}
        self._closed_sent = self._closed_acked = 0

    def _for(self, device_id: str) -> MqttPublisher:
        pub = self._open.get(device_id)
        if pub is None:
            pub = self._open[device_id] = self._open_one(device_id)
        return pub

    def connect_all(self, device_ids: Sequence[str], parallel: int = 64) -> None:
        """Connect many devices at once (a reconnect storm), ``parallel`` handshakes in flight."""
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="mqtt-connect") as pool:
            opened = dict(zip(device_ids, pool.map(self._open_one, device_ids), strict=True))
        self._open.update(opened)

    def _open_one(self, device_id: str) -> MqttPublisher:
        will = self._wills.get(device_id)
        password = self._passwords.get(device_id, "")
        duty, on_dispatch = self._dispatch_topics.get(device_id), self._on_dispatch
        listen = None
        if duty is not None and on_dispatch is not None:
            listen = (duty, lambda _topic, body: on_dispatch(device_id, body))
        login = self._usernames.get(device_id, device_id) if password else ""
        return MqttPublisher(self.broker, client_id=login or device_id, username=login,
                             password=password, inflight=self._inflight, will=will(self._now_ms()) if will else None,
                             listen=listen)

    def publish(self, topic: str, payload: bytes) -> None:
        self._for(topic.split("/")[4]).publish(topic, payload)

    @property
    def connections(self) -> int:
        return len(self._open)

    @property
    def sent(self) -> int:
        return self._closed_sent + sum(p.sent for p in self._open.values())

    @property
    def acked(self) -> int:
        return self._closed_acked + sum(p.acked for p in self._open.values())

    def flush(self, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        return all(p.flush(max(0.0, deadline - time.monotonic())) for p in list(self._open.values()))

    def drop_all(self) -> int:
        """Every connection dies at once (a network outage): the broker publishes their last wills."""
        dropped = list(self._open.values())
        self._open.clear()
        with ThreadPoolExecutor(max_workers=64, thread_name_prefix="mqtt-drop") as pool:
            list(pool.map(MqttPublisher.drop, dropped))  # each waits for its network thread: all at once
        for p in dropped:
            self._closed_sent += p.sent
            self._closed_acked += min(p.acked, p.sent)
        return len(dropped)

    def close(self) -> None:
        with ThreadPoolExecutor(max_workers=64, thread_name_prefix="mqtt-close") as pool:
            list(pool.map(MqttPublisher.close, self._open.values()))
        for p in self._open.values():
            self._closed_sent += p.sent
            self._closed_acked += p.acked
        self._open.clear()
