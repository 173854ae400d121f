"""What every simulated device shares: its address, its sequence counter, a seeded RNG and a timeline.

A simulated device is a pure state machine over simulated time: ``tick(now_ms)`` returns
everything it would have published up to ``now_ms`` (its periodic telemetry at the kind's
real cadence, with a little drift, and whatever was scheduled on it: a cooking episode,
a press, a dispatch answer), each message stamped with the moment it happened. Nothing
here touches a network; ``simulators.population`` and ``simulators.player`` do that.

Seeded and deterministic: the same seed, device id and sequence of calls give the same
messages, byte for byte.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from devices.catalog import KINDS
from devices.messages import SCHEMA_VERSION
from devices.topics import MessageClass, device_topic

Publication = tuple[str, bytes]  # (topic, payload)
Action = Callable[[int], list[Publication]]  # what happens at a moment: the messages it sends
NEVER = 2**62
DRIFT = 0.01  # a device's interval wanders by up to 1 %: a building's heartbeats drift apart
MAX_CATCH_UP = 10_000  # messages one tick may produce after a jump of the clock


@dataclass(frozen=True)
class LoadStream:
    """One stream of the load generator's mix (``simulators/load.py``): one kind of message of the kind.

    ``make`` builds one message from a simulated device of the kind; ``weight`` is its share in the
    default bench mix (``LoadMix()``), ``street_weight`` in the street at its real cadences (``STREET_MIX``).
    """

    make: Callable[[Any, int], Publication]
    weight: float = 0.0
    street_weight: float = 0.0


@dataclass
class SimulatedDevice:
    LOAD_STREAMS: ClassVar[dict[str, LoadStream]] = {}  # the kind's streams in the load mix, by name

    device_id: str
    kind: str
    street: str = "wanli"
    seed: int = 0
    seq: int = 0  # a real device persists its counter; simulators start where they are told
    rng: random.Random = field(init=False, repr=False)
    next_ms: int = field(default=NEVER, init=False, repr=False)  # next periodic message; NEVER before start
    silent: bool = field(default=False, init=False)  # off the network (outage, flat battery): nothing goes out
    last: Publication | None = field(default=None, init=False, repr=False)  # the last message it made (to re-send)
    _timeline: list[tuple[int, int, Action]] = field(default_factory=list, init=False, repr=False)
    _order: itertools.count = field(default_factory=itertools.count, init=False, repr=False)  # type: ignore[type-arg]

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}:{self.device_id}")

    # -- the envelope -------------------------------------------------------------------------------------------------

    def publication(self, msg_class: MessageClass, msg_type: str, now_ms: int, **fields: Any) -> Publication:
        """One message in the contract's envelope; advances the sequence number."""
        self.seq += 1
        body = {"v": SCHEMA_VERSION, "ts": now_ms, "seq": self.seq, "type": msg_type}
        body.update({k: v for k, v in fields.items() if v is not None})
        self.last = (device_topic(self.street, self.kind, self.device_id, msg_class),
                     json.dumps(body, separators=(",", ":")).encode())
        return self.last

    def online(self, now_ms: int) -> Publication:
        return self.publication(MessageClass.STATUS, "online", now_ms, firmware="sim-1.0")

    def offline(self, now_ms: int, reason: str = "connection_lost") -> Publication:
        """What the broker publishes for the device when its connection dies (its last will)."""
        return self.publication(MessageClass.STATUS, "offline", now_ms, reason=reason)

    # -- the timeline -------------------------------------------------------------------------------------------------

    @property
    def interval_ms(self) -> int | None:
        """The kind's real cadence of periodic telemetry (devices/catalog.py), or None for event-only kinds."""
        beat = KINDS[self.kind].heartbeat_s
        return beat * 1000 if beat else None

    def start(self, now_ms: int, phase: float | None = None, announce: bool = True) -> list[Publication]:
        """Power on: say ``online`` and begin the periodic cycle ``phase`` (0..1) of an interval from now."""
        interval = self.interval_ms
        if interval is not None:
            phase = self.rng.random() if phase is None else phase
            self.next_ms = now_ms + int(interval * phase)
        self.on_start(now_ms)
        return [self.online(now_ms)] if announce else []

    def on_start(self, now_ms: int) -> None:
        """Kinds schedule their own daily life here (activity, shift changes)."""

    def periodic(self, at_ms: int) -> list[Publication]:
        """The kind's periodic telemetry at ``at_ms`` (heartbeat, snapshot, meter reading)."""
        return []

    def schedule(self, at_ms: int, action: Action) -> None:
        heapq.heappush(self._timeline, (at_ms, next(self._order), action))

    def due_ms(self) -> int:
        """When this device next has something to do."""
        return min(self.next_ms, self._timeline[0][0]) if self._timeline else self.next_ms

    def tick(self, now_ms: int) -> list[Publication]:
        """Everything due up to ``now_ms``, in time order, each stamped with its own moment."""
        out: list[Publication] = []
        while len(out) < MAX_CATCH_UP:
            at = self.due_ms()
            if at > now_ms:
                break
            if self._timeline and self._timeline[0][0] == at:
                _, _, action = heapq.heappop(self._timeline)
                sent = action(at)
            else:
                sent = self.periodic(at)
                interval = self.interval_ms or NEVER
                self.next_ms = at + int(interval * (1 + self.rng.uniform(-DRIFT, DRIFT)))
            if not self.silent:
                out.extend(sent)
        return out

    def go_silent(self, now_ms: int, last_will: bool = False) -> list[Publication]:
        """Drop off the network (an outage): periodic messages stop going out until ``come_back``."""
        self.silent = True
        return [self.offline(now_ms)] if last_will else []

    def come_back(self, now_ms: int) -> list[Publication]:
        """Back on the network: ``online`` and the periodic cycle resumes at once."""
        self.silent = False
        if self.interval_ms is not None:
            self.next_ms = now_ms + self.rng.randint(0, 5_000)
        return [self.online(now_ms)]


def random_walk(rng: random.Random, value: float, mean: float, step: float, low: float, high: float) -> float:
    """One step of a mean-reverting random walk, kept within [low, high] (signal strength, temperatures)."""
    value += (mean - value) * 0.2 + rng.gauss(0, step)
    return min(high, max(low, value))
