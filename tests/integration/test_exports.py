"""CSV exports: what Excel needs (a BOM, CRLF, local times), the JSON lists' filters, formulas defused,
and a devices export that imports again as it is."""

from __future__ import annotations

import csv
import io

from tests.fixtures.service import ServiceFactory, now_ms, publish, register_building, wait_for


def rows(content: bytes) -> list[dict[str, str]]:
    assert content.startswith(b"\xef\xbb\xbf")  # UTF-8 with a byte-order mark: Excel then reads the Chinese
    text = content.decode("utf-8-sig")
    assert "\r\n" in text
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_devices_export_follows_the_lists_filters_and_imports_again(service_factory: ServiceFactory) -> None:
    service = service_factory()
    register_building(service)
    api = service_factory.client(service, "maintainer")
    assert api.post("/api/devices", json={"device_id": "SD-XQ02-0101", "kind": "smoke_detector", "building_id": "xq-02",
                                          "floor": 1, "unit": "0101", "label": "=HYPERLINK(\"http://x\")"}).status_code == 201
    reader = service_factory.client(service, "viewer")
    resp = reader.get("/api/devices.csv", params={"kind": "smoke_detector"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert resp.headers["content-disposition"].startswith('attachment; filename="devices-')
    exported = rows(resp.content)
    listed = reader.get("/api/devices", params={"kind": "smoke_detector", "limit": 10_000}).json()
    assert [r["device_id"] for r in exported] == [d["device_id"] for d in listed] and len(exported) > 1
    neighbour = next(r for r in exported if r["device_id"] == "SD-XQ02-0101")
    assert neighbour["label"] == "'=HYPERLINK(\"http://x\")"  # text, not a formula, when Excel opens it
    assert neighbour["kind_label"] == "烟感探测器" and neighbour["location"] == "香泉居民区 香泉 2号楼 1层 0101室"
    assert neighbour["health"] == "never_seen" and neighbour["registered_at"][:2] == "20"
    assert rows(reader.get("/api/devices.csv", params={"building_id": "xq-02"}).content) == [neighbour]
    assert reader.get("/api/devices.csv", params={"health": "sleepy"}).status_code == 422
    unknown = reader.get("/api/devices.csv", params={"community_id": "nowhere"})  # a 404, not a file cut off mid-way
    assert unknown.status_code == 404 and "nowhere" in unknown.json()["detail"]

    other = service_factory()
    imported = service_factory.client(other, "maintainer").post(
        "/api/devices/import", content=resp.content, headers={"content-type": "text/csv"}).json()
    assert imported["created"] == len(exported) and imported["rejected"] == []
    assert other.services.registry.get("SD-XQ01-0101").floor == 1


def test_incidents_export_follows_the_lists_filters(service_factory: ServiceFactory) -> None:
    service = service_factory()
    detector = register_building(service).smoke_detectors()[0]
    publish(service.broker.host, service.broker.port, [detector.alarm(now_ms())])
    reader = service_factory.client(service, "viewer")
    (incident,) = wait_for(lambda: reader.get("/api/incidents", params={"active": True}).json())
    (row,) = rows(reader.get("/api/incidents.csv", params={"active": True}).content)
    assert (row["id"], row["state"], row["device_id"], row["building"]) == (incident["id"], "open", detector.device_id,
                                                                         "香泉 1号楼")
    assert row["title"] == incident["title"] and row["opened_at"][10] == " "  # local time, as Excel reads it
    assert rows(reader.get("/api/incidents.csv", params={"state": "closed"}).content) == []
    assert [r["id"] for r in rows(reader.get("/api/incidents.csv", params={"state": ["open", "closed"]}).content)] == [
        incident["id"]]
    assert reader.get("/api/incidents.csv", params={"limit": 0}).status_code == 422
