"""Credentials through the running service: issued by the API, enforced by a real Mosquitto, revoked on retirement."""

import json

import httpx
import pytest

from devices.credentials import INGEST_ACCOUNT
from tooling.local_servers import secured_mosquitto
from tests.fixtures.service import auth_headers, now_ms, wait_for
from tests.integration.test_broker_acl import logged_in, refusal

pytestmark = pytest.mark.mosquitto


def alarm(seq: int) -> bytes:
    return json.dumps({"v": 1, "ts": now_ms(), "seq": seq, "type": "alarm"}).encode()


@pytest.fixture
def secured(tmp_path):
    """A Mosquitto that admits only the ingest account until the service writes its files."""
    with secured_mosquitto(tmp_path) as b:
        yield b.server, b.files, b.pid_file, b.ingest_password


def test_a_device_publishes_with_issued_credentials_only_as_itself_until_retired(service_factory, secured):
    server, files, pid_file, ingest_password = secured
    service = service_factory(mqtt_url=server.url, mqtt_username=INGEST_ACCOUNT.username, mqtt_password=ingest_password,
                              mqtt_client_id=INGEST_ACCOUNT.username, broker_auth_dir=files.directory,
                              broker_pid_file=pid_file)
    api = service.http_url + "/api/devices"
    for device_id, floor in (("SD-XQ01-0101", 1), ("SD-XQ01-0201", 2)):
        body = {"device_id": device_id, "kind": "smoke_detector", "building_id": "xq-01", "floor": floor,
                "unit": f"0{floor}01"}
        assert httpx.post(api, json=body, headers=auth_headers(service)).status_code == 201
    assert refusal(server, "SD-XQ01-0101", "guess").is_failure  # registered is not yet allowed in
    status = f"{service.http_url}/api/broker-access"
    wait_for(lambda: httpx.get(status, headers=auth_headers(service)).json()["fast_lane_ready"])  # the plugin answers
    reloads = server.reloads_logged()

    issued = httpx.post(f"{api}/SD-XQ01-0101/credentials", headers=auth_headers(service))
    assert issued.status_code == 201
    creds = issued.json()
    assert creds["publish_filter"] == "safety/v1/wanli/smoke_detector/SD-XQ01-0101/+" and creds["broker_updated"]
    assert creds["username"] == "wanli/smoke_detector/SD-XQ01-0101"
    # applied by the broker's dynamic-security plugin: no reload
    wait_for(lambda: httpx.get(f"{api}/SD-XQ01-0101", headers=auth_headers(service)).json()["access_state"] == "active")
    assert server.reloads_logged() == reloads
    assert httpx.get(status, headers=auth_headers(service)).json()["fast_lane_clients"] == 1

    own = "safety/v1/wanli/smoke_detector/SD-XQ01-0101/event"
    other = "safety/v1/wanli/smoke_detector/SD-XQ01-0201/event"
    with logged_in(server, creds["username"], creds["password"]) as device:
        device.publish(other, alarm(1))  # spoofing the neighbour: the broker drops it
        device.publish(own, alarm(2))
    (incident,) = wait_for(lambda: httpx.get(f"{service.http_url}/api/incidents", headers=auth_headers(service)).json())
    assert incident["device_id"] == "SD-XQ01-0101"
    assert httpx.get(f"{service.http_url}/api/dead-letters", headers=auth_headers(service)).json() == []  # the spoof never reached ingest

    assert httpx.post(f"{api}/SD-XQ01-0101/retire", json={"reason": "replaced"}, headers=auth_headers(service)).status_code == 200
    wait_for(lambda: httpx.get(f"{api}/SD-XQ01-0101", headers=auth_headers(service)).json()["access_state"] == "revoked")
    assert refusal(server, creds["username"], creds["password"]).is_failure
    assert httpx.post(f"{api}/SD-XQ01-0101/credentials", headers=auth_headers(service)).status_code == 409


