"""The maintainers' wishes of issue 16 through the API on a running service: a CSV saved by Chinese Excel (GBK)
is read, a re-import leaves a retired device retired (reported) unless asked, devices are found by part of
their id, and credentials come with the broker's address. The history names the signed-in account."""

from __future__ import annotations

import csv
import io

from tests.fixtures.service import ServiceFactory

ROWS = ("device_id,kind,building_id,floor,unit,label\r\n"
        "SD-XQ02-0101,smoke_detector,xq-02,1,0101,香泉2号楼 101 厨房\r\n"
        "SD-XQ02-0201,smoke_detector,xq-02,2,0201,香泉2号楼 201 客厅\r\n"
        "SD-XQ02-0301,smoke_detector,xq-99,3,0301,不存在的楼\r\n")


def test_gbk_csv_retired_rows_search_and_credentials_with_the_broker(service_factory: ServiceFactory) -> None:
    service = service_factory(device_broker_url="mqtts://mqtt.wanli.example:8883")
    who = service_factory.client(service, "maintainer")
    api = "/api/devices"

    gbk = ROWS.encode("gbk")
    assert gbk != ROWS.encode("utf-8")  # the labels really are GBK bytes
    report = who.post(f"{api}/import", content=gbk, headers={"content-type": "text/csv"}).json()
    assert (report["encoding"], report["created"], len(report["rejected"])) == ("gb18030", 2, 1)
    assert report["rejected"][0]["line"] == 4 and "xq-99" in report["rejected"][0]["reason"]
    assert who.get(f"{api}/SD-XQ02-0101").json()["label"] == "香泉2号楼 101 厨房"  # read, not mojibake
    declared = who.post(f"{api}/import", content=gbk, headers={"content-type": "text/csv; charset=GBK"}).json()
    assert declared["unchanged"] == 2
    wrong = who.post(f"{api}/import", content=gbk, headers={"content-type": "text/csv; charset=utf-8"})
    assert wrong.status_code == 422 and "not utf-8" in wrong.json()["detail"]
    assert who.post(f"{api}/import", content=b"\xff\xfe\x00\x81", headers={"content-type": "text/csv"}
                    ).status_code == 422
    [entry] = [h for h in who.get(f"{api}/SD-XQ02-0101/history").json() if h["action"] == "created"]
    assert "test-maintainer" in entry["actor"]  # the signed-in account (its token's name), nothing the file says

    assert who.post(f"{api}/SD-XQ02-0201/retire", json={"reason": "被盗"}).json()["lifecycle"] == "retired"
    again = who.post(f"{api}/import", content=ROWS.encode("utf-8"), headers={"content-type": "text/csv"}).json()
    assert again["reactivated"] == 0 and again["unchanged"] == 1
    assert [(r["line"], r["device_id"]) for r in again["retired"]] == [(3, "SD-XQ02-0201")]
    assert who.get(f"{api}/SD-XQ02-0201").json()["lifecycle"] == "retired"  # left retired
    asked = who.post(f"{api}/import?reactivate=true", content=ROWS.encode("utf-8"),
                     headers={"content-type": "text/csv"}).json()
    assert asked["reactivated"] == 1 and asked["retired"] == []
    assert who.get(f"{api}/SD-XQ02-0201").json()["lifecycle"] == "active"

    found = who.get(api, params={"q": "xq02-02"}).json()
    assert [d["device_id"] for d in found] == ["SD-XQ02-0201"]
    assert who.get(f"{api}/counts", params={"q": "SD-XQ02"}).json()["total"] == 2
    export = who.get("/api/devices.csv", params={"q": "0101"})
    assert [r["device_id"] for r in csv.DictReader(io.StringIO(export.text.lstrip("\ufeff")))] == ["SD-XQ02-0101"]

    one = who.post(f"{api}/SD-XQ02-0101/credentials").json()
    assert one["broker_url"] == "mqtts://mqtt.wanli.example:8883" and one["password"]
    batch = who.post(f"{api}/credentials", content="device_id\nSD-XQ02-0101\nSD-XQ02-0201\n".encode(),
                     headers={"content-type": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(batch.text)))
    assert [r["device_id"] for r in rows] == ["SD-XQ02-0101", "SD-XQ02-0201"]
    assert {r["broker_url"] for r in rows} == {"mqtts://mqtt.wanli.example:8883"}


def test_the_command_line_imports_a_gbk_file_and_leaves_retired_devices_retired(
        service_factory: ServiceFactory, tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.fixtures.service import new_token
    from wanli.cli import main

    service = service_factory()
    monkeypatch.setenv("WANLI_TOKEN", new_token(service, "maintainer"))
    gbk = tmp_path / "设备.csv"
    gbk.write_bytes(ROWS.encode("gbk"))
    assert main(["devices", "import", str(gbk), "--api", service.http_url]) == 1  # the xq-99 row is refused
    assert service.services.registry.get("SD-XQ02-0101").label == "香泉2号楼 101 厨房"
    service.services.registry.retire("SD-XQ02-0201", "test", 0, "被盗")
    capsys.readouterr()
    main(["devices", "import", str(gbk), "--api", service.http_url])
    out = capsys.readouterr()
    assert "read as GB18030" in out.err and "line 3: SD-XQ02-0201: retired, left retired" in out.out
    assert service.services.registry.is_retired("SD-XQ02-0201")
    main(["devices", "import", str(gbk), "--api", service.http_url, "--reactivate"])
    assert not service.services.registry.is_retired("SD-XQ02-0201")
