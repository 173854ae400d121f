"""The policies API on a running service (issue 16): administrators only (exact roles in the OpenAPI), a draft
that does not validate is a 422 that says what is wrong, a stale edit a 409, the version in force survives a
restart of the store, and a seed file chosen by WANLI_POLICY_FILE is version 1."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from alerts.policies import default_document_text
from alerts.policy_store import PolicyStore, load_in_force
from tests.fixtures.service import ServiceFactory


def test_only_an_admin_edits_policies_and_bad_drafts_get_a_clear_4xx(service_factory: ServiceFactory,
                                                                      tmp_path: Path) -> None:
    seed = json.loads(default_document_text())
    seed["policies"]["charging"]["steps"][0]["ack_within_s"] = 600
    seed_file = tmp_path / "policies.json"
    seed_file.write_text(json.dumps(seed), "utf-8")
    service = service_factory(policy_file=seed_file)
    admin, operator = service_factory.client(service), service_factory.client(service, "operator")

    spec = httpx.get(f"{service.http_url}/openapi.json").json()
    for path, method in (("/api/policies", "get"), ("/api/policies/apply", "post"), ("/api/policies/dry-run", "post"),
                         ("/api/policies/versions", "get"), ("/api/policies/check", "post")):
        assert spec["paths"][path][method]["x-required-roles"] == ["admin"], path
    assert operator.get("/api/policies").status_code == 403

    current = admin.get("/api/policies").json()
    assert current["version"] == 1 and str(seed_file) in current["actor"]  # seeded from the chosen file
    document = json.loads(current["document"])
    assert document["policies"]["charging"]["steps"][0]["ack_within_s"] == 600

    document["policies"]["charging"]["steps"][0]["tiers"] = ["roof"]
    bad = admin.post("/api/policies/check", json={"document": json.dumps(document)})
    assert bad.status_code == 422 and "policies.charging.steps.0.tiers.0" in bad.json()["detail"]
    assert admin.post("/api/policies/apply", json={"document": "{", "based_on": 1}).status_code == 422
    same = admin.post("/api/policies/apply", json={"document": current["document"], "based_on": 1})
    assert same.status_code == 422 and "changes nothing" in same.json()["detail"]

    document["policies"]["charging"]["steps"][0]["tiers"] = ["building", "community"]
    document["policies"]["charging"]["steps"][0]["ack_within_s"] = 120
    dry = admin.post("/api/policies/dry-run", json={"document": json.dumps(document),
                                                    "scenarios": ["full_battery_power"]})
    assert dry.status_code == 200, dry.text
    # the story ends before the 10 minutes in force run out: under the draft the area is told after 2 minutes
    assert dry.json()["differences"] == [{
        "story": "full_battery_power", "incident": "电池已充满仍在供电（CS-XQ01-01:charging_full:2）", "step": 2,
        "change": "added", "current_at_s": None, "draft_at_s": 120.0, "current_who": [],
        "draft_who": ["area_leader 片区长 李娜", "grid_patroller 网格巡查员 张伟"]}]
    applied = admin.post("/api/policies/apply", json={"document": json.dumps(document), "based_on": 1,
                                                      "comment": "充电桩"})
    assert applied.status_code == 200 and applied.json()["version"] == 2
    assert applied.json()["changes"] == ["charging 第1级：确认时限 600 s → 120 s"]
    stale = admin.post("/api/policies/apply", json={"document": current["document"], "based_on": 1})
    assert stale.status_code == 409 and "reload" in stale.json()["detail"]

    # the version in force is the database's: a service starting again follows version 2, not the seed file
    again = load_in_force(PolicyStore(service.services.engine), seed_file=seed_file, now_ms=0)
    assert again.version == 2 and again.policies["charging"].steps[0].ack_within_s == 120
    assert service.services.alerts.policies.version == 2


def test_a_threshold_in_the_draft_is_replayed_then_read_by_the_rules_once_applied(
        service_factory: ServiceFactory) -> None:
    service = service_factory()
    admin = service_factory.client(service)
    current = admin.get("/api/policies").json()
    assert current["thresholds"]["charging_station"]["rise_c_per_min"] == 2.0  # the rule's default, shown
    document = json.loads(current["document"])
    document["thresholds"] = {"charging_station": {"rise_c_per_min": 50}}
    dry = admin.post("/api/policies/dry-run", json={"document": json.dumps(document),
                                                    "scenarios": ["thermal_runaway_shed"]}).json()
    assert dry["changes"] == ["阈值 charging_station.rise_c_per_min：默认 → 50.0"]
    assert {(d["incident"].split("（")[0], d["change"]) for d in dry["differences"]} == {
        ("充电口温度急升，疑似热失控", "removed")}  # a 50 °C/min rise is never reached in the story

    ctx = service.services.alerts.ctx
    assert ctx.threshold("charging_station", "rise_c_per_min", "CS-XQ01-01") == 2.0
    assert admin.post("/api/policies/apply", json={"document": json.dumps(document), "based_on": 1}).status_code == 200
    assert ctx.threshold("charging_station", "rise_c_per_min", "CS-XQ01-01") == 50.0  # at once, no restart

    past = admin.post("/api/policies/dry-run", json={"document": current["document"], "scenarios": [],
                                                     "from_at": "2020-01-01T00:00:00Z"}).json()
    assert [s["story"] for s in past["stories"]] == ["history"]  # no incidents yet: nothing to differ
    bad_range = admin.post("/api/policies/dry-run", json={"document": current["document"], "scenarios": [],
                                                          "from_at": "2030-01-02T00:00:00Z",
                                                          "to_at": "2030-01-01T00:00:00Z"})
    assert bad_range.status_code == 422 and "to_at must be after from_at" in bad_range.json()["detail"]