def test_under_the_managed_broker_the_services_connections_keep_apart_and_a_station_gets_its_dispatch(
        service_factory, secured):
    """The broker takes the username as the client id (auth.conf): ingest, its alarm lane and the dispatcher each log
    in as themselves, so none closes another's connection; an alarm's dispatch reaches the station on its own login."""
    server, files, pid_file, ingest_password = secured
    service = service_factory(mqtt_url=server.url, mqtt_username=INGEST_ACCOUNT.username, mqtt_password=ingest_password,
                              mqtt_client_id=INGEST_ACCOUNT.username, broker_auth_dir=files.directory,
                              broker_pid_file=pid_file)
    api = service.http_url + "/api/devices"
    for body in ({"device_id": "SD-XQ01-0301", "kind": "smoke_detector", "building_id": "xq-01", "floor": 3,
                  "unit": "0301"},
                 {"device_id": "MFS-XQ", "kind": "fire_station", "building_id": "xq-01"}):
        assert httpx.post(api, json=body, headers=auth_headers(service)).status_code == 201
    creds = {d: httpx.post(f"{api}/{d}/credentials", headers=auth_headers(service)).json()
             for d in ("SD-XQ01-0301", "MFS-XQ")}
    for d in creds:  # the broker confirms within a second; the device's record says so
        wait_for(lambda d=d: httpx.get(f"{api}/{d}", headers=auth_headers(service)).json()["can_connect_now"])

    with logged_in(server, creds["MFS-XQ"]["username"], creds["MFS-XQ"]["password"]) as station, \
            logged_in(server, creds["SD-XQ01-0301"]["username"], creds["SD-XQ01-0301"]["password"]) as detector:
        assert not station.subscribe("dispatch/v1/wanli/fire_station/MFS-XQ/duty")[0].is_failure
        detector.publish("safety/v1/wanli/smoke_detector/SD-XQ01-0301/event", alarm(1))
        station._wait(lambda: bool(station.messages), "the dispatch")  # noqa: SLF001 - the Login helper's own wait
        body = json.loads(station.messages[0].payload)
        assert body["device_id"] == "SD-XQ01-0301" and body["dispatch_id"].endswith("-0")

    log = server.log_path.read_text(errors="replace")
    for login in ("wanli-ingest", "wanli-ingest-alarms", "wanli-ingest-dispatch", "wanli-access-canary"):
        assert f"u'{login}'" in log, f"{login} never logged in"
    assert "already connected, closing old connection" not in log


