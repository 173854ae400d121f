import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.hierarchy import Tier, hierarchy_from_dict, load_hierarchy
from devices.street_generator import device_rows, generate_street
from foundation.errors import NotFound


@pytest.fixture(scope="module")
def wanli():
    return load_hierarchy()


def test_a_device_place_chains_up_to_the_district_with_responders_at_each_tier(wanli):
    chain = wanli.chain("xq-01")
    assert [t.tier for t in chain] == [Tier.BUILDING, Tier.COMMUNITY, Tier.AREA, Tier.STREET, Tier.DISTRICT]
    assert [t.place for t in chain] == ["香泉 1号楼", "香泉居民区", "颐华片区", "万里街道", "普陀区"]
    roles = {t.tier: {r.role for r in t.responders} for t in chain}
    assert roles[Tier.BUILDING] == {"building_leader"}
    assert {"property", "community_police", "residents_committee"} <= roles[Tier.COMMUNITY]
    assert "grid_patroller" in roles[Tier.AREA]
    assert "street_ops" in roles[Tier.STREET]
    assert {"district_ops", "fire_rescue"} <= roles[Tier.DISTRICT]
    assert [r.phone for r in wanli.responders_at("xq-01", Tier.DISTRICT) if r.role == "fire_rescue"] == ["119"]


def test_the_nearest_covering_micro_fire_station(wanli):
    # fp-01 is covered by two stations; 颐华's (80.6 m) is nearer than 香泉's (87.3 m).
    assert {s.id for s in wanli.stations_covering("fp-01")} == {"MFS-XQ", "MFS-YH"}
    nearest = wanli.nearest_station("fp-01")
    assert nearest is not None and nearest.id == "MFS-YH"
    assert wanli.distance_m(nearest, "fp-01") == pytest.approx(80.6, abs=0.1)
    assert wanli.distance_m(wanli.fire_stations["MFS-XQ"], "fp-01") == pytest.approx(87.3, abs=0.1)
    assert wanli.nearest_station("zh-01").id == "MFS-ZH"


def test_an_elderly_household_has_its_family_contacts(wanli):
    home = wanli.household("xq-01", "0601")
    assert home is not None and "王阿婆" in home.resident
    assert {c.role for c in home.contacts} == {"family", "community_doctor"}
    assert wanli.household("xq-01", "0602") is None


def test_locations_have_names_for_people(wanli):
    assert wanli.locate("yh-01", 12, "1203").label() == "颐华居民区 颐华 1号楼 12层 1203室"
    assert wanli.locate("yh-01", -1).label() == "颐华居民区 颐华 1号楼 地下1层"
    assert wanli.locate().label() == "万里街道"
    with pytest.raises(NotFound):
        wanli.locate("nowhere")


def test_the_generated_street_has_477_high_rises_every_one_covered_by_a_station():
    street = hierarchy_from_dict(generate_street(seed=0))
    assert sum(b.high_rise for b in street.buildings.values()) == 477
    assert len(street.buildings) == 477 + 160
    assert {"香泉居民区", "中环家园居民区", "中骏天誉居民区", "凯旋花园居民区"} <= {c.name for c in street.communities.values()}
    assert all(street.stations_covering(b) for b in street.buildings)
    assert all(len(street.chain(b)) == 5 for b in list(street.buildings)[:20])
    for b in street.buildings.values():
        assert 0 <= b.x <= 1800 and 0 <= b.y <= 1800


def test_the_generated_street_is_deterministic_and_its_devices_unique():
    assert generate_street(seed=3) == generate_street(seed=3)
    assert generate_street(seed=3) != generate_street(seed=4)
    rows = device_rows(generate_street(seed=0))
    assert len(rows) > 40_000
    assert len({r[0] for r in rows}) == len(rows)
    kinds = {r[1] for r in rows}
    assert kinds == {"smoke_detector", "charging_station", "fire_station", "elderly_alarm", "water_meter", "lift_camera"}


@given(st.integers(min_value=0, max_value=10_000))
def test_nearest_station_is_never_farther_than_any_covering_station(seed):
    street = hierarchy_from_dict(generate_street(seed=seed, high_rise=30, low_rise=10, extra_communities=0))
    for b in street.buildings:
        nearest = street.nearest_station(b)
        assert nearest is not None
        covering = street.stations_covering(b)
        best = min(math.hypot(s.x - street.buildings[b].x, s.y - street.buildings[b].y) for s in covering)
        assert street.distance_m(nearest, b) == pytest.approx(best)
