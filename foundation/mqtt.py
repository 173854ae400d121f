"""The one seam to MQTT (paho): a client made one way, and topic-filter matching as a pure function.

Every connection of the service, the simulators and the tooling is made by ``new_client``: paho's
version-2 callbacks, MQTT 3.1.1 (the broker ACL's ``%u`` patterns and the persistent sessions
are 3.1.1's), the login when there is one. Reconnecting loops wait with ``foundation.background.Backoff``
(doubling, capped, jittered).

``matches(topic_filter, topic)`` is paho's own ``topic_matches_sub`` (the MQTT rules: ``+`` one
level, ``#`` this level and all below it, including the level above it; a wildcard in the first
level never matches a ``$`` topic such as ``$SYS/…``), taught one thing it does not know: a shared
subscription's ``$share/{group}/`` prefix, which the broker strips before it matches. Many filters at
once: ``TopicFilters`` (paho's trie). A connection that only reads (a duty terminal's stand-in, a test's
ear on the dispatch topics): ``Subscriber``. A connection that publishes, whoever it is for (the dispatcher's
notices, alerts/dispatch.py; a simulated device or the load generator, simulators/publisher.py): ``Publisher``.

The paho types a module names (``Client``, ``MQTTMessage``, ``MQTTErrorCode``) are taken from here too,
so that paho is imported in this module only (aiomqtt, the simulated buildings' asyncio client, apart).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import Client, MQTTMessage, topic_matches_sub
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.matcher import MQTTMatcher

from foundation.background import Backoff

__all__ = ["MAX_INFLIGHT", "Client", "MQTTErrorCode", "MQTTMessage", "Publisher", "Subscriber", "TopicFilters", "matches",
           "new_client", "unshared"]

SHARE_PREFIX = "$share/"
MAX_INFLIGHT = 65_535  # MQTT packet identifiers are 16 bits


def unshared(topic_filter: str) -> str:
    """The filter a shared subscription matches with (``$share/{group}/safety/#`` → ``safety/#``)."""
    if not topic_filter.startswith(SHARE_PREFIX):
        return topic_filter
    parts = topic_filter.split("/", 2)
    if len(parts) < 3 or not parts[1] or not parts[2]:
        raise ValueError(f"a shared subscription is $share/{{group}}/{{filter}}, got {topic_filter!r}")
    return parts[2]


def matches(topic_filter: str, topic: str) -> bool:
    """Whether a message on ``topic`` reaches a subscription to ``topic_filter``. Pure."""
    return topic_matches_sub(unshared(topic_filter), topic)


class TopicFilters:
    """Several filters, matched at once (one trie walk per topic, not one per filter)."""

    def __init__(self, topic_filters: Iterable[str]) -> None:
        self._trie = MQTTMatcher()
        self.filters = tuple(topic_filters)
        for topic_filter in self.filters:
            self._trie[unshared(topic_filter)] = True

    def match(self, topic: str) -> bool:
        return any(True for _ in self._trie.iter_match(topic))


def new_client(client_id: str, *, username: str = "", password: str = "", clean_session: bool = True,
               manual_ack: bool = False, reconnect_on_failure: bool = True) -> Client:
    """A paho client as every connection here is made: version-2 callbacks, MQTT 3.1.1, the login if any.

    ``clean_session=False``: a persistent session (the broker keeps QoS 1 messages while it is away);
    ``manual_ack``: a message is acknowledged only when the caller says (once it is safe)."""
    client = Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv311, clean_session=clean_session, manual_ack=manual_ack,
                         reconnect_on_failure=reconnect_on_failure)
    if username:
        client.username_pw_set(username, password)
    client.on_socket_open = _no_delay
    return client


