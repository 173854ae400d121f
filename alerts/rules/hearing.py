"""Which rule hears which reading of a batch: every reading that can change a rule, and no other (issue 18).

Handing every reading to every rule of its kind that acts on its message type cost about
4 µs a smoke detector's heartbeat, nearly all of it to learn that a battery at 90 % is not
low and that the detector is alive; a street sends little else. Two declarations beside a
rule (``alerts/rules/base.py``) let the engine leave that out without ever leaving out an
alarm:

- ``Rule.quiet(readings, ctx)``: over the batch's readings of one kind and message type at
  once (vectorised where it can be), those that provably raise nothing, clear nothing and
  change none of the rule's state. They are not handed to ``on_reading``; every other one
  is, in its order, and judged exactly as before. A threshold the rule compares with may
  differ per device: ``quiet`` compares with the threshold's whole span
  (``Thresholds.span``), so a reading is quiet only if it is inside the bound for every
  device of the kind, whichever it came from.
- ``Rule.notes_only``: a rule whose ``on_reading`` only notes that a device was heard (the
  dead-man timers, the one-touch alarm's inactivity watch) gets the batch's readings of its
  kinds in one ``note``, in their order: the device's last-seen is always kept.

What comes out is what calling every rule on every reading made: the same signals in the same
order (hence the same incidents), and the same rule state (hence the same checkpoints). A
property test checks it for every kind over random readings (tests/unit/test_rules_hearing.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from alerts.incidents import Signal
from alerts.rules.base import Rule, RuleContext
from devices.reading import Reading

RulesFor = Callable[[str, type], Sequence[Rule]]  # (kind, message type) → the rules that act on it, in order


def plan(readings: Sequence[Reading], rules_for: RulesFor, ctx: RuleContext,
         ) -> tuple[dict[int, list[Rule]], list[tuple[Rule, list[int]]], dict[type, list[int]]]:
    """(reading index → the rules to hand it to, in their order; each notes-only rule with the indices it notes;
    the readings' indices by message type)."""
    groups: dict[tuple[str, type], list[int]] = {}
    for i, reading in enumerate(readings):
        key = (reading.kind, type(reading.message))
        group = groups.get(key)
        if group is None:
            groups[key] = [i]
        else:
            group.append(i)
    by_type: dict[type, list[int]] = {}
    calls: dict[int, list[Rule]] = {}
    notes: dict[int, tuple[Rule, list[int]]] = {}  # by id(rule): rules need not be hashable
    for (kind, message_type), indices in groups.items():
        by_type.setdefault(message_type, []).extend(indices)
        group_readings: list[Reading] | None = None
        for rule in rules_for(kind, message_type):
            if rule.notes_only:
                notes.setdefault(id(rule), (rule, []))[1].extend(indices)
                continue
            if group_readings is None:
                group_readings = [readings[i] for i in indices]
            quiet = rule.quiet(group_readings, ctx)
            heard = indices if quiet is None else [indices[j] for j in np.flatnonzero(~quiet).tolist()]
            for i in heard:
                rules = calls.get(i)
                if rules is None:
                    calls[i] = [rule]
                else:
                    rules.append(rule)
    return calls, [(rule, sorted(indices)) for rule, indices in notes.values()], by_type


def hear(readings: Sequence[Reading], rules_for: RulesFor, ctx: RuleContext, now_ms: int,
         before: tuple[type, Callable[[Reading], object]] | None = None,
         heard: Callable[[Reading], None] | None = None) -> list[Signal]:
    """What the rules say about a batch of readings, in the order calling each on each reading said it.

    ``before`` (a message type, a step): the step is taken for each reading of that type, in the readings'
    order, before any rule hears it (the engine's station step: a dispatch answer moves its incident).
    ``heard``: told of each reading before its rules hear it (the context that places the reading's own device
    from the registration it carries, ``alerts.context.ReadingContext``)."""
    calls, notes, by_type = plan(readings, rules_for, ctx)
    for rule, indices in notes:
        rule.note([readings[i] for i in indices], ctx, now_ms)
    picked: set[int] = set()
    if before is not None:
        picked = {i for t, indices in by_type.items() if issubclass(t, before[0]) for i in indices}
    signals: list[Signal] = []
    for i in sorted(calls.keys() | picked):
        reading = readings[i]
        if i in picked:
            before[1](reading)  # type: ignore[index] - picked only with ``before``
        rules = calls.get(i, ())
        if rules and heard is not None:
            heard(reading)
        for rule in rules:
            said = rule.on_reading(reading, ctx, now_ms)
            if reading.flags:  # hygiene let it through flagged: the incident says so
                said = [replace(s, flags=(*s.flags, *reading.flags)) for s in said]
            signals.extend(said)
    return signals