def test_bulk_credentials_by_building_kind_or_csv_of_ids_come_back_once_as_csv_and_all_connect(service_factory, secured):
    import csv
    import io

    server, files, pid_file, ingest_password = secured
    service = service_factory(mqtt_url=server.url, mqtt_username=INGEST_ACCOUNT.username, mqtt_password=ingest_password,
                              mqtt_client_id=INGEST_ACCOUNT.username, broker_auth_dir=files.directory,
                              broker_pid_file=pid_file)
    api, headers = service.http_url + "/api/devices", auth_headers(service)
    devices = [("SD-XQ01-0101", "smoke_detector", "xq-01"), ("SD-XQ01-0201", "smoke_detector", "xq-01"),
               ("EA-XQ01-0101", "elderly_alarm", "xq-01"), ("SD-XQ02-0101", "smoke_detector", "xq-02")]
    for device_id, kind, building in devices:
        body = {"device_id": device_id, "kind": kind, "building_id": building, "floor": 1, "unit": "0101"}
        assert httpx.post(api, json=body, headers=headers).status_code == 201

    def rows(resp: httpx.Response) -> dict[str, dict[str, str]]:
        assert resp.status_code == 201, resp.text
        assert resp.headers["content-type"].startswith("text/csv") and resp.headers["cache-control"] == "no-store"
        return {r["device_id"]: r for r in csv.DictReader(io.StringIO(resp.text))}

    by_building = rows(httpx.post(f"{api}/credentials", json={"building_id": "xq-01"}, headers=headers))
    by_kind = rows(httpx.post(f"{api}/credentials", json={"kind": "smoke_detector", "building_id": "xq-02"},
                              headers=headers))
    by_ids = rows(httpx.post(f"{api}/credentials", content="device_id\nEA-XQ01-0101\n",
                             headers={**headers, "content-type": "text/csv"}))

    assert sorted(by_building) == ["EA-XQ01-0101", "SD-XQ01-0101", "SD-XQ01-0201"]
    assert sorted(by_kind) == ["SD-XQ02-0101"] and sorted(by_ids) == ["EA-XQ01-0101"]
    latest = {**by_building, **by_kind, **by_ids}  # EA-XQ01-0101 rotated by the CSV
    for device_id, row in latest.items():
        wait_for(lambda d=device_id: httpx.get(f"{api}/{d}", headers=headers).json()["can_connect_now"])
        with logged_in(server, row["username"], row["password"]):
            pass
    assert refusal(server, by_building["EA-XQ01-0101"]["username"], by_building["EA-XQ01-0101"]["password"]).is_failure
    stored = files.password_path.read_text()
    assert all(row["password"] not in stored for row in latest.values())  # hashes only

    for body, code in (({}, 422), ({"kind": "toaster"}, 422), ({"device_ids": ["NOPE-1"]}, 404),
                       ({"building_id": "no-such-building"}, 422)):
        resp = httpx.post(f"{api}/credentials", json=body, headers=headers)
        assert resp.status_code == code and resp.json()["detail"], (body, resp.text)
    assert httpx.post(f"{api}/credentials", content=b"{not json", headers={**headers, "content-type": "application/json"}
                      ).status_code == 422


def test_the_cli_writes_bulk_credentials_to_a_new_private_file(service_factory, secured, tmp_path, monkeypatch,
                                                                capsys):
    import csv
    import io
    import stat

    from tests.fixtures.service import new_token
    from wanli.cli import main

    server, files, pid_file, ingest_password = secured
    service = service_factory(mqtt_url=server.url, mqtt_username=INGEST_ACCOUNT.username, mqtt_password=ingest_password,
                              mqtt_client_id=INGEST_ACCOUNT.username, broker_auth_dir=files.directory,
                              broker_pid_file=pid_file)
    for floor in (1, 2):
        body = {"device_id": f"SD-XQ01-0{floor}01", "kind": "smoke_detector", "building_id": "xq-01", "floor": floor,
                "unit": f"0{floor}01"}
        assert httpx.post(service.http_url + "/api/devices", json=body, headers=auth_headers(service)).status_code == 201
    monkeypatch.setenv("WANLI_TOKEN", new_token(service, "maintainer"))
    ids_file, out = tmp_path / "ids.csv", tmp_path / "creds.csv"
    ids_file.write_text("device_id\nSD-XQ01-0201\n")

    assert main(["devices", "credentials-bulk", "--api", service.http_url, "--ids-file", str(ids_file),
                 "--out", str(out)]) == 0

    assert "1 devices: credentials written to" in capsys.readouterr().out
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    [row] = list(csv.DictReader(io.StringIO(out.read_text())))
    assert row["username"] == "wanli/smoke_detector/SD-XQ01-0201"
    wait_for(lambda: httpx.get(f"{service.http_url}/api/devices/SD-XQ01-0201",
                               headers=auth_headers(service)).json()["can_connect_now"])
    with logged_in(server, row["username"], row["password"]):
        pass
    with pytest.raises(SystemExit, match="exists"):  # never overwrites the only copy of earlier passwords
        main(["devices", "credentials-bulk", "--api", service.http_url, "--building", "xq-01", "--out", str(out)])
    with pytest.raises(SystemExit, match="refused \\(422\\)"):
        main(["devices", "credentials-bulk", "--api", service.http_url, "--kind", "toaster",
              "--out", str(tmp_path / "none.csv")])
    assert not (tmp_path / "none.csv").exists()
