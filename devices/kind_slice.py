"""What a device kind is as a vertical slice: everything the system needs to know about one kind.

A kind lives in one folder, ``devices/kinds/<kind>/``. Its ``__init__.py`` defines ``SLICE``, a
``KindSlice``: the contract (its ``DeviceKind``), the words people read (the wall's short label,
the testers' words for its conditions, the prefix of its device ids), where its devices are placed
in a street (``Placement``), and where its rules and its simulator are. ``devices/kinds/__init__.py``
registers it with one line, and everything else is derived from the registered slices:

* the catalog (``devices/catalog.py``), so decoding and the API know the kind;
* the rule registry (``alerts/rules/__init__.py``) from ``rules``;
* the simulators (``simulators/devices/__init__.py``) from ``simulator``, and the load generator's
  mix (``simulators/load.py``) from the simulator's ``LOAD_STREAMS``;
* street generation and the simulated populations (``devices/placement.py``) from ``placement``;
* the labels of the wall and the testers' page (``GET /api/device-kinds``, ``simulators/expectations.py``);
* the bench's topic families (``tooling/bench_workers.py``);
* the scenario library (``simulators/scenarios/__init__.py``) from ``scenarios``.

The slice itself sits in the devices layer (docs/layers.md): it names its rules and simulator
modules by their dotted path and never imports them; the layer that needs them loads them
(``alerts.rules`` the rules, ``simulators.devices`` the simulator, ``simulators.scenarios`` the
scenarios). In the folder, the modules named ``rules`` are of the alerts layer, ``simulator`` and
``scenario`` of the simulators layer; the rest is the devices layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from devices.hierarchy import Building, FireStation, Household
from devices.messages import DeviceKind

Row = tuple[str, str, str, int | None, str, str]  # one registration: (device id, kind, building, floor, unit, label)


def building_code(building_id: str) -> str:
    """The building's part of a device id: ``xq-01`` -> ``XQ01``."""
    return building_id.upper().replace("-", "")


@dataclass(frozen=True)
class Placement:
    """Where a street has devices of the kind; each hook gives the registration rows for one place.

    ``building`` is called for every building with its index in its community, ``household`` for
    every household of an elderly person living alone, ``station`` for every micro fire station
    with the building it is registered at (its community's first).
    """

    building: Callable[[Building, int], list[Row]] | None = None
    household: Callable[[Household], list[Row]] | None = None
    station: Callable[[FireStation, str], list[Row]] | None = None

    @property
    def places_any(self) -> bool:
        """Whether a street has devices of the kind at all (an unplaced kind is registered by hand)."""
        return any((self.building, self.household, self.station))


@dataclass(frozen=True)
class KindSlice:
    """One device kind, whole. ``rules`` and ``simulator`` are dotted paths (loaded by their layers)."""

    kind: DeviceKind
    short_label: str  # the word on the wall and the testers' page: 烟感, 电梯摄像头
    id_prefix: str  # the kind's device ids begin ``<prefix>-``: SD, LC, ...
    rules: str  # the module whose ``RULES`` are the kind's rule classes
    simulator: str  # "module:Class" of its simulated device
    placement: Placement = Placement()
    scenarios: tuple[str, ...] = ()  # modules defining a SCENARIO of the kind (the scenario library finds them)
    conditions_zh: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # its incidents' conditions

    @property
    def name(self) -> str:
        return self.kind.name
