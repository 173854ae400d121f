"""A generated Wanli street at full size, for simulators and benchmarks.

477 high-rise buildings (the street's count) and their lower-rise neighbours, spread over
the residential communities named in the brief and a few generated ones, in four grid
areas, with a micro fire station per community covering its own buildings and any other
within reach, responders on every node and households of elderly people living alone.
Seeded and deterministic: the same seed gives the same street. The output has the shape
of ``devices/data/wanli.json``, so ``load_hierarchy`` reads either.
"""

from __future__ import annotations

import math
import random
from typing import Any

from devices.hierarchy import hierarchy_from_dict
from devices.placement import place_rows

NAMED_COMMUNITIES = [  # (id, code, name, road) from the brief
    ("xiangquan", "XQ", "香泉居民区", "新村路"), ("zhonghuanjiayuan", "ZH", "中环家园居民区", "广泉路"),
    ("zhongjuntianyu", "ZJ", "中骏天誉居民区", "富水路"), ("fuping", "FP", "富平居民区", "富平路"),
    ("jiaoji", "JJ", "交暨居民区", "交暨路"), ("yihua", "YH", "颐华居民区", "富平路"),
    ("wanlimingxuan", "MX", "万里名轩居民区", "交暨路"), ("wanliyazhu", "YZ", "万里雅筑居民区", "新村路"),
    ("kaixuanhuayuan", "KX", "凯旋花园居民区", "广泉路"), ("zhonghuanhuayuan", "HY", "中环花苑居民区", "富水路"),
]
AREAS = [("yihua", "颐华片区"), ("zhonghaoyun", "中浩云片区"), ("fushui", "富水片区"), ("guangquan", "广泉片区")]
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
STREET_SIZE_M = 1800.0  # about 3.3 km²
STATION_REACH_M = 450.0  # a micro fire station reaches buildings within this in 3 minutes on foot


def generate_street(seed: int = 0, high_rise: int = 477, low_rise: int = 160, extra_communities: int = 8) -> dict[str, Any]:
    rng = random.Random(seed)
    communities = list(NAMED_COMMUNITIES) + [
        (f"wanli{n:02d}", f"W{n:02d}", f"万里第{n}居民区", rng.choice(["新村路", "富平路", "广泉路", "交暨路", "富水路"]))
        for n in range(11, 11 + extra_communities)
    ]
    # Each community gets a block of the street's plan on a grid, and its buildings near it.
    cols = math.ceil(math.sqrt(len(communities)))
    cell = STREET_SIZE_M / cols
    kinds = ["high"] * high_rise + ["low"] * low_rise
    rng.shuffle(kinds)
    per_community: list[list[str]] = [[] for _ in communities]
    for i, k in enumerate(kinds):
        per_community[i % len(communities)].append(k)

    def person(prefix: str) -> str:
        return f"{prefix} {rng.choice(SURNAMES)}{rng.choice('伟娜敏静磊洋勇艳杰娟强军')}"

    def phone(prefix: str = "138") -> str:
        return f"{prefix}{rng.randrange(10**8):08d}"

    areas: dict[str, dict[str, Any]] = {
        aid: {"id": aid, "name": name, "communities": [],
              "responders": [{"role": "grid_patroller", "name": person("网格巡查员"), "phone": phone()},
                             {"role": "area_leader", "name": person("片区长"), "phone": phone()}]}
        for aid, name in AREAS
    }
    households, stations = [], []
    for ci, ((cid, code, name, road), blocks) in enumerate(zip(communities, per_community, strict=True)):
        cx, cy = (ci % cols + 0.5) * cell, (ci // cols + 0.5) * cell
        buildings = []
        for bi, k in enumerate(blocks, start=1):
            floors = rng.randint(12, 33) if k == "high" else rng.randint(5, 7)
            bid = f"{code.lower()}-{bi:02d}"
            buildings.append({
                "id": bid, "name": f"{name.removesuffix('居民区')} {bi}号楼", "floors": floors,
                "units_per_floor": rng.choice([2, 4, 4, 6]) if k == "high" else 2,
                "x": round(cx + rng.uniform(-cell / 2.4, cell / 2.4), 1), "y": round(cy + rng.uniform(-cell / 2.4, cell / 2.4), 1),
                "responders": [{"role": "building_leader", "name": person("楼组长"), "phone": phone("137")}],
            })
            homes = {(rng.randint(1, floors), rng.randint(1, 2)) for _ in range(rng.randint(1, 8) if k == "high" else rng.randint(0, 3))}
            for floor, u in sorted(homes):  # households of elderly people living alone
                households.append({
                    "building": bid, "unit": f"{floor:02d}{u:02d}",
                    "resident": f"{rng.choice(SURNAMES)}{rng.choice(['阿婆', '老伯', '奶奶', '爷爷'])} ({rng.randint(72, 95)}岁, 独居)",
                    "contacts": [{"role": "family", "name": person("家属"), "phone": phone("136")},
                                 {"role": "community_doctor", "name": person("社区医生"), "phone": phone("135")}],
                })
        areas[AREAS[ci % len(AREAS)][0]]["communities"].append({
            "id": cid, "code": code, "name": name, "road": road, "buildings": buildings,
            "responders": [{"role": "property", "name": f"{name.removesuffix('居民区')}物业 保安室", "phone": phone("021")},
                           {"role": "residents_committee", "name": f"{name.removesuffix('居民区')}居委会", "phone": phone("021")},
                           {"role": "community_police", "name": person("社区民警"), "phone": phone("139")}],
        })
        stations.append({"id": f"MFS-{code}", "name": f"{name.removesuffix('居民区')}微型消防站", "community": cid,
                         "x": round(cx, 1), "y": round(cy, 1), "covers": [],
                         "responders": [{"role": "fire_station_duty", "name": f"{code} 微站值班", "phone": phone("021")}]})
    all_buildings = [b for a in areas.values() for c in a["communities"] for b in c["buildings"]]
    for s in stations:
        own = {b["id"] for a in areas.values() for c in a["communities"] if c["id"] == s["community"] for b in c["buildings"]}
        near = {b["id"] for b in all_buildings if math.hypot(b["x"] - s["x"], b["y"] - s["y"]) <= STATION_REACH_M}
        s["covers"] = sorted(own | near)
    return {
        "district": {"id": "putuo", "name": "普陀区", "responders": [
            {"role": "district_ops", "name": "普陀区城运中心", "phone": "021-52560000"},
            {"role": "fire_rescue", "name": "普陀区消防救援支队", "phone": "119"},
            {"role": "emergency_management", "name": "普陀区应急管理局", "phone": "021-52560119"}]},
        "street": {"id": "wanli", "name": "万里街道", "responders": [
            {"role": "street_ops", "name": "万里街道城运中心 值班长", "phone": "021-66520000"},
            {"role": "tech_duty", "name": "万里街道城运中心 技术值班", "phone": "021-66520119"}]},
        "areas": [a for a in areas.values() if a["communities"]],
        "households": households,
        "fire_stations": stations,
    }


def device_rows(street: dict[str, Any]) -> list[tuple[str, str, str, int | None, str, str]]:
    """One registration row per device of the generated street: (id, kind, building, floor, unit, label).

    Where each kind's devices go is the kind's own placement (``devices/placement.py``).
    """
    return place_rows(hierarchy_from_dict(street), whole_street=True)
