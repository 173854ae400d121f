"""Recognising a message seen before, by the device's sequence number. Pure.

Per device we keep the highest sequence number seen and a bitmap of the ``WINDOW`` numbers
at and below it. A number above the highest is new; one inside the window is new unless its
bit is set (a QoS 1 redelivery, a device re-sending); one below the window is rejected as
going backwards (a replay, or a device that lost its counter) — except a small number after
a large one, which is a device whose counter restarted (``reset``: accepted, counted, and
the state starts again). The state is stored with the device, in the same transaction as
the incidents its messages raised, so this holds across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

WINDOW = 62  # fits a signed 64-bit column in SQLite and PostgreSQL
RESET_BELOW = 16  # a counter that restarted begins again near zero
_MASK = (1 << WINDOW) - 1


class Verdict(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    BACKWARDS = "backwards"
    RESET = "reset"


@dataclass(frozen=True, slots=True)
class SeqState:
    highest: int
    window: int  # bit d set: highest - d has been seen


def judge(state: SeqState | None, seq: int) -> tuple[Verdict, SeqState | None]:
    """The verdict on ``seq`` and the state after it (unchanged for a duplicate or a backwards number)."""
    if state is None:
        return Verdict.NEW, SeqState(seq, 1)
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
    return Verdict.BACKWARDS, state
