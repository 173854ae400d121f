"""The drill namespace: simulated devices whose ids can never be a real device's.

A drill (the testers' page, ``wanli scenario run --api``, ``wanli simulate``) plays on the live
street, beside real devices. It must never publish as a real device (a real detector's next
alarm would be dead-lettered ``seq_backwards`` behind the simulator's sequence numbers), never
re-register, relabel, move or reactivate one, and never page a real person.

So a drill's devices carry the reserved prefix ``DRILL-`` (``DRILL-SD-XQ01-0301`` is the
drill twin of ``SD-XQ01-0301``, placed in the same unit). The prefix, rather than a flag in
each message, because the id is what every part of the system already keys on: the
registry (a drill registration can only ever touch ``DRILL-`` records), the sequence state
(a twin's numbers are its own), the MQTT topic and credentials, the incident's dedup key and
its ``device_id``. A flag could be forgotten by one publisher, or set by a hostile one on a
real device's message; an id cannot be both a drill's and a real device's.

What follows from a ``DRILL-`` id (docs/incidents.md, "Drills"):
- its incidents are drills (``Incident.drill``): marked 演练 wherever they appear, left out of
  the KPIs and risk profiles, correlated only with other drill devices (a drill alarm and a
  real alarm in one building are never one "suspected fire");
- their notices are drill notices: MQTT on ``drill/v1/…`` instead of ``dispatch/v1/…`` (no real
  terminal or duty topic reads it), never the city webhook, and people only through drill
  contacts (alerts/notify);
- a micro fire station is dispatched as its drill twin (``DRILL-MFS-XQ``), which the drill's
  simulated station answers;
- the dead-man timers do not watch drill devices (a drill ends by its devices going away);
- after the drill its devices are retired (archived, with their history); the next drill
  registers them again and they start a fresh sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from foundation.errors import Invalid

if TYPE_CHECKING:  # the registry imports this module
    from devices.registry import DeviceRecord, DeviceRegistry

DRILL_PREFIX = "DRILL-"
DRILL_TOPIC_ROOT = "drill/v1"  # where drill notices go instead of dispatch/v1 (outside safety/ too)
DRILL_ZH = "演练"


def is_drill(device_id: str) -> bool:
    """A drill device's id (``DRILL-…``, any case)."""
    return device_id[:len(DRILL_PREFIX)].upper() == DRILL_PREFIX


def drill_id(device_id: str) -> str:
    """The drill twin of a real device id (a drill id stays as it is)."""
    return device_id if is_drill(device_id) else f"{DRILL_PREFIX}{device_id}"


def real_id(device_id: str) -> str:
    """The real device a drill twin stands for (a real id stays as it is)."""
    return device_id[len(DRILL_PREFIX):] if is_drill(device_id) else device_id


def refuse_real(device_ids: Iterable[str]) -> None:
    """A drill registers, retires and publishes only drill devices: raise ``Invalid`` naming any other."""
    real = [d for d in device_ids if not is_drill(d)]
    if real:
        more = f" and {len(real) - 3} more" if len(real) > 3 else ""
        raise Invalid(f"a drill may only touch drill devices ({DRILL_PREFIX}…), not {', '.join(real[:3])}{more}")


def register_drill(registry: DeviceRegistry, records: Sequence[DeviceRecord], actor: str, now_ms: int) -> int:
    """Register a drill's devices: only ``DRILL-…`` ids (``Invalid`` otherwise, nothing written).

    A twin left retired by an earlier drill comes back with a fresh sequence (the registry forgets a
    reactivated device's numbers), so each drill numbers its messages from its own start. Returns how
    many were registered anew or reactivated.
    """
    refuse_real(r.device_id for r in records)
    for r in records:  # a twin left active elsewhere (its real device was moved since): archived, then placed anew
        old = registry.find(r.device_id)
        if old is not None and old.lifecycle.value == "active" and old.placement != r.placement:
            registry.retire(r.device_id, actor, now_ms, reason=f"{DRILL_ZH}设备换位")
    outcomes = registry.register_many(records, actor=actor, now_ms=now_ms, drill=True)
    return sum(1 for o in outcomes if o.value in ("created", "reactivated"))


def end_drill(registry: DeviceRegistry, device_ids: Iterable[str], actor: str, now_ms: int) -> int:
    """Archive a drill's devices after it: each active ``DRILL-…`` device among ``device_ids`` is retired (its
    record and history kept, its messages no longer accepted). ``Invalid`` for a real id, nothing retired."""
    ids = list(dict.fromkeys(device_ids))
    refuse_real(ids)
    return len(registry.retire_many(ids, actor, now_ms, reason=f"{DRILL_ZH}结束"))


def active_drill_devices(registry: DeviceRegistry) -> list[str]:
    """Every drill device still registered and active (a drill that did not clean up after itself)."""
    return sorted(r.device_id for r in registry.active() if is_drill(r.device_id))
