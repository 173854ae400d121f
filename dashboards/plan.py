"""The street's block plan for the map: where each building is drawn, as a pure function.

Buildings with coordinates in the hierarchy (metres in the street's own plan) are drawn
there. A building without them (x = y = 0: the hierarchy file did not say) gets a place
derived from its community, so the plan is the same on every screen and every restart:
beside its community's located buildings if it has any, else in a block of its own on a
grid after every located building, blocks ordered by area and community. Like the schematic
block plans of fire-alarm monitoring centres: faithful in grouping, not a survey.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

SPACING_M = 40.0  # between derived buildings of one community
BLOCK_GAP_M = 80.0  # between derived community blocks


@dataclass(frozen=True, slots=True)
class PlanInput:
    id: str
    community_id: str
    area_id: str
    x: float = 0.0
    y: float = 0.0

    @property
    def located(self) -> bool:
        return (self.x, self.y) != (0.0, 0.0) and math.isfinite(self.x) and math.isfinite(self.y)


@dataclass(frozen=True, slots=True)
class PlanPoint:
    x: float
    y: float
    derived: bool  # placed by this module, not by the hierarchy


def layout(buildings: Sequence[PlanInput]) -> dict[str, PlanPoint]:
    """Where to draw every building, by id."""
    out: dict[str, PlanPoint] = {b.id: PlanPoint(b.x, b.y, False) for b in buildings if b.located}
    unlocated: dict[str, list[PlanInput]] = {}
    for b in buildings:
        if not b.located:
            unlocated.setdefault(b.community_id, []).append(b)
    if not unlocated:
        return out
    located_by_community: dict[str, list[PlanPoint]] = {}
    for b in buildings:
        if b.located:
            located_by_community.setdefault(b.community_id, []).append(out[b.id])
    max_x = max((p.x for p in out.values()), default=0.0)
    min_y = min((p.y for p in out.values()), default=0.0)

    # Communities with located buildings: the missing ones in rows under their neighbours.
    orphans: list[list[PlanInput]] = []
    for community in sorted(unlocated, key=lambda c: (min(b.area_id for b in unlocated[c]), c)):
        members = sorted(unlocated[community], key=lambda b: b.id)
        anchors = located_by_community.get(community)
        if not anchors:
            orphans.append(members)
            continue
        left = min(p.x for p in anchors)
        below = max(p.y for p in anchors) + SPACING_M
        per_row = max(1, math.ceil(math.sqrt(len(members))))
        for i, b in enumerate(members):
            out[b.id] = PlanPoint(left + (i % per_row) * SPACING_M, below + (i // per_row) * SPACING_M, True)
            max_x = max(max_x, out[b.id].x)

    # Communities with none: square blocks on a grid to the right of everything located.
    if orphans:
        side = max(max(1, math.ceil(math.sqrt(len(m)))) for m in orphans)
        block = side * SPACING_M + BLOCK_GAP_M
        cols = max(1, math.ceil(math.sqrt(len(orphans))))
        origin_x = (max_x + BLOCK_GAP_M) if out else 0.0
        for n, members in enumerate(orphans):
            bx, by = origin_x + (n % cols) * block, min_y + (n // cols) * block
            per_row = max(1, math.ceil(math.sqrt(len(members))))
            for i, b in enumerate(members):
                out[b.id] = PlanPoint(bx + (i % per_row) * SPACING_M, by + (i // per_row) * SPACING_M, True)
    return out
