"""A decoded, validated device message with its address: what ingest hands on."""

from __future__ import annotations

from dataclasses import dataclass

from devices.messages import Message
from devices.topics import MessageClass


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

    @property
    def type(self) -> str:
        return self.message.type

    @property
    def ts_ms(self) -> int:
        return self.message.ts

    @property
    def seq(self) -> int:
        return self.message.seq
