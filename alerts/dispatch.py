"""The dispatcher: sends the outbox's pending notices, over MQTT to each responder's topic and to
the city platform's webhook, and marks them sent; what fails stays pending and is retried.

A responder's app (or a micro fire station's duty terminal) subscribes to its own topic,
``dispatch/v1/{street}/{tier}/{place}/{role}`` (``…/fire_station/{station}/duty`` for a
station), and acknowledges through the API or, for a station, with its ``dispatch_ack``
message on its own device topic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from alerts.outbox import CHANNEL_MQTT, Outbox
from wanli.background import WakeableLoop
from wanli.redact import redact_url

log = logging.getLogger(__name__)


class MqttPublisher:
    """One paho connection for outgoing notices, QoS 1, waiting for the broker's acknowledgement."""

    def __init__(self, host: str, port: int, *, client_id: str, username: str = "", password: str = "",
                 timeout_s: float = 5.0) -> None:
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=mqtt.MQTTv311)
        if username:
            self._client.username_pw_set(username, password)
        self._host, self._port, self._timeout_s = host, port, timeout_s
        self._started = False
        self._connected = threading.Event()
        self._client.on_connect = lambda _c, _u, _f, rc, _p: self._connected.set() if not rc.is_failure else None
        self._client.on_disconnect = self._on_disconnect
        # With several instances the dispatchers log in alike (one account, and the broker may take the username
        # as the client id): only the dispatch role's holder may be connected. A connection dropped while the
        # role is not held here is not taken up again (a dispatcher that froze would take the session back
        # from the next holder, and they would close each other's connections for ever): the next publish,
        # made only by a holder, connects anew.
        self.gate: Callable[[], bool] = lambda: True
        self._gave_up = False

    def _on_disconnect(self, client: mqtt.Client, *_args: object) -> None:
        self._connected.clear()
        if not self.gate():
            self._gave_up = True
            client.disconnect()  # paho's loop stops reconnecting

    def publish(self, topic: str, payload: str) -> None:
        if not self.gate():  # asked again here: a send that froze half-way wakes up after the role left
            raise ConnectionError("the dispatch role is not held by this instance now")
        if self._started and self._gave_up:
            self._client.loop_stop()
            self._started = self._gave_up = False
        if not self._started:
            self._client.connect_async(self._host, self._port, keepalive=30)
            self._client.loop_start()
            self._started = True
        if not self._connected.wait(self._timeout_s):
            raise ConnectionError(f"not connected to the broker at {self._host}:{self._port}")
        info = self._client.publish(topic, payload.encode(), qos=1)
        info.wait_for_publish(self._timeout_s)
        if not info.is_published():
            raise ConnectionError(f"the broker did not acknowledge the notice on {topic} within {self._timeout_s} s")

    def close(self) -> None:
        """Disconnect (a publish after it connects again)."""
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = self._gave_up = False
            self._connected.clear()


class Dispatcher(WakeableLoop):
    def __init__(self, outbox: Outbox, publisher: MqttPublisher, webhook_url: str = "",
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        super().__init__("dispatcher")
        self._outbox = outbox
        self._publisher = publisher
        self._webhook_url = webhook_url
        self._http = httpx.Client(timeout=10) if webhook_url else None
        self._clock_ms = clock_ms
        self.sent = 0
        self.failures = 0

    @property
    def publisher(self) -> MqttPublisher:
        return self._publisher

    def disconnect(self) -> None:
        """Leave the broker (the dispatch role went elsewhere); the next round that sends connects again."""
        self._publisher.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        super().stop(timeout_s)
        self._publisher.close()
        if self._http is not None:
            self._http.close()

    def send_pending(self) -> int:
        """One round: send what is pending, mark what went; return how many went."""
        sent = 0
        for row in self._outbox.pending():
            if not self.gate():
                break  # the dispatch role was lost meanwhile: the next holder sends the rest
            # Each notice locked while it is sent and marked in the same transaction (Outbox.claim): with
            # several instances, one sent by a dispatcher that froze mid-send is not sent again by the next.
            with self._outbox.claim(row.id) as claim:
                if claim is None:
                    continue  # sent meanwhile, or in another dispatcher's hands now
                try:
                    if row.channel == CHANNEL_MQTT:
                        self._publisher.publish(row.topic, row.payload)
                    else:
                        self._post(row.payload)
                except Exception as exc:  # noqa: BLE001 - every failure is retried; say which
                    self.failures += 1
                    log.warning("notice %s for incident=%s via %s not sent: %s", row.id, row.incident_id,
                                row.channel, exc)
                    claim.failed(f"{type(exc).__name__}: {exc}")
                    continue
                claim.sent(self._clock_ms())
            sent += 1
        self.sent += sent
        return sent

    def _post(self, payload: str) -> None:
        """POST one notice. A failure names the webhook by ``redact_url`` only: its URL may carry its key."""
        assert self._http is not None
        where = redact_url(self._webhook_url)
        try:
            resp = self._http.post(self._webhook_url, content=payload.encode(), headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            raise ConnectionError(f"webhook {where}: {type(exc).__name__}: "
                                  f"{str(exc).replace(self._webhook_url, where)}") from None
        if resp.is_error:
            raise ConnectionError(f"webhook {where} answered {resp.status_code} {resp.reason_phrase}")

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            if self._held_back():
                continue
            try:
                self.send_pending()
                delay = 1.0 if not self._outbox.pending(1) else min(delay * 2, 30.0)
            except Exception:  # the database is away: try again later; nothing is marked sent
                log.exception("dispatcher round failed")
                delay = min(delay * 2, 30.0)
            self._pause(delay)