def _no_delay(_client: Client, _userdata: object, sock: Any) -> None:
    """Small packets go at once (TCP_NODELAY): an acknowledgement held back by Nagle's algorithm meets the
    peer's delayed ACK, and a request-and-answer exchange (a notice and its PUBACK) then takes 40 ms."""
    with contextlib.suppress(OSError, AttributeError):  # a socket that is not TCP (a test's socket pair)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Subscriber:
    """One connection that reads ``topic_filters`` and hands each message to ``on_message`` (on paho's network
    thread: keep it short). It subscribes again on every reconnection; ``wait`` says whether the broker has
    confirmed the subscription, so nothing published after it is missed."""

    def __init__(self, host: str, port: int, topic_filters: str | Iterable[str],
                 on_message: Callable[[MQTTMessage], None], *, client_id: str, username: str = "", password: str = "",
                 qos: int = 1, keepalive_s: int = 60) -> None:
        filters = [topic_filters] if isinstance(topic_filters, str) else list(topic_filters)
        self._subscribed = threading.Event()
        self.client = new_client(client_id, username=username, password=password)
        self.client.on_connect = lambda c, _u, _f, rc, _p: None if rc.is_failure else c.subscribe(
            [(f, qos) for f in filters])
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = lambda _c, _u, msg: on_message(msg)
        self.client.connect(host, port, keepalive=keepalive_s)
        self.client.loop_start()

    def wait(self, timeout_s: float = 10.0) -> bool:
        """True once the broker confirmed the subscription; False if it did not within ``timeout_s``."""
        return self._subscribed.wait(timeout_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Publisher:
    """One connection that publishes: a paho client made by ``new_client`` (the login if any; no TLS, as every
    connection here), its network loop on a thread of its own, and reconnection after a lost connection or a failed
    attempt, each wait from ``backoff`` (``foundation.background.Backoff``: jittered, so that many connections that lost
    one broker do not come back in step), reset once the broker accepts the connection.

    ``connect`` starts the connection (if it is not running) and waits until it is ready; ``publish`` sends
    (QoS ``qos``; with a ``window`` at most that many QoS 1 messages unacknowledged, ``publish`` waiting for the
    broker's PUBACKs to make room: without a bound a fast publisher queues without limit, and past 65,535
    unacknowledged messages a paho client wedges); ``publish_confirmed`` sends one and waits for the broker's
    acknowledgement; ``publish_all_confirmed`` sends many, all in flight at once, and waits for their
    acknowledgements together. ``sent``, ``acked`` and ``lost`` count (at QoS 0 a message counts as acknowledged once
    written to the socket; one published while disconnected is gone, ``lost``); ``flush`` waits until everything
    sent is acknowledged. ``close`` says goodbye (DISCONNECT: no last will); ``drop`` cuts the connection (the
    broker publishes the last will).

    ``resend=False``: what the broker had not acknowledged when a connection ended is forgotten before the next
    one is made (paho would send it again on reconnecting; it counts as ``lost``): for a caller that keeps
    its messages and sends them again itself, as the dispatcher does from its outbox, a copy sent by paho too
    would reach the receivers twice.

    For subclasses: ``on_connected(client)`` runs on each accepted connection (the default: ready now),
    ``may_reconnect()`` says whether a lost connection is taken up again (if not, the loop ends and the next
    ``connect`` starts it anew).
    """

    def __init__(self, host: str, port: int, *, client_id: str, username: str = "", password: str = "",
                 qos: int = 1, clean_session: bool = True, manual_ack: bool = False,
                 will: tuple[str, bytes] | None = None, window: int | None = None, keepalive_s: int = 30,
                 backoff: Backoff | None = None, resend: bool = True) -> None:
        if window is not None and not 1 <= window <= MAX_INFLIGHT:
            raise ValueError(f"inflight must be 1..{MAX_INFLIGHT}, got {window}")
        if window is not None and not resend:
            raise ValueError("a window's places are freed by acknowledgements: it cannot forget what it sent")
        self.host, self.port, self.client_id, self.qos = host, port, client_id, qos
        self._client = new_client(client_id, username=username, password=password, clean_session=clean_session,
                                  manual_ack=manual_ack, reconnect_on_failure=False)  # reconnecting is ours (below)
        if will is not None:
            self._client.will_set(will[0], will[1], qos=1)
        self._window: threading.BoundedSemaphore | None = None
        if window is not None:
            self._client.max_inflight_messages_set(window)
            self._client.max_queued_messages_set(0)  # the window is the only bound
            self._window = threading.BoundedSemaphore(window)
        self._keepalive_s = keepalive_s
        self._backoff = backoff or Backoff(0.2, 5.0)
        self._ready = threading.Event()  # connected, and whatever on_connected waits for done
        self._tried = threading.Event()  # an attempt is over: accepted, refused or the broker unreachable
        self.refused = ""  # the broker's refusal of the last attempt (its CONNACK's reason)
        self.unreachable = ""  # why the last attempt could not reach the broker
        self._stopping = threading.Event()
        self._running = threading.Lock()  # a reconnect and a close, one at a time (close never misses one)
        self._thread: threading.Thread | None = None
        self._counts = threading.Lock()
        self.sent = 0
        self.acked = 0
        self.lost = 0
        self._resend = resend
        # publish_all_confirmed's wait: told of each acknowledgement and of each connection that ended
        self._settled = threading.Condition()
        self._connection_ends = 0  # connections ended (or their unacknowledged messages forgotten) so far
        self._acked_mids: set[int] | None = None  # while publish_all_confirmed waits: what the broker acknowledged
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        # The network thread (``_run``) is the only one that writes to the socket: paho writes a packet at once
        # from the publishing thread when it runs no thread of its own (``loop_start``) and no event loop is
        # registered, and two writers would interleave partial writes. Registered, paho only wakes the thread.
        self._client.on_socket_register_write = lambda *_args: None

    # -- for subclasses -------------------------------------------------------------------------------

    def on_connected(self, client: Client) -> None:
        """The broker accepted the connection (paho's network thread). Ready unless a subclass waits for more."""
        self._ready.set()

    def may_reconnect(self) -> bool:
        return True

    # -- the connection ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    @property
    def running(self) -> bool:
        """The network loop runs (connected, or connecting again)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start connecting in the background, unless the loop runs already."""
        if self.running:
            return
        self._stopping.clear()
        self._tried.clear()
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.client_id}"[:40], daemon=True)
        self._thread.start()

    def connect(self, timeout_s: float, *, fail_fast: bool = False) -> bool:
        """Started and ready; ConnectionError if not within ``timeout_s`` (``fail_fast``: at once when the attempt
        is refused or cannot reach the broker). True if it was not ready when asked."""
        fresh = not self._ready.is_set()  # asked before starting: a loop started now may be ready before the next line
        self.start()
        if fail_fast:
            self._tried.wait(timeout_s)
            if self.refused or (self.unreachable and not self._ready.is_set()):
                raise ConnectionError(f"the broker at {self.host}:{self.port} "
                                      f"{'refused ' + self.client_id + ': ' + self.refused if self.refused else 'cannot be reached: ' + self.unreachable}")
        if not self._ready.wait(timeout_s):
            raise ConnectionError(f"not connected to the broker at {self.host}:{self.port}"
                                  + (f" ({self.refused or self.unreachable})" if self.refused or self.unreachable else ""))
        return fresh

    def _on_connect(self, client: Client, _u: object, _f: object, rc: Any, _p: object) -> None:
        if rc.is_failure:
            self.refused = str(rc)
            self._tried.set()
            return
        self.refused = self.unreachable = ""
        self._backoff.reset()
        self.on_connected(client)
        self._tried.set()

    def _on_disconnect(self, *_args: object) -> None:
        self._ready.clear()
        with self._settled:
            self._connection_ends += 1
            self._settled.notify_all()

    def _forget_unacknowledged(self) -> None:
        """``resend=False``: paho's queue emptied before a connection is made (network thread, no loop running)."""
        client = self._client
        with client._out_message_mutex:  # paho 2.x: no public way to drop what it keeps for resending
            forgotten = len(client._out_messages)
            client._out_messages.clear()
            client._inflight_messages = 0
        if forgotten:
            with self._counts:
                self.lost += forgotten
            with self._settled:
                self._connection_ends += 1
                self._settled.notify_all()

    def _run(self) -> None:
        try:
            self._connect_and_serve()
        finally:
            # The loop's wake-up socket pair (made by paho's ``loop()``): closed with the loop that used it, not
            # left to the collector (a Publisher and its client are a cycle: their sockets would go unclosed).
            self._client._reset_sockets(sockpair_only=True)  # paho 2.x: no public way

    def _connect_and_serve(self) -> None:
        client, first = self._client, True
        while True:
            with self._running:
                if self._stopping.is_set():
                    return
                try:
                    if not self._resend:
                        self._forget_unacknowledged()
                    if first:
                        client.connect(self.host, self.port, keepalive=self._keepalive_s)
                    else:
                        client.reconnect()
                    reached = True
                except OSError as exc:
                    reached = False
                    self.unreachable = f"{type(exc).__name__}: {exc}"
                first = False
            if not reached:
                self._tried.set()
            else:
                rc = MQTTErrorCode.MQTT_ERR_SUCCESS
                while rc == MQTTErrorCode.MQTT_ERR_SUCCESS:  # until the connection ends (close: after DISCONNECT)
                    rc = client.loop(timeout=1.0)
                self._ready.clear()
            if self._stopping.is_set() or not self.may_reconnect():
                return
            if self._stopping.wait(self._backoff.next_s()) or not self.may_reconnect():  # asked again after the wait
                return

    def _stop(self) -> None:
        with self._running:
            self._stopping.set()

    def close(self) -> None:
        """Say goodbye (DISCONNECT: the broker publishes no last will) and stop; ``connect`` starts again."""
        self._stop()
        with contextlib.suppress(OSError):  # the loop ended meanwhile: its wake-up socket closed with it
            self._client.disconnect()
        self._join()

    def drop(self) -> None:
        """Cut the connection without a DISCONNECT (the broker then publishes the last will), and stop."""
        self._stop()
        sock = self._client.socket()
        if sock is not None:
            sock.close()
        self._join()

    def _join(self) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
        self._ready.clear()

    # -- publishing -------------------------------------------------------------------------------------

    def _on_publish(self, _c: object, _u: object, mid: int, _rc: object, _p: object) -> None:
        # QoS 1: the broker's PUBACK, which frees a place in the window. QoS 0: written to the socket; it took none.
        with self._counts:
            self.acked += 1
        if self._acked_mids is not None:  # publish_all_confirmed waits (paho marks the message published after this)
            with self._settled:
                if self._acked_mids is not None:
                    self._acked_mids.add(mid)
                    self._settled.notify_all()
        if self._window is not None and self.qos:
            self._window.release()

    def publish(self, topic: str, payload: bytes) -> Any:
        """Send (waiting for room in the window, if any); paho's MQTTMessageInfo."""
        if self._window is not None and self.qos:
            self._window.acquire()
        info = self._client.publish(topic, payload, qos=self.qos)
        with self._counts:
            self.sent += 1
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and not self.qos:
                self.lost += 1  # at QoS 1 paho keeps it and sends it on reconnecting; the window holds its place
        return info

    def publish_confirmed(self, topic: str, payload: bytes, timeout_s: float) -> None:
        """Send one and wait for the broker's acknowledgement (``publish_all_confirmed`` of one); ConnectionError
        if it did not come in ``timeout_s``, or the connection ended first."""
        error = self.publish_all_confirmed([(topic, payload)], timeout_s)[0]
        if error:
            raise ConnectionError(error)

    def publish_all_confirmed(self, messages: Sequence[tuple[str, bytes]], timeout_s: float) -> list[str]:
        """Send them all (as many in flight at once as paho allows: ``max_inflight_messages_set``) and wait for
        the broker's acknowledgements together, ``timeout_s`` in all; for each message, ``""`` if the broker
        acknowledged it, else why not. A connection that ends meanwhile ends the wait: what it had not
        acknowledged by then is not (with ``resend=False`` paho will not send it again either). One caller at a
        time."""
        errors = [""] * len(messages)
        mids: dict[int, int] = {}  # paho's message id → its place in ``messages``
        with self._settled:
            self._acked_mids = set()
            ends = self._connection_ends
        try:
            for i, (topic, payload) in enumerate(messages):
                try:
                    mids[self.publish(topic, payload).mid] = i
                except (OSError, RuntimeError, ValueError) as exc:  # paho: not connected now, or its queue full
                    errors[i] = f"the message on {topic} was not sent: {exc}"
            deadline = time.monotonic() + timeout_s
            with self._settled:
                while True:
                    for mid in self._acked_mids & mids.keys():
                        del mids[mid]
                    self._acked_mids.clear()
                    if not mids:
                        break
                    if self._connection_ends != ends:
                        why = f"the connection to the broker at {self.host}:{self.port} ended before it acknowledged"
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        why = f"the broker did not acknowledge it within {timeout_s} s"
                        break
                    self._settled.wait(remaining)
        finally:
            with self._settled:
                self._acked_mids = None
        for i in mids.values():
            errors[i] = f"the message on {messages[i][0]} was not sent: {why}"
        return errors

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until the broker acknowledged everything sent (and not lost); False if it did not in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._counts:
                if self.acked + self.lost >= self.sent:
                    return True
            time.sleep(0.005)
        return False
