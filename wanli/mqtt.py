"""The one seam to MQTT (paho): a client made one way, and topic-filter matching as a pure function.

Every connection of the service, the simulators and the tooling is made by ``new_client``: paho's
version-2 callbacks, MQTT 3.1.1 (the broker ACL's ``%u`` patterns and the persistent sessions
are 3.1.1's), the login when there is one. Reconnecting loops wait with ``wanli.background.Backoff``
(doubling, capped, jittered).

``matches(topic_filter, topic)`` is paho's own ``topic_matches_sub`` (the MQTT rules: ``+`` one
level, ``#`` this level and all below it, including the level above it; a wildcard in the first
level never matches a ``$`` topic such as ``$SYS/…``), taught one thing it does not know: a shared
subscription's ``$share/{group}/`` prefix, which the broker strips before it matches. Many filters at
once: ``TopicFilters`` (paho's trie). A connection that only reads (a duty terminal's stand-in, a test's
ear on the dispatch topics): ``Subscriber``.

The paho types a module names (``Client``, ``MQTTMessage``, ``MQTTErrorCode``) are taken from here too,
so that paho is imported in this module only (aiomqtt, the simulated buildings' asyncio client, apart).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.client import Client, MQTTMessage, topic_matches_sub
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.matcher import MQTTMatcher

__all__ = ["Client", "MQTTErrorCode", "MQTTMessage", "Subscriber", "TopicFilters", "matches", "new_client", "unshared"]

SHARE_PREFIX = "$share/"


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
    return client


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
