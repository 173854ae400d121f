"""Per-device rate limits on ingest's admission: one noisy device cannot take the disk or the log.

Pure: no I/O, time passed in (milliseconds). Each device has two token buckets:

- **messages** (telemetry and status): ``messages_per_s`` on average, bursts up to
  ``message_burst``. A message over the limit is refused: counted under the device, and
  kept as a dead letter (reason ``rate_limited``) only as a sample (see ``letter``).
  **Events are never refused** (alarms, presses, falls, smoke, tamper: the whole ``event``
  topic class): ``admit`` counts them and says yes, whatever the device sent before. An
  alarm is never dropped for its device's noise; a device flooding its event topic costs
  decoding only, and what is rejected there is bounded by the dead-letter limit below.
- **dead letters**: ``dead_letters_per_s``, bursts up to ``dead_letter_burst``. Past the
  limit a rejected message is only counted (per device and reason), and one in
  ``dead_letter_sample_every`` is still kept so that an operator can see what it sends.

Devices are kept in a bounded map: idle ones (nothing for ``idle_ms``) are forgotten by
``sweep``, and past ``max_devices`` the least recently seen is forgotten at once. A
forgotten device starts again with full buckets; the totals keep its counts.

The device id ``""`` (a topic that names no device) is one shared device: unattributable
junk shares one budget.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

EVENT_CLASS = "event"  # devices.topics.MessageClass.EVENT; a topic's last segment
RATE_LIMITED = "rate_limited"  # the dead-letter reason of a message refused by the message limit


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    messages_per_s: float = 10.0  # the busiest kind sends a heartbeat every few seconds at most
    message_burst: int = 200  # a device back online flushing what it buffered
    dead_letters_per_s: float = 0.2  # kept one by one: 12 a minute per device
    dead_letter_burst: int = 20
    dead_letter_sample_every: int = 1000  # past the limit, keep one rejected message in this many
    max_devices: int = 500_000
    idle_ms: int = 15 * 60_000

    def __post_init__(self) -> None:
        if self.messages_per_s <= 0 or self.dead_letters_per_s <= 0:
            raise ValueError("rates must be positive")
        if self.message_burst < 1 or self.dead_letter_burst < 1 or self.dead_letter_sample_every < 1:
            raise ValueError("bursts and the sampling interval must be at least 1")
        if self.max_devices < 1 or self.idle_ms < 1:
            raise ValueError("max_devices and idle_ms must be at least 1")


class TokenBucket:
    """``burst`` tokens, refilled at ``rate_per_s``; a take spends one. Time in milliseconds, passed in."""

    __slots__ = ("tokens", "updated_ms")

    def __init__(self, burst: int, now_ms: int | None = None) -> None:
        self.tokens = float(burst)
        self.updated_ms = now_ms  # None: full, on the clock of its first take

    def take(self, now_ms: int, rate_per_s: float, burst: int) -> bool:
        if self.updated_ms is None:
            self.updated_ms = now_ms
        elif now_ms > self.updated_ms:  # a clock that steps back refills nothing and spends nothing extra
            self.tokens = min(float(burst), self.tokens + (now_ms - self.updated_ms) * rate_per_s / 1000)
            self.updated_ms = now_ms
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass(slots=True)
class DeviceLimitState:
    messages: TokenBucket
    letters: TokenBucket
    last_ms: int
    events: int = 0  # admitted, never limited
    refused: int = 0  # telemetry and status messages over the limit
    letters_over: int = 0  # rejected messages past the dead-letter limit (kept as a sample or only counted)
    over_since_sample: int = 0
    last_over_ms: int | None = None  # when it last went past either limit
    unstored: Counter[str] = field(default_factory=Counter)  # per reason: rejected, counted, not kept

    def saved(self) -> tuple[object, ...]:
        """What ``admit`` and ``letter`` may change, to put back with ``restore`` (scalars; the per-reason
        counts copied only when there are any: most devices never have a dead letter)."""
        m, lt = self.messages, self.letters
        return (m.tokens, m.updated_ms, lt.tokens, lt.updated_ms, self.last_ms, self.events, self.refused,
                self.letters_over, self.over_since_sample, self.last_over_ms, Counter(self.unstored) if self.unstored
                else None)

    def restore(self, saved: tuple[object, ...]) -> None:
        m, lt = self.messages, self.letters
        (m.tokens, m.updated_ms, lt.tokens, lt.updated_ms, self.last_ms, self.events, self.refused,  # type: ignore[assignment]
         self.letters_over, self.over_since_sample, self.last_over_ms, unstored) = saved
        self.unstored = unstored if unstored is not None else Counter()  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class NoisyDevice:
    device_id: str
    refused: int
    letters_over: int
    unstored: dict[str, int]
    last_over_ms: int


class DeviceRateLimits:
    """The rate limits of every device ingest hears from. Not thread-safe: one ingest worker calls it."""

    def __init__(self, policy: RateLimitPolicy = RateLimitPolicy()) -> None:
        self.policy = policy
        self._devices: OrderedDict[str, DeviceLimitState] = OrderedDict()
        self.total_refused = 0
        self.total_events = 0
        self.total_unstored: Counter[str] = Counter()  # per reason, every device, forgotten ones included
        self._pending_unstored: Counter[str] = Counter()  # the same, since the last take_unstored
        self._over: dict[str, int] = {}  # device -> when it last went past a limit: noisy() looks only here
        self.forgotten = 0
        # inside ``undo_on_error``: each touched device's state (the object and what it held), None if new
        self._journal: dict[str, tuple[DeviceLimitState, tuple[object, ...]] | None] | None = None

    def __len__(self) -> int:
        return len(self._devices)

    def admit(self, device_id: str, msg_class: str, sent_ms: int, seen_ms: int | None = None) -> bool:
        """Whether to process this message. Always True for an event (``msg_class == "event"``).

        ``sent_ms``: the device's own clock (its message bucket runs on it: a backlog sent at the device's pace
        and delivered in a burst is not too fast); ``seen_ms``: ingest's clock (how long a device has been idle),
        ``sent_ms`` if not given.
        """
        state = self._state(device_id, sent_ms if seen_ms is None else seen_ms)
        if msg_class == EVENT_CLASS:
            state.events += 1
            self.total_events += 1
            return True
        p = self.policy
        if state.messages.take(sent_ms, p.messages_per_s, p.message_burst):
            return True
        state.refused += 1
        state.last_over_ms = self._over[device_id] = state.last_ms
        self.total_refused += 1
        return False

    def letter(self, device_id: str, reason: str, now_ms: int) -> bool:
        """Whether to store this dead letter one by one (True), or only count it (False, counted here).

        Within the limit, every letter is stored; past it, the first and then one in
        ``dead_letter_sample_every`` is stored and the others are counted per reason.
        """
        state = self._state(device_id, now_ms)
        p = self.policy
        if state.letters.take(now_ms, p.dead_letters_per_s, p.dead_letter_burst):
            return True
        state.letters_over += 1
        state.last_over_ms = self._over[device_id] = now_ms
        state.over_since_sample += 1
        if state.over_since_sample >= p.dead_letter_sample_every or state.letters_over == 1:
            state.over_since_sample = 0
            return True
        state.unstored[reason] += 1
        self.total_unstored[reason] += 1
        self._pending_unstored[reason] += 1
        return False

    def take_unstored(self) -> Counter[str]:
        """The letters counted but not stored since the last call, per reason (to persist with the store's counts)."""
        out, self._pending_unstored = self._pending_unstored, Counter()
        return out

    def noisy(self, now_ms: int, within_ms: int = 60_000) -> list[NoisyDevice]:
        """Devices past a limit within the last ``within_ms``, the most refused first."""
        since = now_ms - within_ms
        for device_id in [d for d, at in self._over.items() if at < since or d not in self._devices]:
            del self._over[device_id]  # quiet again, or forgotten
        out = [NoisyDevice(d, s.refused, s.letters_over, dict(s.unstored), at)
               for d, at in self._over.items() if (s := self._devices[d])]
        out.sort(key=lambda n: (-(n.refused + n.letters_over), n.device_id))
        return out

    @contextmanager
    def undo_on_error(self) -> Iterator[None]:
        """What is charged inside is taken back if it raises: a batch that did not commit is delivered again,
        and its messages must not pay twice (a batch retried a few times would otherwise use up its devices'
        budgets with the same messages, and refuse them as too fast)."""
        if self._journal is not None:
            raise RuntimeError("undo_on_error does not nest")
        totals = (self.total_refused, self.total_events, Counter(self.total_unstored), Counter(self._pending_unstored),
                  dict(self._over), self.forgotten)
        self._journal = journal = {}
        try:
            yield
        except BaseException:
            (self.total_refused, self.total_events, self.total_unstored, self._pending_unstored, self._over,
             self.forgotten) = totals
            for device_id, before in journal.items():
                if before is None:
                    self._devices.pop(device_id, None)
                else:
                    state, saved = before
                    state.restore(saved)
                    self._devices[device_id] = state
            raise
        finally:
            self._journal = None

    def device(self, device_id: str) -> DeviceLimitState | None:
        return self._devices.get(device_id)

    def sweep(self, now_ms: int) -> int:
        """Forget devices idle for ``idle_ms``; return how many. Cheap to call often: it stops at the first active one."""
        cutoff = now_ms - self.policy.idle_ms
        n = 0
        while self._devices:
            device_id, state = next(iter(self._devices.items()))
            if state.last_ms > cutoff:
                break
            del self._devices[device_id]
            self._over.pop(device_id, None)
            n += 1
        self.forgotten += n
        return n

    def _state(self, device_id: str, now_ms: int) -> DeviceLimitState:
        state = self._devices.get(device_id)
        if (journal := self._journal) is not None and device_id not in journal:
            journal[device_id] = None if state is None else (state, state.saved())
        if state is None:
            p = self.policy
            # each bucket starts on the clock of its first take: an alarm (stamped by the device, maybe far ahead
            # of its buffered telemetry) or a dead letter (stamped by ingest) must not set the telemetry's clock
            state = self._devices[device_id] = DeviceLimitState(
                TokenBucket(p.message_burst), TokenBucket(p.dead_letter_burst), now_ms)
            if len(self._devices) > p.max_devices:
                forgotten, _ = self._devices.popitem(last=False)
                self._over.pop(forgotten, None)
                self.forgotten += 1
        else:
            self._devices.move_to_end(device_id)  # least recently seen first: sweep and eviction take from the front
            if now_ms > state.last_ms:
                state.last_ms = now_ms
        return state
