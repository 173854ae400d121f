"""Publishing simulated messages over MQTT, the way devices do: paho, QoS 1, a bounded window in flight.

``MqttPublisher`` is one connection (a gateway, or the load generator). At most
``inflight`` QoS 1 messages are unacknowledged at any time: ``publish`` blocks until the
broker's PUBACKs make room. Without the bound a fast publisher queues without limit, and
past 65,535 unacknowledged messages (MQTT packet ids are 16 bits) a paho client wedges.

``DevicePublishers`` gives each device its own connection with its own credentials (user
name = device id, as the broker's ACL expects, see devices/credentials.py), for brokers
that require them; its ``publish`` takes the device id from the topic.

Both count what they sent and what the broker acknowledged (``sent``, ``acked``), and
``flush`` waits until everything sent is acknowledged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from wanli.errors import StoreUnavailable

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
                 will: tuple[str, bytes] | None = None) -> None:
        if not 1 <= inflight <= MAX_INFLIGHT:
            raise ValueError(f"inflight must be 1..{MAX_INFLIGHT}, got {inflight}")
        self.broker, self.qos = broker, qos
        self.client_id = client_id or f"wanli-sim-{time.time_ns()}"
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                   protocol=mqtt.MQTTv311)
        if username:
            self._client.username_pw_set(username, password)
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
        self._client.on_publish = self._on_publish
        self._client.on_connect = self._on_connect
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

    def _on_connect(self, _c, _u, _flags, reason_code, _p) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            self._refused = str(reason_code)
        self._connected.set()

    def _on_publish(self, _c, _u, _mid, _rc, _p) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self.acked += 1
        self._window.release()

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def publish(self, topic: str, payload: bytes) -> None:
        if self.qos:
            self._window.acquire()
        info = self._client.publish(topic, payload, qos=self.qos)
        self.sent += 1
        if info.rc == mqtt.MQTT_ERR_NO_CONN:
            pass  # paho keeps it and sends it on reconnecting; the window holds its place
        elif self.qos == 0:
            with self._lock:
                self.acked += 1

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until the broker acknowledged everything sent; False if it did not in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self.acked >= self.sent:
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
    """One connection per device, each logged in as the device with its own password."""

    def __init__(self, broker: BrokerAddress, passwords: Mapping[str, str], *, inflight: int = 100) -> None:
        self.broker, self._passwords, self._inflight = broker, dict(passwords), inflight
        self._open: dict[str, MqttPublisher] = {}

    def _for(self, device_id: str) -> MqttPublisher:
        pub = self._open.get(device_id)
        if pub is None:
            password = self._passwords.get(device_id)
            if password is None:
                raise KeyError(f"no credentials for device {device_id}")
            pub = self._open[device_id] = MqttPublisher(self.broker, client_id=device_id, username=device_id,
                                                        password=password, inflight=self._inflight)
        return pub

    def publish(self, topic: str, payload: bytes) -> None:
        self._for(topic.split("/")[4]).publish(topic, payload)

    @property
    def sent(self) -> int:
        return sum(p.sent for p in self._open.values())

    @property
    def acked(self) -> int:
        return sum(p.acked for p in self._open.values())

    def flush(self, timeout_s: float = 30.0) -> bool:
        return all(p.flush(timeout_s) for p in self._open.values())

    def close(self) -> None:
        for p in self._open.values():
            p.close()
        self._open.clear()
