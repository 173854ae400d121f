"""The restore drill: back up a live service while devices publish and an incident escalates, restore it into
another data directory (or database), broker and port, and check it resumes where the backup left it.

Real Mosquitto (password and ACL files, so credentials matter), real SQLite and PostgreSQL, a real webhook
receiver counting every notice; the services run on one fake clock the test moves to pass deadlines.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from devices.credentials import INGEST_ACCOUNT, BrokerAuthFiles, render_broker_auth
from tests.fixtures.servers import MosquittoServer, free_port
from tests.fixtures.service import auth_headers, now_ms, register_building, wait_for
from tests.integration.test_broker_acl import logged_in, refusal
from tests.integration.test_escalation_dispatch import FakeClock, webhook  # noqa: F401 - the fixture
from wanli.backup import REDACTED, BackupError, backup, restore, verify
from wanli.runtime import running_in_thread
from wanli.settings import Settings

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]


class Broker:
    """A Mosquitto reading its password and ACL files from ``auth_dir``; the service keeps them."""

    def __init__(self, root: Path, auth_dir: Path, ingest_password: str, write_files: bool) -> None:
        self.files = BrokerAuthFiles(auth_dir)
        if write_files:
            auth_dir.mkdir(parents=True)
            self.files.write(*render_broker_auth([], {}, {INGEST_ACCOUNT: ingest_password}))
        self.server = MosquittoServer(root, port=free_port(), password_file=self.files.password_path,
                                      acl_file=self.files.acl_path)
        self.server.start()
        self.pid_file = root / "mosquitto.pid"
        self.pid_file.write_text(str(self.server.pid))

    def settings(self, data_dir: Path, ingest_password: str, webhook_url: str, **more: object) -> Settings:
        return Settings(data_dir=data_dir, mqtt_url=self.server.url, mqtt_username=INGEST_ACCOUNT.username,
                        mqtt_password=ingest_password, mqtt_client_id=INGEST_ACCOUNT.username,
                        broker_auth_dir=self.files.directory, broker_pid_file=self.pid_file, http_port=free_port(),
                        simulate_building=False, webhook_url=webhook_url, alert_tick_s=0.1, **more)


class Heartbeats:
    """Devices publishing heartbeats with their own credentials until stopped (what a live street does)."""

    def __init__(self, broker: MosquittoServer, devices: dict[str, tuple[str, str, object]]) -> None:
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, args=(broker, devices), daemon=True)
        self._thread.start()

    def _run(self, broker: MosquittoServer, devices: dict[str, tuple[str, str, object]]) -> None:
        logins = [(logged_in(broker, user, password), sim) for user, password, sim in devices.values()]
        entered = [(cm.__enter__(), sim) for cm, sim in logins]
        try:
            while not self._stop.wait(0.05):
                for login, sim in entered:
                    topic, payload = sim.heartbeat(now_ms())  # type: ignore[attr-defined]
                    login.publish(topic, payload)
                    self.sent += 1
        finally:
            for cm, _sim in logins:
                cm.__exit__(None, None, None)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _notice_keys(posted: list[dict]) -> list[str]:
    return [json.dumps(p, sort_keys=True, ensure_ascii=False) for p in posted]


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_restore_drill(tmp_path, webhook, database, request):  # noqa: F811 - webhook is the imported fixture
    url, posted = webhook
    clock = FakeClock()
    ingest_password = secrets.token_urlsafe(24)
    database_urls: dict[str, str] = {}
    if database == "postgresql":
        postgres = request.getfixturevalue("postgres")
        for side in ("a", "b"):
            name = f"drill_{side}_{uuid.uuid4().hex[:8]}"
            database_urls[side] = postgres.create_database(name)
            request.addfinalizer(lambda name=name: postgres.drop_database(name))

    broker_a = Broker(tmp_path / "broker-a", tmp_path / "auth-a", ingest_password, write_files=True)
    settings_a = broker_a.settings(tmp_path / "data-a", ingest_password, url,
                                   **({"database_url": database_urls["a"]} if database_urls else {}))
    try:
        with running_in_thread(settings_a, clock) as service:
            api, headers = f"{service.http_url}/api", auth_headers(service)
            sim = register_building(service)
            detectors = sim.smoke_detectors()[:3]  # [0] alarms; [1:] beat (one login per device at a time)
            devices: dict[str, tuple[str, str, object]] = {}
            for det in detectors:
                issued = httpx.post(f"{api}/devices/{det.device_id}/credentials", headers=headers)
                assert issued.status_code == 201, issued.text
                creds = issued.json()
                devices[det.device_id] = (creds["username"], creds["password"], det)
                wait_for(lambda d=det.device_id: httpx.get(f"{api}/devices/{d}",  # type: ignore[misc]
                                                           headers=headers).json()["access_state"] == "active")
            beats = Heartbeats(broker_a.server, {d: v for d, v in devices.items() if d != detectors[0].device_id})
            try:
                alarmed = detectors[0]
                user, password, _ = devices[alarmed.device_id]
                with logged_in(broker_a.server, user, password) as login:
                    login.publish(*alarmed.alarm(now_ms()))
                (incident,) = wait_for(lambda: httpx.get(f"{api}/incidents", headers=headers).json())
                clock.advance(61)  # nobody acknowledged within a minute: it climbs to the community
                wait_for(lambda: [a for a in httpx.get(f"{api}/incidents/{incident['id']}", headers=headers)
                                  .json()["audit"] if a["action"] == "escalate"])
                wait_for(lambda: not service.services.outbox.pending())  # every notice so far sent and marked
                wait_for(lambda: beats.sent > 30)
                before = httpx.get(f"{api}/incidents/{incident['id']}", headers=headers).json()
                registry_before = httpx.get(f"{api}/devices", headers=headers, params={"limit": 1000}).json()
                notified_before = len(posted)

                summary = backup(service.settings, tmp_path / "backup", clock_ms=clock)  # while devices publish
            finally:
                beats.stop()
    finally:
        broker_a.server.stop()

    assert beats.sent > 30
    names = {f["path"] for f in summary.files}
    expected_db = "database/wanli.db" if database == "sqlite" else "database/wanli.pgdump"
    assert {expected_db, "broker/passwords", "broker/acl", "settings.json"} <= names
    saved_settings = json.loads((tmp_path / "backup" / "settings.json").read_text())
    assert saved_settings["mqtt_password"] == REDACTED and ingest_password not in json.dumps(saved_settings)
    assert saved_settings["auth_secret_key"] == REDACTED

    # Restore onto another data directory, broker and port (a new machine).
    broker_b_auth = tmp_path / "auth-b"
    probe = Settings(data_dir=tmp_path / "data-b", broker_auth_dir=broker_b_auth,
                     **({"database_url": database_urls["b"]} if database_urls else {}))
    restore(tmp_path / "backup", probe)
    broker_b = Broker(tmp_path / "broker-b", broker_b_auth, ingest_password, write_files=False)
    settings_b = broker_b.settings(tmp_path / "data-b", ingest_password, url,
                                   **({"database_url": database_urls["b"]} if database_urls else {}))
    try:
        # The same devices log in to the new broker with the passwords they hold, before the service even starts.
        user, password, _ = devices[detectors[1].device_id]
        assert not refusal(broker_b.server, user, password).is_failure
        assert refusal(broker_b.server, user, "not-its-password").is_failure
        with running_in_thread(settings_b, clock) as service:
            api, headers = f"{service.http_url}/api", auth_headers(service)
            assert service.http_url != f"http://127.0.0.1:{settings_a.http_port}"
            registry_after = httpx.get(f"{api}/devices", headers=headers, params={"limit": 1000}).json()
            assert [d["device_id"] for d in registry_after] == [d["device_id"] for d in registry_before]
            after = httpx.get(f"{api}/incidents/{incident['id']}", headers=headers).json()
            assert after["state"] == before["state"] and after["tier"] == before["tier"]
            assert after["next_escalation_at"] == before["next_escalation_at"]  # the stored deadline, unchanged
            assert after["audit"] == before["audit"]

            time.sleep(1.0)  # ten ticks: nothing already sent is sent again
            assert len(posted) == notified_before

            with logged_in(broker_b.server, user, password) as login:  # a device publishes to the restored street
                login.publish(*detectors[1].alarm(now_ms()))
            wait_for(lambda: any(i["device_id"] == detectors[1].device_id
                                 for i in httpx.get(f"{api}/incidents", headers=headers).json()))

            clock.advance(600)  # past the stored deadline: the restored incident climbs on, once
            area = wait_for(lambda: [a for a in httpx.get(f"{api}/incidents/{incident['id']}", headers=headers)
                                     .json()["audit"] if a["action"] == "escalate"][1:])
            assert len(area) == 1
            wait_for(lambda: not service.services.outbox.pending())
        keys = _notice_keys(posted)
        assert len(keys) == len(set(keys)), "a notice was sent twice"
        first_incident = [p for p in posted if p.get("incident_id") == incident["id"]]
        assert len({p.get("step") for p in first_incident}) >= 3  # open, community, area
    finally:
        broker_b.server.stop()


def test_restore_refuses_a_used_target_and_a_damaged_backup(tmp_path, service_factory):
    service = service_factory()
    register_building(service)
    settings = service.settings
    summary = backup(settings, tmp_path / "backup")
    assert "database/wanli.db" in {f["path"] for f in summary.files}
    with pytest.raises(BackupError, match="not empty"):
        backup(settings, tmp_path / "backup")

    with pytest.raises(BackupError, match="already holds wanli.db"):
        restore(tmp_path / "backup", settings)  # the live data directory: never overwritten without --force

    fresh = Settings(data_dir=tmp_path / "fresh")
    restore(tmp_path / "backup", fresh)
    with sqlite3.connect(tmp_path / "fresh" / "wanli.db") as conn:
        assert conn.execute("SELECT count(*) FROM devices").fetchone()[0] == len(service.services.registry.list(
            now_ms=now_ms(), limit=10**6))
    with pytest.raises(BackupError, match="already holds"):
        restore(tmp_path / "backup", fresh)
    restore(tmp_path / "backup", fresh, force=True)

    damaged = tmp_path / "backup" / "database" / "wanli.db"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="checksum"):
        verify(tmp_path / "backup")
    with pytest.raises(BackupError, match="checksum"):
        restore(tmp_path / "backup", Settings(data_dir=tmp_path / "other"))
    assert not (tmp_path / "other").exists()


def test_the_cli_backs_up_and_restores_and_names_what_is_wrong(tmp_path, service_factory, capsys):
    from wanli.cli import main

    service = service_factory()
    register_building(service)
    assert main(["backup", str(tmp_path / "b"), "--data-dir", str(service.settings.data_dir)]) == 0
    assert "backup written and checked" in capsys.readouterr().out
    assert main(["restore", str(tmp_path / "b"), "--data-dir", str(service.settings.data_dir)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "b"), "--data-dir", str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / "wanli.db").is_file()
    assert main(["restore", str(tmp_path / "missing"), "--check-only"]) == 1
    assert "manifest.json" in capsys.readouterr().err
