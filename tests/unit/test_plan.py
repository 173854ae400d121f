"""The map's block plan (dashboards/plan.py): located buildings stay put, the rest get a stable place of their own."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from dashboards.plan import PlanInput, layout
from devices.hierarchy import hierarchy_from_dict, load_hierarchy
from devices.street_generator import generate_street


def plan_inputs(h) -> list[PlanInput]:  # type: ignore[no-untyped-def]
    return [PlanInput(b.id, b.community_id, h.communities[b.community_id].area_id, b.x, b.y) for b in h.buildings.values()]


def test_the_streets_own_coordinates_are_kept() -> None:
    h = load_hierarchy()
    plan = layout(plan_inputs(h))
    assert {bid: (p.x, p.y, p.derived) for bid, p in plan.items()} == {
        b.id: (b.x, b.y, False) for b in h.buildings.values()}


def test_the_full_generated_street_is_drawn_where_the_generator_put_it() -> None:
    h = hierarchy_from_dict(generate_street(seed=3))
    plan = layout(plan_inputs(h))
    assert len(plan) == len(h.buildings) >= 477
    assert not any(p.derived for p in plan.values())


def test_buildings_without_coordinates_go_beside_their_community_or_into_a_block_of_their_own() -> None:
    plan = layout([
        PlanInput("a-1", "a", "north", 100, 100), PlanInput("a-2", "a", "north"), PlanInput("a-3", "a", "north"),
        PlanInput("b-1", "b", "north"), PlanInput("b-2", "b", "north"),
    ])
    assert (plan["a-1"].x, plan["a-1"].y, plan["a-1"].derived) == (100, 100, False)
    assert plan["a-2"].derived and plan["a-2"].y > 100 and plan["a-2"].x == 100  # under its community's building
    assert plan["b-1"].x > plan["a-2"].x  # community b has nothing located: a block to the right of everything
    assert plan["b-1"].y == plan["b-2"].y == 100  # its buildings side by side, level with the top


ids = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
coordinate = st.one_of(st.just(0.0), st.floats(min_value=-5000, max_value=5000, allow_nan=False))
buildings = st.lists(st.tuples(ids, st.sampled_from(["c1", "c2", "c3", "c4"]), st.sampled_from(["a1", "a2"]),
                               coordinate, coordinate), max_size=60, unique_by=lambda t: t[0])


@given(buildings)
def test_every_building_gets_one_finite_place_the_same_every_time(rows: list[tuple[str, str, str, float, float]]) -> None:
    items = [PlanInput(*row) for row in rows]
    plan = layout(items)
    assert set(plan) == {b.id for b in items}
    assert all(math.isfinite(p.x) and math.isfinite(p.y) for p in plan.values())
    assert layout(list(reversed(items))) == plan  # the order of the hierarchy file does not move anything
    for b in items:
        if b.located:
            assert (plan[b.id].x, plan[b.id].y, plan[b.id].derived) == (b.x, b.y, False)


@given(buildings)
def test_derived_places_within_a_community_never_coincide(rows: list[tuple[str, str, str, float, float]]) -> None:
    items = [PlanInput(*row) for row in rows]
    plan = layout(items)
    by_community: dict[str, list[tuple[float, float]]] = {}
    for b in items:
        if plan[b.id].derived:
            by_community.setdefault(b.community_id, []).append((plan[b.id].x, plan[b.id].y))
    for places in by_community.values():
        assert len(set(places)) == len(places)
