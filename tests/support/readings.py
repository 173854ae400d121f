"""A decoded reading as ingest hands it on to the registry, the rules and the telemetry store."""

from __future__ import annotations

from typing import Any

from devices.reading import Reading
from devices.topics import MessageClass


def reading(kind: str, message: Any, device: str, *, street: str = "wanli", msg_class: MessageClass | None = None,
            received_ms: int | None = None) -> Reading:
    """``message`` from ``device`` as a Reading: its own class unless ``msg_class`` says, received when it was stamped
    (``message.ts``) unless ``received_ms`` says."""
    return Reading(street, kind, device, message.CLASS if msg_class is None else msg_class, message,
                   received_ms=message.ts if received_ms is None else received_ms)
