"""The street's record archived monthly (readable without the service), record retention, and disk growth in the open."""

from __future__ import annotations

import csv
import json
import re
import subprocess

import httpx
import pytest
from sqlalchemy import select

from alerts.archive import ArchiveJob, export_month, month_bounds, month_of
from alerts.outbox import notifications_table
from alerts.store import incident_audit_table, incidents_table
from tests.fixtures.service import auth_headers, now_ms, publish, register_building, wait_for
from wanli.cli import main

pytestmark = pytest.mark.mosquitto


def metric(text: str, name: str, data_class: str) -> float | None:
    match = re.search(rf'^{name}{{data_class="{data_class}"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else None


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_disk_growth_by_data_class_and_the_months_archive_from_a_running_service(service_factory, tmp_path, database,
                                                                                  request, monkeypatch):
    extra = {"database_url": request.getfixturevalue("postgres_url")} if database == "postgresql" else {}
    service = service_factory(retention_every_s=1, **extra)
    sim = register_building(service)
    host, port = service.settings.embedded_broker_host, service.settings.embedded_broker_port
    detectors = sim.smoke_detectors()
    publish(host, port, [d.heartbeat(now_ms()) for d in detectors] + [detectors[4].alarm(now_ms())])
    (incident,) = wait_for(lambda: httpx.get(f"{service.http_url}/api/incidents", headers=auth_headers(service)).json())

    def growth() -> dict[str, float] | None:
        figures = httpx.get(f"{service.http_url}/api/stats?latency=false").json()["disk_bytes_per_day"]
        return figures if figures.get("incidents", 0) > 0 and figures.get("telemetry_raw", 0) > 0 else None

    figures = wait_for(growth, timeout_s=20)
    assert set(figures) == {"telemetry_raw", "telemetry_hourly", "incidents", "dead_letters"}
    text = httpx.get(f"{service.http_url}/metrics").text
    assert metric(text, "wanli_disk_bytes_per_day", "incidents") > 0
    assert metric(text, "wanli_disk_bytes_per_day", "telemetry_raw") > 0

    # The retention job has written this month's archive; an auditor reads it with a spreadsheet or jq.
    month = month_of(now_ms())
    folder = service.settings.data_dir / "archive" / "wanli" / month
    wait_for(lambda: (folder / "SHA256SUMS").is_file() and (folder / "incidents.csv").read_text(encoding="utf-8-sig")
             .count(incident["id"]), timeout_s=20)
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    with (folder / "incidents.csv").open(encoding="utf-8-sig") as f:
        (row,) = list(csv.DictReader(f))
    assert row["id"] == incident["id"] and row["building_id"] == "xq-01" and row["opened_at"].endswith("+08:00")
    with (folder / "audit.csv").open(encoding="utf-8-sig") as f:
        audit = list(csv.DictReader(f))
    assert audit[0]["incident_id"] == incident["id"] and audit[0]["action"] == "open"
    document = json.loads((folder / "incidents.json").read_text(encoding="utf-8"))
    (archived,) = document["incidents"]
    assert archived["id"] == incident["id"] and archived["audit"][0]["action"] == "open"
    assert archived["notifications"] and all(n["incident_id"] == incident["id"] for n in archived["notifications"])

    # The same by hand, into a folder of the operator's choice.
    out = tmp_path / "exported"
    if database == "postgresql":
        monkeypatch.setenv("WANLI_DATABASE_URL", extra["database_url"])
    else:  # no database where the command is pointed: said so, nothing created
        assert main(["archive", "--month", month, "--data-dir", str(tmp_path / "nowhere")]) == 1
        assert not (tmp_path / "nowhere").exists()
    assert main(["archive", "--month", month, "--out", str(out), "--data-dir", str(service.settings.data_dir)]) == 0
    assert (out / "wanli" / month / "incidents.json").is_file()
    assert main(["archive", "--month", "2026-13", "--out", str(out)]) == 2


def _closed_incident(incident_id: str, opened_ms: int) -> dict[str, object]:
    row: dict[str, object] = {c.name: "" for c in incidents_table.columns}
    row.update(id=incident_id, key=incident_id, floor=None, opened_ms=opened_ms, first_event_ms=opened_ms,
               last_event_ms=opened_ms, updated_ms=opened_ms, event_count=1, acknowledged_ms=None,
               closed_ms=opened_ms + 60_000, escalation_step=0, next_deadline_ms=None, street_id="wanli",
               state="closed", severity="critical", location_json="{}", members_json="[]", version=1)
    return row


def test_record_retention_drops_closed_incidents_only_after_their_month_is_archived(sql_engine, tmp_path):
    now = month_bounds("2026-12")[0] + 5 * 86_400_000
    old, recent = month_bounds("2026-01")[0] + 86_400_000, month_bounds("2026-11")[0] + 86_400_000
    with sql_engine.begin() as conn:
        conn.execute(incidents_table.insert(), [_closed_incident("INC-OLD", old), _closed_incident("INC-NEW", recent)])
        conn.execute(incident_audit_table.insert(), [
            {"incident_id": i, "at_ms": t, "actor": "值班长", "action": "open", "from_state": None, "to_state": "new",
             "note": ""} for i, t in (("INC-OLD", old), ("INC-NEW", recent))])
    forever = ArchiveJob(sql_engine, "wanli", tmp_path / "archive", retention_days=0)
    assert forever.run_once(now)["pruned_incidents"] == 0

    # Record kept 180 days: January goes, but only once January's archive is on disk.
    job = ArchiveJob(sql_engine, "wanli", tmp_path / "archive", retention_days=180)
    assert job.run_once(now)["pruned_incidents"] == 0
    export_month(sql_engine, "wanli", "2026-01", tmp_path / "archive")
    assert job.run_once(now)["pruned_incidents"] == 1
    with sql_engine.connect() as conn:
        assert [r[0] for r in conn.execute(select(incidents_table.c.id))] == ["INC-NEW"]
        assert [r[0] for r in conn.execute(select(incident_audit_table.c.incident_id))] == ["INC-NEW"]
        assert conn.execute(select(notifications_table.c.id)).all() == []
    with (tmp_path / "archive" / "wanli" / "2026-01" / "incidents.csv").open(encoding="utf-8-sig") as f:
        assert [r["id"] for r in csv.DictReader(f)] == ["INC-OLD"]  # still on paper
