"""Publishing simulated messages over MQTT, the way devices do: paho, QoS 1, a bounded window in flight.

``MqttPublisher`` is one connection (a gateway, or the load generator; ``foundation.mqtt.Publisher``, the
one publisher, as the dispatcher's is). At most
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

from foundation.errors import StoreUnavailable
from foundation.mqtt import MAX_INFLIGHT, Client, Publisher
from foundation.service_clock import ClockMs, wall_ms

__all__ = ["MAX_INFLIGHT", "BrokerAddress", "DevicePublishers", "MqttPublisher"]


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


class MqttPublisher(Publisher):
    """One connection (a gateway, or the load generator): ``foundation.mqtt.Publisher`` with a window of ``inflight``,
    connected when made (``StoreUnavailable`` at once if the broker cannot be reached or refuses the login).
    ``listen``: (a topic filter, a handler) subscribed on every (re)connection, confirmed before it returns."""

    def __init__(self, broker: BrokerAddress, *, client_id: str = "", username: str = "", password: str = "",
                 inflight: int = 2000, qos: int = 1, connect_timeout_s: float = 10.0,
                 will: tuple[str, bytes] | None = None,
                 listen: tuple[str, Callable[[str, bytes], None]] | None = None) -> None:
        super().__init__(broker.host, broker.port, client_id=client_id or f"wanli-sim-{time.time_ns()}",
                         username=username, password=password, qos=qos, will=will, window=inflight)
        self.broker = broker
        self._listen = listen
        self._subscribed = threading.Event()
        if listen is not None:
            self._client.on_subscribe = lambda *_: self._subscribed.set()
            self._client.on_message = lambda _c, _u, m: listen[1](m.topic, m.payload)
        try:
            self.connect(connect_timeout_s, fail_fast=True)
        except ConnectionError as exc:
            self.close()
            raise StoreUnavailable("mqtt", f"cannot connect {self.client_id} to the broker at {broker.url}: {exc}") from exc
        if listen is not None and not self._subscribed.wait(connect_timeout_s):
            self.close()
            raise StoreUnavailable("mqtt", f"the broker at {broker.url} did not confirm {self.client_id}'s "
                                           f"subscription to {listen[0]}")

    def on_connected(self, client: Client) -> None:
        if self._listen is not None:
            client.subscribe(self._listen[0], qos=1)
        super().on_connected(client)

    def publish(self, topic: str, payload: bytes) -> None:  # type: ignore[override]
        super().publish(topic, payload)


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
