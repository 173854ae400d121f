"""Every device kind the system understands, by its name on the wire.

Derived from the registered kinds (``devices/kinds/__init__.py``): adding a kind is one folder in
``devices/kinds/`` and one line there.
"""

from __future__ import annotations

from devices.kinds import SLICES
from devices.messages import DeviceKind

KINDS: dict[str, DeviceKind] = {name: s.kind for name, s in SLICES.items()}
