"""The payload envelope every device message shares, and what a device kind is.

A payload is one JSON object. Every message carries the envelope fields

    v    schema version of the payload contract (1)
    ts   the device's own clock: milliseconds since the Unix epoch, UTC
    seq  the device's sequence number: +1 per message, across all its topics
    type which message of the kind's vocabulary this is (the union's tag)

and then the fields of its type. Decoding uses msgspec tagged unions: one decoder per
(kind, topic class), so a payload is parsed and validated in one pass in C.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Union

import msgspec

from devices.topics import MessageClass
from foundation.errors import PayloadError

SCHEMA_VERSION = 1

Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Dbm = Annotated[int, msgspec.Meta(ge=-150, le=0)]
Celsius = Annotated[float, msgspec.Meta(ge=-60, le=1200)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]
ShortText = Annotated[str, msgspec.Meta(max_length=200)]
LongText = Annotated[str, msgspec.Meta(max_length=2000)]
IsoDate = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]

Scalar = int | float | bool | str
Point = tuple[dict[str, str], dict[str, Scalar]]  # (extra tags, fields) of one time-series point


_TAG_OF: dict[type, str] = {}  # a message class's ``type`` (its tag)


class Message(msgspec.Struct, kw_only=True, tag_field="type", frozen=True):
    """Envelope fields. Subclasses set ``tag`` (the ``type`` value) and ``CLASS``."""

    CLASS: ClassVar[MessageClass]

    v: Annotated[int, msgspec.Meta(ge=1, le=SCHEMA_VERSION)]
    ts: Annotated[int, msgspec.Meta(ge=0, le=10**14)]
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**53)]

    @property
    def type(self) -> str:
        # ``__struct_config__`` builds a new config object at every access: the tag is kept per class
        cls = self.__class__
        tag = _TAG_OF.get(cls)
        if tag is None:
            tag = _TAG_OF[cls] = self.__struct_config__.tag  # type: ignore[assignment]
        return tag  # type: ignore[return-value]

    def tampered(self) -> bool | None:
        """A health hook: what this message says about tampering (True: removed from its base, False: put
        back), or None when it says nothing (every message but a kind's tamper event)."""
        return None

    def points(self) -> list[Point]:
        """The time-series points this message becomes; one point of its scalar fields by default."""
        return [({}, scalar_fields(self))]


DispatchId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class DispatchAnswer(Message):
    """A hook: a message answering a dispatch the alert engine sent (a micro fire station's steps). It moves the
    incident the dispatch was for, when it comes from the place the dispatch went to. Each answer declares the
    incident action it takes (``ANSWERS``: acknowledge, dispatch, arrive or resolve) and its words on the
    incident's trail (``STEP_ZH``); the alert engine knows no kind's answers by name."""

    CLASS = MessageClass.EVENT
    ANSWERS: ClassVar[str]
    STEP_ZH: ClassVar[str]

    dispatch_id: DispatchId


_ENVELOPE_SKIP = frozenset({"v", "ts"})
_SCALAR_TYPES = frozenset({int, float, bool, str})
_FIELD_NAMES: dict[tuple[type, frozenset[str]], tuple[str, ...]] = {}


def scalar_fields(msg: msgspec.Struct, skip: frozenset[str] = _ENVELOPE_SKIP) -> dict[str, Scalar]:
    """Fields worth storing as time-series values: numbers, booleans and short strings (None and lists left out)."""
    key = (type(msg), skip)
    names = _FIELD_NAMES.get(key)
    if names is None:
        names = _FIELD_NAMES[key] = tuple(n for n in msg.__struct_fields__ if n not in skip)
    return {n: v for n in names if type(v := getattr(msg, n)) in _SCALAR_TYPES}


# Status messages are common to every kind: a device publishes `online` when it connects
# and sets `offline` as its MQTT last will, so the broker announces a lost connection.
class Online(Message, tag="online"):
    CLASS = MessageClass.STATUS
    firmware: ShortText = ""


class Offline(Message, tag="offline"):
    CLASS = MessageClass.STATUS
    reason: Annotated[str, msgspec.Meta(max_length=64)] = "connection_lost"


STATUS_MESSAGES: tuple[type[Message], ...] = (Online, Offline)


class _TypeRequired(Message, tag=""):
    """A second member for a topic class with one message type: msgspec reads a union of one as that
    struct alone, whose tag is then optional; in a union of two the ``type`` field is required. No
    message has the empty type, so a payload that decodes to this is refused as ``unknown_type``."""


@dataclass(frozen=True)
class DeviceKind:
    """A kind of device: its name on the wire, its label for people, and its vocabulary."""

    name: str
    label_zh: str
    messages: tuple[type[Message], ...]
    heartbeat_s: int | None = None  # nominal interval of its periodic telemetry; None: it reports only events
    _decoders: dict[MessageClass, msgspec.json.Decoder] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        decoders: dict[MessageClass, msgspec.json.Decoder] = {}
        for cls in MessageClass:
            members = [m for m in (*self.messages, *STATUS_MESSAGES) if m.CLASS is cls]
            if len(members) == 1:
                members.append(_TypeRequired)
            if members:
                decoders[cls] = msgspec.json.Decoder(Union[tuple(members)])  # noqa: UP007 - runtime union of types
        object.__setattr__(self, "_decoders", decoders)

    def message_types(self, msg_class: MessageClass | None = None) -> list[str]:
        return [m.__struct_config__.tag for m in (*self.messages, *STATUS_MESSAGES) if msg_class in (None, m.CLASS)]  # type: ignore[misc]

    def decode(self, msg_class: MessageClass, payload: bytes) -> Message:
        """Parse and validate one payload published on a topic of ``msg_class``."""
        decoder = self._decoders.get(msg_class)
        if decoder is None:
            raise PayloadError(f"{self.name} publishes nothing on {msg_class.value} topics", reason="wrong_class")
        try:
            msg = decoder.decode(payload)
        except msgspec.ValidationError as exc:
            text = str(exc)
            if "Invalid value" in text and "`$.type`" in text:
                raise PayloadError(
                    f"{text}; {msg_class.value} messages of {self.name} are: {', '.join(self.message_types(msg_class))}",
                    reason="unknown_type",
                ) from None
            if text == "Object missing required field `type`":
                raise PayloadError(
                    f"{text}; {msg_class.value} messages of {self.name} are: {', '.join(self.message_types(msg_class))}",
                    reason="missing_type",
                ) from None
            if text.startswith("Object missing required field"):
                raise PayloadError(text, reason="missing_field") from None
            raise PayloadError(text, reason="invalid_field") from None
        except msgspec.DecodeError as exc:
            raise PayloadError(f"not valid JSON: {exc}", reason="bad_json") from None
        except UnicodeDecodeError as exc:  # invalid UTF-8 inside a string: msgspec lets Python's error through
            raise PayloadError(f"not valid UTF-8: {exc}", reason="bad_utf8") from None
        except RecursionError:  # ingest checks the depth first (ingest/decode.py); this is the last line
            raise PayloadError("JSON nested too deep to decode", reason="too_deep") from None
        if type(msg) is _TypeRequired:
            raise PayloadError(
                f"Invalid value '' - at `$.type`; {msg_class.value} messages of {self.name} are: "
                f"{', '.join(self.message_types(msg_class))}", reason="unknown_type")
        return msg

