"""A decoded, validated device message with its address: what ingest hands on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from devices.messages import Message
from devices.topics import MessageClass

if TYPE_CHECKING:
    from devices.registry import DeviceRecord


@dataclass(frozen=True, slots=True)
class Reading:
    street: str
    kind: str
    device_id: str
    msg_class: MessageClass
    message: Message
    received_ms: int  # when ingest received it (the device's own time is message.ts)
    # What hygiene found wrong with it but let through (an alarm is flagged, never dropped): people's
    # words, e.g. "设备时钟偏差 8.0 天（device clock off by 8.0 days）" (ingest/hygiene.py).
    flags: tuple[str, ...] = ()
    # The device's registration as ingest found it when it checked the device is registered: ONE registry
    # lookup a message. Where the device is travels with the reading from there: the rules' place of the
    # device (alerts/context.py, ReadingContext) and the incident's location come from it, not from asking
    # the registry again. None: a reading made elsewhere (a station's answer through the API, a test's);
    # those are placed by asking the registry. Not part of the reading's value (equality, repr).
    registration: DeviceRecord | None = field(default=None, compare=False, repr=False)

    @property
    def type(self) -> str:
        return self.message.type

    @property
    def ts_ms(self) -> int:
        return self.message.ts

    @property
    def seq(self) -> int:
        return self.message.seq
