"""The rules' view of the registry (alerts/context.py) on a real SQLite registry: a registration, move or
retirement changes the places of its own devices, and nobody else's is built again."""

from alerts.context import RegistryContext
from alerts.rules import default_rules
from alerts.thresholds import Thresholds
from devices.hierarchy import load_hierarchy
from devices.registry import DeviceRecord, DeviceRegistry
from foundation.db import create_schema, make_engine

NOW = 1_795_000_000_000


def test_a_registry_change_updates_only_its_devices_places(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    create_schema(engine)
    registry = DeviceRegistry(engine, load_hierarchy())
    registry.register_many([DeviceRecord(f"SD-{i}", "smoke_detector", "wanli", "xq-01", 1, "0101") for i in range(3)]
                           + [DeviceRecord("EA-1", "elderly_alarm", "wanli", "xq-01", 1, "0101")], actor="t", now_ms=NOW)
    ctx = RegistryContext(registry, Thresholds(default_rules(), lambda d: ""))
    before = ctx.devices("smoke_detector")
    assert [p.device_id for p in before] == ["SD-0", "SD-1", "SD-2"]
    assert ctx.devices("smoke_detector") is before  # kept while nothing changes

    registry.register(DeviceRecord("SD-3", "smoke_detector", "wanli", "xq-02"), "t", NOW)
    registry.move("SD-1", "xq-02", None, "", "t", NOW)
    registry.retire("SD-0", "t", NOW)
    after = ctx.devices("smoke_detector")
    assert [(p.device_id, p.building_id) for p in after] == [("SD-1", "xq-02"), ("SD-2", "xq-01"), ("SD-3", "xq-02")]
    assert after[1] is before[2]  # an untouched device's place is the same object: not built again
    assert [p.device_id for p in ctx.devices("elderly_alarm")] == ["EA-1"]

    fresh = RegistryContext(registry, Thresholds(default_rules(), lambda d: ""))  # what a restart reads
    assert [(p.device_id, p.building_id) for p in fresh.devices("smoke_detector")] == \
        [(p.device_id, p.building_id) for p in after]
