"""The registry through the HTTP API and the `wanli devices` command line, on a running service."""

import httpx
import pytest

from devices.registry import devices_table
from devices.topics import MessageClass, device_topic
from tests.fixtures.service import auth_headers, now_ms, new_token, publish, register_building, wait_for
from wanli.cli import main
from foundation.db import create_schema, make_engine


def test_register_move_retire_and_history_through_the_api(service_factory):
    service = service_factory()
    api = service.http_url + "/api/devices"
    who = service_factory.client(service, "maintainer")  # the history names the caller's account
    body = {"device_id": "SD-XQ02-0301", "kind": "smoke_detector", "building_id": "xq-02", "floor": 3, "unit": "0301",
            "actor": "维护员 刘"}
    created = who.post(api, json=body)
    assert created.status_code == 201 and created.json()["health"] == ["never_seen"]
    assert who.post(api, json=body).status_code == 200  # same again: nothing changed
    clash = who.post(api, json={**body, "floor": 4, "unit": "0401"})
    assert clash.status_code == 409 and "move it instead" in clash.json()["detail"]
    bad = who.post(api, json={**body, "device_id": "SD-2", "building_id": "xq-99"})
    assert bad.status_code == 422 and "unknown building 'xq-99'" in bad.json()["detail"]
    assert who.post(api, json={**body, "device_id": "bad id"}).status_code == 422

    moved = who.post(f"{api}/SD-XQ02-0301/move", json={"building_id": "xq-02", "floor": 5, "unit": "0501"})
    assert moved.status_code == 200 and moved.json()["location"]["label"] == "香泉居民区 香泉 2号楼 5层 0501室"
    assert who.post(f"{api}/SD-XQ02-0301/retire", json={"reason": "更换"}).json()["lifecycle"] == "retired"
    assert who.post(f"{api}/SD-XQ02-0301/move", json={"building_id": "xq-02"}).status_code == 409
    assert [d["device_id"] for d in who.get(api).json()] == []
    assert [d["device_id"] for d in who.get(api, params={"lifecycle": "retired"}).json()] == ["SD-XQ02-0301"]
    history = who.get(f"{api}/SD-XQ02-0301/history").json()
    assert [(h["action"], h["actor"]) for h in history] == [("created", "token:test-maintainer"),  # never the body's actor
                                                            ("moved", "token:test-maintainer"),
                                                            ("retired", "token:test-maintainer")]
    assert who.get(f"{api}/NOPE/history").status_code == 404


def test_health_lists_and_quarantine_through_the_api(service_factory):
    service = service_factory()
    sim = register_building(service)
    api = service.http_url + "/api"
    online = sim.smoke_detectors()[0]
    stranger = device_topic("wanli", "smoke_detector", "SD-STRANGER-1", MessageClass.EVENT)
    publish(service.broker.host, service.broker.port,
            [online.heartbeat(now_ms()), (stranger, b'{"v":1,"ts":%d,"seq":1,"type":"alarm"}' % now_ms())])
    wait_for(lambda: httpx.get(f"{api}/devices", params={"health": "online"}, headers=auth_headers(service)).json())
    assert [d["device_id"] for d in httpx.get(f"{api}/devices", params={"health": "online"}, headers=auth_headers(service)).json()] == [online.device_id]
    never = httpx.get(f"{api}/devices", params={"health": "never_seen", "limit": 10_000}, headers=auth_headers(service)).json()
    assert len(never) == len(sim.placed) - 1
    held = wait_for(lambda: httpx.get(f"{api}/quarantine", headers=auth_headers(service)).json())
    assert [(q["device_id"], q["kind"], q["reason"], q["messages"]) for q in held] == [
        ("SD-STRANGER-1", "smoke_detector", "unregistered_device", 1)]
    assert httpx.get(f"{api}/incidents", headers=auth_headers(service)).json() == []  # quarantined alarms raise nothing
    assert httpx.get(f"{api}/devices", params={"health": "sleepy"}, headers=auth_headers(service)).status_code == 422


