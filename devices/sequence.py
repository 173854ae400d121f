"""Recognising a message seen before, by the device's sequence number. Pure.

Per device we keep the highest sequence number seen and a bitmap of the ``WINDOW`` numbers
at and below it. A number above the highest is new; one inside the window is new unless its
bit is set (a QoS 1 redelivery, a device re-sending); one below the window is rejected as
going backwards (a replay, or a device that lost its counter) — except a small number after
a large one, which is a device whose counter restarted (``reset``: accepted, counted, and
the state starts again). A number more than ``JUMP_ABOVE`` past the highest (or as far behind it) is a ``jump``
(a firmware glitch, a bad client: 2^53 after 4,000): taken, but the state does not move, so one
absurd number cannot mute the device for good; what a device whose counter really moved
does is the registry's (``DeviceState.judge``). The state is stored with the device, in the
same transaction as the incidents its messages raised, so this holds across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

WINDOW = 62  # fits a signed 64-bit column in SQLite and PostgreSQL
RESET_BELOW = 16  # a counter that restarted begins again near zero
JUMP_ABOVE = 1_000_000  # a device sends one message a minute: this is two years of them at once
_MASK = (1 << WINDOW) - 1


class Verdict(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    BACKWARDS = "backwards"
    RESET = "reset"
    JUMP = "jump"


@dataclass(frozen=True, slots=True)
class SeqState:
    highest: int
    window: int  # bit d set: highest - d has been seen


def judge(state: SeqState | None, seq: int) -> tuple[Verdict, SeqState | None]:
    """The verdict on ``seq`` and the state after it (unchanged for a duplicate, a backwards number or a jump)."""
    if state is None:
        return Verdict.NEW, SeqState(seq, 1)
    if seq > state.highest + JUMP_ABOVE:
        return Verdict.JUMP, state
    if seq > state.highest:
        shift = seq - state.highest
        window = ((state.window << shift) | 1) & _MASK if shift < WINDOW else 1
        return Verdict.NEW, SeqState(seq, window)
    distance = state.highest - seq
    if distance < WINDOW:
        bit = 1 << distance
        if state.window & bit:
            return Verdict.DUPLICATE, state
        return Verdict.NEW, SeqState(state.highest, state.window | bit)
    if seq < RESET_BELOW:
        return Verdict.RESET, SeqState(seq, 1)
    if distance > JUMP_ABOVE:  # as far behind: perhaps the highest was the absurd one
        return Verdict.JUMP, state
    return Verdict.BACKWARDS, state
