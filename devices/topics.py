"""The MQTT topic contract, as pure functions (documented in docs/mqtt-contract.md).

    safety/v1/{street}/{kind}/{device_id}/{class}

``street`` and ``kind`` are lower-case identifiers, ``device_id`` is the device's
registered id (letters, digits, ``-`` and ``_``, at most 64), ``class`` is one of
``telemetry``, ``event`` and ``status``. Every segment is fixed in position so that a
broker ACL can pin a device to its own topics (``safety/v1/+/+/%u/#`` style) and a
shared subscription can be split by street or kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from enum import StrEnum

from devices.drill import DRILL_TOPIC_ROOT
from foundation.errors import TopicError

ROOT = "safety"
VERSION = "v1"
DISPATCH_ROOT = f"dispatch/{VERSION}"  # the platform's notices to responders: outside safety/, never read by ingest
_IDENT = re.compile(r"[a-z][a-z0-9_]{0,31}")  # used with fullmatch: "$" would let a trailing newline in
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class MessageClass(StrEnum):
    TELEMETRY = "telemetry"  # periodic readings: heartbeats, port measurements
    EVENT = "event"  # something happened: alarm, press, fault, dispatch step
    STATUS = "status"  # connection state: online, offline (the device's last will)


@dataclass(frozen=True, slots=True)
class TopicAddress:
    street: str
    kind: str
    device_id: str
    msg_class: MessageClass

    def __post_init__(self) -> None:
        if not _IDENT.fullmatch(self.street):
            raise TopicError(f"street {self.street!r} is not a lower-case identifier")
        if not _IDENT.fullmatch(self.kind):
            raise TopicError(f"kind {self.kind!r} is not a lower-case identifier")
        if not _DEVICE_ID.fullmatch(self.device_id):
            raise TopicError(f"device id {self.device_id!r} is not 1-64 of [A-Za-z0-9_-]")

    @property
    def topic(self) -> str:
        return f"{ROOT}/{VERSION}/{self.street}/{self.kind}/{self.device_id}/{self.msg_class.value}"


def is_device_id(text: str) -> bool:
    """Whether ``text`` can be a device id under the contract (1-64 of [A-Za-z0-9_-], not starting with - or _)."""
    return _DEVICE_ID.fullmatch(text) is not None


def device_id_of_topic(topic: str) -> str:
    """The device a topic names, even when the rest of it breaks the contract; "" when it names none.

    The device id is the fifth segment of ``safety/v1/...``; a broker ACL pins a device's
    login to that segment (``safety/v1/+/+/%u/#``), so a malformed topic under it still says
    truthfully which device published it: its dead letter and its rate limit are that device's.
    """
    parts = topic.split("/", 5)
    if len(parts) < 5 or parts[0] != ROOT or parts[1] != VERSION:
        return ""
    return parts[4] if is_device_id(parts[4]) else ""


@lru_cache(maxsize=1 << 18)
def parse_topic(topic: str) -> TopicAddress:
    """Split a topic into its address, or raise ``TopicError`` saying which part is wrong.

    Cached: a street's devices publish on a few hundred thousand topics over and over, and
    an address is immutable (a rejected topic raises, so it is never cached).
    """
    parts = topic.split("/")
    if len(parts) != 6:
        raise TopicError(f"expected 6 segments {ROOT}/{VERSION}/street/kind/device/class, got {len(parts)}", topic=topic)
    root, version, street, kind, device_id, msg_class = parts
    if root != ROOT:
        raise TopicError(f"topic must start with {ROOT}/", topic=topic)
    if version != VERSION:
        raise TopicError(f"unsupported contract version {version!r}", topic=topic)
    try:
        cls = MessageClass(msg_class)
    except ValueError:
        raise TopicError(f"class {msg_class!r} is not one of telemetry, event, status", topic=topic) from None
    try:
        return TopicAddress(street, kind, device_id, cls)
    except TopicError as exc:
        exc.topic = topic
        raise


def subscription(street: str = "") -> str:
    """The topic filter ingest subscribes to: everything under the root (or one street's part).

    Deliberately wider than the contract: a device publishing a malformed topic under
    ``safety/`` must reach ingest so it is dead-lettered with a reason, not silently unseen.
    """
    return f"{ROOT}/{VERSION}/{street}/#" if street else f"{ROOT}/#"


def device_topic(street: str, kind: str, device_id: str, msg_class: MessageClass) -> str:
    return TopicAddress(street, kind, device_id, msg_class).topic


def dispatch_root(drill: bool = False) -> str:
    """Where the platform's notices go: ``dispatch/v1``, or ``drill/v1`` for a drill's (devices/drill.py)."""
    return DRILL_TOPIC_ROOT if drill else DISPATCH_ROOT


def dispatch_topic(street: str, tier: str, place_id: str, role: str, drill: bool = False) -> str:
    """``dispatch/v1/{street}/{tier}/{place}/{role}``: outside ``safety/`` so ingest never reads its own notices
    (docs/mqtt-contract.md, "Dispatch topics"); a micro fire station's is ``…/fire_station/{station}/duty``.

    A drill's notice goes to ``drill/v1/…`` instead: no real terminal, duty phone app or group reads it
    (devices/drill.py); the drill's simulated stations read theirs there. A ``+`` for a segment makes it a
    subscription's filter (every station's duty topic: ``place_id="+"``)."""
    return f"{dispatch_root(drill)}/{street}/{tier}/{place_id}/{role}"


def dispatch_street_filter(street: str, drill: bool = False) -> str:
    """Every notice to one street's responders (``dispatch/v1/{street}/#``; a drill's under ``drill/v1``)."""
    return f"{dispatch_root(drill)}/{street}/#"