def test_building_detail_gives_the_chain_and_stations(service_factory):
    service = service_factory()
    api = service.http_url + "/api"
    detail = httpx.get(f"{api}/buildings/fp-01", headers=auth_headers(service)).json()
    assert [t["tier_zh"] for t in detail["chain"]] == ["楼栋", "居民区", "片区", "街道", "区"]
    assert detail["nearest_station"]["id"] == "MFS-YH"
    assert [s["id"] for s in detail["stations"]] == ["MFS-YH", "MFS-XQ"]
    households = httpx.get(f"{api}/buildings/xq-01", headers=auth_headers(service)).json()["households"]
    assert [h["unit"] for h in households] == ["0601", "1201", "1801"]
    assert httpx.get(f"{api}/buildings/none", headers=auth_headers(service)).status_code == 404
    tree = httpx.get(f"{api}/hierarchy", headers=auth_headers(service)).json()
    assert [a["name"] for a in tree["areas"]] == ["颐华片区", "中浩云片区"]


def test_the_cli_imports_a_csv_with_bad_rows_and_reports_them(service_factory, tmp_path, capsys, monkeypatch):
    service = service_factory()
    with pytest.raises(SystemExit, match="refused \\(401\\)"):  # no token: the service says so
        main(["devices", "list", "--api", service.http_url])
    monkeypatch.setenv("WANLI_TOKEN", new_token(service, "maintainer"))
    csv_file = tmp_path / "devices.csv"
    csv_file.write_text("device_id,kind,building_id,floor,unit,label\n"
                        "SD-YH01-0101,smoke_detector,yh-01,1,0101,\n"
                        "SD-YH01-0102,smoke_detector,yh-01,99,0102,\n"
                        "EA-YH01-0201,elderly_alarm,yh-01,2,0201,独居\n", "utf-8")
    assert main(["devices", "import", str(csv_file), "--api", service.http_url]) == 1  # a rejected row fails the command
    out, err = capsys.readouterr()
    assert "line 3: SD-YH01-0102: floor 99 is outside" in out
    assert "3 rows" in err and "2 created" in err and "1 rejected" in err
    assert main(["devices", "list", "--api", service.http_url, "--building", "yh-01"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("device_id") and [line.split("\t")[0] for line in listed[1:]] == ["EA-YH01-0201", "SD-YH01-0101"]
    with pytest.raises(SystemExit, match="refused \\(409\\)"):
        main(["devices", "register", "SD-YH01-0101", "--kind", "smoke_detector", "--building", "yh-01", "--floor", "3",
              "--api", service.http_url])


def test_the_services_own_accounts_are_refused_as_device_ids_at_registration_import_and_move(service_factory, tmp_path):
    # A database from before the rule, holding a device under the dispatcher's login.
    data_dir = tmp_path / "old"
    data_dir.mkdir()
    old = make_engine(f"sqlite:///{data_dir / 'wanli.db'}")
    create_schema(old)
    with old.begin() as conn:
        conn.execute(devices_table.insert(), [{
            "device_id": "wanli-ingest-dispatch", "kind": "smoke_detector", "street_id": "wanli", "building_id": "xq-01",
            "floor": 1, "unit": "0101", "label": "", "lifecycle": "active", "registered_ms": now_ms(), "tampered": False,
            "seq_window": 0, "event_seq_window": 0, "status_seq_window": 0}])
    old.dispose()
    service = service_factory(data_dir=data_dir)
    who = service_factory.client(service, "maintainer")
    api = service.http_url + "/api/devices"
    body = {"kind": "smoke_detector", "building_id": "xq-02", "floor": 3, "unit": "0301"}

    for device_id in ("wanli-ingest", "wanli-ingest-dispatch", "wanli-ingest-alarms", "WANLI-Canary"):
        refused = who.post(api, json={**body, "device_id": device_id})
        assert refused.status_code == 422 and "is reserved" in refused.json()["detail"], refused.text
    csv = ("device_id,kind,building_id,floor,unit,label\n"
           "SD-XQ02-0301,smoke_detector,xq-02,3,0301,\n"
           "wanli-ingest,smoke_detector,xq-02,3,0302,\n")
    report = who.post(f"{api}/import", content=csv.encode(), headers={"content-type": "text/csv"})
    assert report.status_code == 200, report.text
    assert report.json()["created"] == 1
    assert [(e["line"], e["device_id"]) for e in report.json()["rejected"]] == [(3, "wanli-ingest")]
    assert "is reserved" in report.json()["rejected"][0]["reason"]

    moved = who.post(f"{api}/wanli-ingest-dispatch/move", json={"building_id": "xq-02", "floor": 5, "unit": "0501"})
    assert moved.status_code == 422 and "is reserved" in moved.json()["detail"]
    assert who.post(f"{api}/wanli-ingest-dispatch/retire", json={"reason": "reserved id"}).status_code == 200
    assert [d["device_id"] for d in who.get(api).json()] == ["SD-XQ02-0301"]
