"""One MQTT test client: a paho 2.x client driven synchronously, each call waiting for the broker's answer.

Tests that check the broker itself (sessions, queues, who may publish where) talk to it through
this client rather than the service's seam (``foundation.mqtt``), so they see every reason code
the broker sends. It records the CONNACKs, disconnects, SUBACKs and messages it gets; a timeout
fails the test naming what it waited for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

MQTT_TIMEOUT_S = 20.0


class Broker(Protocol):
    host: str
    port: int


class TestClient:
    """Log in (or not: ``username`` None), then connect, subscribe, publish and wait, each call synchronous.

    ``reconnect_on_failure`` is off: a dropped or refused login stays so, for the test to see.
    """

    __test__ = False  # not a test class for pytest

    def __init__(self, broker: Broker, client_id: str = "", *, username: str | None = None,
                 password: str | None = None, clean_session: bool = True, will: tuple[str, bytes] | None = None,
                 timeout_s: float = MQTT_TIMEOUT_S) -> None:
        self._broker = broker
        self.username = username
        self.timeout_s = timeout_s
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=clean_session, protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        self._client.max_inflight_messages_set(1000)
        if username is not None:
            self._client.username_pw_set(username, password)
        if will is not None:
            self._client.will_set(will[0], will[1], qos=1)
        self._changed = threading.Condition()
        self.connacks: list[tuple[bool, ReasonCode]] = []  # (session present, reason code)
        self.disconnects: list[ReasonCode] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # -- paho's callbacks (its network thread)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        self._record(self.connacks.append, (flags.session_present, reason_code))

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        self._record(self.disconnects.append, reason_code)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reason_codes: list[ReasonCode],
                      properties: Properties | None) -> None:
        self._record(lambda codes: self._subacks.__setitem__(mid, codes), reason_codes)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self._record(self.messages.append, message)

    def _record(self, store: Callable[[object], None], value: object) -> None:
        with self._changed:
            store(value)
            self._changed.notify_all()

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(condition, timeout=self.timeout_s):
                who = f"{self.username}: " if self.username else ""
                raise AssertionError(f"{who}timed out after {self.timeout_s} s waiting for {what}")

    # -- what tests do

    def connect(self) -> ReasonCode:
        """Connect and return the CONNACK's reason code (success, or why not)."""
        self._client.connect(self._broker.host, self._broker.port, keepalive=30)
        self._client.loop_start()
        self._wait(lambda: bool(self.connacks), "CONNACK")
        return self.connacks[0][1]

    @property
    def session_present(self) -> bool:
        """The first CONNACK's session-present flag: the broker kept this client id's persistent session."""
        return self.connacks[0][0]

    def subscribe(self, topic_filter: str) -> list[ReasonCode]:
        """Subscribe at QoS 1 and return the SUBACK's reason codes."""
        _, mid = self._client.subscribe(topic_filter, qos=1)
        self._wait(lambda: mid in self._subacks, f"SUBACK for {topic_filter}")
        return self._subacks[mid]

    def publish(self, topic: str, body: bytes) -> None:
        """Publish at QoS 1 and return once the broker has acknowledged it."""
        self.publish_all(topic, [body])

    def publish_all(self, topic: str, payloads: Iterable[bytes]) -> None:
        """Publish at QoS 1 and return once the broker has acknowledged every message."""
        infos = [self._client.publish(topic, payload, qos=1) for payload in payloads]
        deadline = time.monotonic() + self.timeout_s
        for info in infos:
            info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
        assert all(info.is_published() for info in infos), f"no PUBACK for every message to {topic}"

    def wait_for_messages(self, count: int) -> list[mqtt.MQTTMessage]:
        """Every message received, once there are at least ``count``."""
        self._wait(lambda: len(self.messages) >= count, f"{count} messages (have {len(self.messages)})")
        with self._changed:
            return list(self.messages)

    def wait_for_message(self, body: bytes) -> list[mqtt.MQTTMessage]:
        """Every message received up to and including the one carrying ``body``."""
        self._wait(lambda: any(m.payload == body for m in self.messages), f"message {body!r}")
        with self._changed:
            return self.messages[: next(i for i, m in enumerate(self.messages) if m.payload == body) + 1]

    def wait_for_disconnect(self) -> ReasonCode:
        self._wait(lambda: bool(self.disconnects), "the broker to drop the connection")
        return self.disconnects[0]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@contextmanager
def connected(broker: Broker, client_id: str = "", **options: object) -> Iterator[TestClient]:
    """A connected client (the broker must accept it), closed afterwards."""
    client = TestClient(broker, client_id, **options)  # type: ignore[arg-type]
    reason = client.connect()
    try:
        assert not reason.is_failure, reason
        yield client
    finally:
        client.close()
