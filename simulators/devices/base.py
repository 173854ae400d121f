"""What every simulated device shares: its address, its sequence counter and a seeded RNG."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from devices.messages import SCHEMA_VERSION
from devices.topics import MessageClass, device_topic

Publication = tuple[str, bytes]  # (topic, payload)


@dataclass
class SimulatedDevice:
    device_id: str
    kind: str
    street: str = "wanli"
    seed: int = 0
    seq: int = 0  # a real device persists its counter; simulators start where they are told
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}:{self.device_id}")

    def publication(self, msg_class: MessageClass, msg_type: str, now_ms: int, **fields: Any) -> Publication:
        """One message in the contract's envelope; advances the sequence number."""
        self.seq += 1
        body = {"v": SCHEMA_VERSION, "ts": now_ms, "seq": self.seq, "type": msg_type}
        body.update({k: v for k, v in fields.items() if v is not None})
        return device_topic(self.street, self.kind, self.device_id, msg_class), json.dumps(body, separators=(",", ":")).encode()

    def online(self, now_ms: int) -> Publication:
        return self.publication(MessageClass.STATUS, "online", now_ms, firmware="sim-1.0")
