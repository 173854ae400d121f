"""The service's broker access against a real Mosquitto 2.0: changes coalesced, confirmed, and refused when not.

Each test runs its own broker (config/mosquitto/auth.conf, with files the service writes)
and a ``BrokerAccess`` with its writer thread, a real registry and credential store,
SIGHUP by pid file and the canary login over MQTT, as ``wanli run`` wires them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from devices.broker_access import AccessCondition, AccessState, BrokerAccess, MqttCanaryLogin
from devices.broker_dynsec import DynamicSecurity
from devices.credentials import INGEST_ACCOUNT, BrokerAuthFiles, CredentialStore, render_broker_auth
from devices.hierarchy import load_hierarchy
from devices.registry import DeviceRecord, DeviceRegistry
from tests.fixtures.servers import MosquittoServer, free_port
from tests.integration.test_broker_acl import logged_in, refusal
from tests.support.mqtt import TestClient
from tests.support.waiting import wait_until
from foundation import db

pytestmark = pytest.mark.mosquitto

NOW_MS = 1_795_000_000_000
BUILDING = "xq-01"


@dataclass
class ManagedBroker:
    server: MosquittoServer
    registry: DeviceRegistry
    access: BrokerAccess
    conditions: list[AccessCondition]
    ingest_password: str
    admin_password: str = ""


def smoke_detectors(n: int, street: str) -> list[DeviceRecord]:
    return [DeviceRecord(f"SD-T{i:03d}", "smoke_detector", street, BUILDING, 1 + i % 5, f"{1 + i % 5:02d}01")
            for i in range(n)]


@pytest.fixture
def managed(tmp_path: Path) -> Iterator[ManagedBroker]:
    """The writer as ``wanli run`` wires it: the password file and SIGHUP, and the dynamic-security plugin."""
    with managed_broker(tmp_path, dynamic_security=True) as broker:
        yield broker


@pytest.fixture
def managed_file_only(tmp_path: Path) -> Iterator[ManagedBroker]:
    """The writer without the plugin (WANLI_BROKER_DYNAMIC_SECURITY=false): every change a file and a reload."""
    with managed_broker(tmp_path, dynamic_security=False) as broker:
        yield broker


@contextmanager
def managed_broker(tmp_path: Path, *, dynamic_security: bool, overlay_limit: int = 500, overlay_batch_max: int = 200,
                   plugin_loaded: bool = True) -> Iterator[ManagedBroker]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    db.METADATA.create_all(engine)
    hierarchy = load_hierarchy()
    registry = DeviceRegistry(engine, hierarchy)
    registry.register_many(smoke_detectors(20, hierarchy.street_id), "test", NOW_MS)
    ingest_password = secrets.token_urlsafe(24)
    files = BrokerAuthFiles(tmp_path / "auth")
    files.directory.mkdir()
    files.write(*render_broker_auth([], {}, {INGEST_ACCOUNT: ingest_password}))  # what the broker starts with
    server = MosquittoServer(tmp_path / "broker", port=free_port(), password_file=files.password_path,
                             acl_file=files.acl_path)
    if not plugin_loaded:  # an older broker image, or one configured without it
        server.conf_path.write_text(re.sub(r"^plugin.*\n", "", server.conf_path.read_text(), flags=re.MULTILINE))
    server.start()
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(str(server.pid))
    conditions: list[AccessCondition] = []
    admin_password = secrets.token_urlsafe(24)
    access = BrokerAccess(registry, CredentialStore(engine), lambda: int(time.time() * 1000), files=files,
                          pid_file=pid_file, service_accounts={INGEST_ACCOUNT: ingest_password},
                          canary=MqttCanaryLogin(server.host, server.port), unconfirmed_after_s=1.5,
                          resend_after_s=0.2, on_condition=conditions.append,
                          overlay=DynamicSecurity(server.host, server.port, admin_password,
                                                  answer_timeout_s=0.5) if dynamic_security else None,
                          overlay_limit=overlay_limit, overlay_batch_max=overlay_batch_max)
    access.start()
    try:
        assert access.sync(timeout_s=10), "the first generation was not confirmed"
        if dynamic_security and plugin_loaded:
            assert wait_until(lambda: access.fast_lane_ready, 5.0), "the dynamic-security plugin did not answer"
        yield ManagedBroker(server, registry, access, conditions, ingest_password, admin_password)
    finally:
        access.stop()
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)
        server.stop()
        engine.dispose()


def connects_within(server: MosquittoServer, username: str, password: str, timeout_s: float) -> float:
    """Seconds until the login is accepted (retrying a refusal); AssertionError after ``timeout_s``."""
    started = time.monotonic()
    while True:
        if not refusal(server, username, password).is_failure:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{username} still refused after {timeout_s} s")
        time.sleep(0.05)


def test_twenty_credentials_issued_at_once_all_connect_within_two_seconds(managed: ManagedBroker) -> None:
    ids = [f"SD-T{i:03d}" for i in range(20)]
    reloads = managed.server.reloads_logged()
    start = threading.Barrier(20)

    def issue_then_connect(device_id: str) -> float:
        start.wait()
        issued = managed.access.issue(device_id)
        return connects_within(managed.server, issued.username, issued.password, 2.0)

    with ThreadPoolExecutor(20) as pool:
        waited = list(pool.map(issue_then_connect, ids))

    assert max(waited) <= 2.0
    # the writer records the plugin's answer a moment after the broker applied it
    assert wait_until(lambda: all(managed.access.access(d).state is AccessState.ACTIVE
                                  and managed.access.access(d).can_connect_now for d in ids), 1.0)
    # no reload at all: every change went to the dynamic-security plugin
    assert managed.server.reloads_logged() - reloads == 0
    assert managed.conditions == []


def test_a_retired_device_is_dropped_and_refused_within_two_seconds(managed: ManagedBroker) -> None:
    creds = managed.access.issue("SD-T001")
    connects_within(managed.server, creds.username, creds.password, 2.0)
    device = TestClient(managed.server, username=creds.username, password=creds.password)
    try:
        assert not device.connect().is_failure
        retired_at = time.monotonic()

        managed.registry.retire("SD-T001", "test", NOW_MS + 1, "stolen")

        device.wait_for_disconnect()  # its open connection closed by the reload
        dropped_s = time.monotonic() - retired_at
    finally:
        device.close()
    assert dropped_s <= 2.0
    assert refusal(managed.server, creds.username, creds.password).getName() == "Not authorized"
    # the writer's canary confirms the reload that already dropped the device (a moment later, perhaps)
    assert wait_until(lambda: managed.access.access("SD-T001").state is AccessState.REVOKED, 2.0)
    assert managed.access.access("SD-T001").can_connect_now is False


def test_a_device_may_publish_under_its_own_topics_only(managed: ManagedBroker) -> None:
    creds = managed.access.issue("SD-T002")
    connects_within(managed.server, creds.username, creds.password, 2.0)
    own = f"{creds.publish_filter[:-1]}event"
    other = own.replace("SD-T002", "SD-T003")
    with logged_in(managed.server, INGEST_ACCOUNT.username, managed.ingest_password) as ingest, \
            logged_in(managed.server, creds.username, creds.password) as device:
        ingest.subscribe("safety/#")
        device.publish(other, b"forged")
        device.publish(own.replace("smoke_detector", "elderly_alarm"), b"forged-kind")
        device.publish(own, b"own")
        received = ingest.wait_for_message(b"own")
    assert [(m.topic, m.payload) for m in received] == [(own, b"own")]


def test_a_broker_that_does_not_apply_a_change_raises_the_unconfirmed_condition(managed: ManagedBroker) -> None:
    pid = managed.server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # alive, holding its port, doing nothing
    try:
        creds = managed.access.issue("SD-T004")
        deadline = time.monotonic() + 10
        while managed.access.condition is None and time.monotonic() < deadline:
            time.sleep(0.05)
        condition = managed.access.condition
        assert condition is not None and condition.raised and condition.name == "broker_access_unconfirmed"
        assert managed.access.access("SD-T004").state is AccessState.UNCONFIRMED
        assert managed.access.access("SD-T004").can_connect_now is False
    finally:
        os.kill(pid, signal.SIGCONT)

    connects_within(managed.server, creds.username, creds.password, 5.0)
    deadline = time.monotonic() + 5
    while managed.access.condition is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert managed.access.condition is None
    # raised once, then cleared (the listeners are told a moment after the condition changes)
    assert wait_until(lambda: [c.raised for c in managed.conditions] == [True, False], 2.0), managed.conditions
    assert managed.access.access("SD-T004").state is AccessState.ACTIVE


def test_a_wrong_pid_file_raises_the_condition_and_nothing_is_admitted(managed_file_only: ManagedBroker,
                                                                       tmp_path: Path) -> None:
    managed = managed_file_only
    (tmp_path / "mosquitto.pid").write_text("999999999")  # not the broker
    creds = managed.access.issue("SD-T005")
    deadline = time.monotonic() + 10
    while managed.access.condition is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert managed.access.condition is not None
    assert refusal(managed.server, creds.username, creds.password).is_failure


# -- the dynamic-security plugin as the fast lane (no reload for a change to a few devices)


def in_the_file(managed: ManagedBroker) -> None:
    """Fold what the plugin holds into the password file (a file generation, then the plugin emptied)."""
    assert managed.access.sync(timeout_s=10)
    assert wait_until(lambda: managed.access.fast_lane_ready, 5.0)


def plugin_clients(managed: ManagedBroker) -> list[str]:
    """The clients the plugin holds, from the file it rewrites after every command."""
    text = (managed.server.conf_path.read_text().split("plugin_opt_config_file ", 1)[1]).split("\n", 1)[0]
    raw = Path(text).read_text()
    return [c["username"] for c in json.loads(raw).get("clients", [])] if raw.strip() else []


def test_without_the_plugin_twenty_credentials_at_once_coalesce_into_few_reloads(
        managed_file_only: ManagedBroker) -> None:
    managed = managed_file_only
    reloads = managed.server.reloads_logged()
    with ThreadPoolExecutor(20) as pool:
        issued = list(pool.map(managed.access.issue, [f"SD-T{i:03d}" for i in range(20)]))
    for creds in issued:
        connects_within(managed.server, creds.username, creds.password, 2.0)
    assert 1 <= managed.server.reloads_logged() - reloads < 20


def test_a_rotation_refuses_the_files_old_password_at_once_without_a_reload(managed: ManagedBroker) -> None:
    first = managed.access.issue("SD-T006")
    in_the_file(managed)
    assert plugin_clients(managed) == []  # the device's login lives in the password file now
    reloads = managed.server.reloads_logged()

    rotated = managed.access.issue("SD-T006")

    assert connects_within(managed.server, rotated.username, rotated.password, 1.0) <= 1.0
    assert refusal(managed.server, first.username, first.password).getName() == "Not authorized"
    assert managed.server.reloads_logged() == reloads
    assert wait_until(lambda: managed.access.access("SD-T006").state is AccessState.ACTIVE, 1.0)


def test_a_retired_device_in_the_file_is_dropped_within_a_second_without_a_reload(managed: ManagedBroker) -> None:
    creds = managed.access.issue("SD-T007")
    in_the_file(managed)
    reloads = managed.server.reloads_logged()
    device = TestClient(managed.server, username=creds.username, password=creds.password)
    try:
        assert not device.connect().is_failure
        retired_at = time.monotonic()

        managed.registry.retire("SD-T007", "test", NOW_MS + 1, "stolen")

        device.wait_for_disconnect()  # the plugin disables the login and closes its connection
        dropped_s = time.monotonic() - retired_at
    finally:
        device.close()
    assert dropped_s <= 1.0
    assert refusal(managed.server, creds.username, creds.password).getName() == "Not authorized"
    assert wait_until(lambda: managed.access.access("SD-T007").state is AccessState.REVOKED, 1.0)
    assert managed.server.reloads_logged() == reloads


def test_past_its_limit_the_plugins_clients_are_folded_into_the_file(tmp_path: Path) -> None:
    with managed_broker(tmp_path, dynamic_security=True, overlay_limit=3) as managed:
        reloads = managed.server.reloads_logged()
        kept = [managed.access.issue(f"SD-T01{i}") for i in range(3)]
        # each applied before the retirement (coalesced with it, SD-T010 would never reach the plugin at all)
        assert wait_until(lambda: all(managed.access.access(f"SD-T01{i}").state is AccessState.ACTIVE
                                      for i in range(3)), 2.0)
        managed.registry.retire("SD-T010", "test", NOW_MS + 1, "stolen")
        assert wait_until(lambda: managed.access.access("SD-T010").state is AccessState.REVOKED, 2.0)
        assert sorted(plugin_clients(managed)) == sorted(c.username for c in kept)
        assert managed.server.reloads_logged() == reloads

        fourth = managed.access.issue("SD-T013")  # a fourth client would be past the limit: the file carries it

        connects_within(managed.server, fourth.username, fourth.password, 1.0)
        assert wait_until(lambda: plugin_clients(managed) == [], 2.0)
        assert managed.server.reloads_logged() > reloads
        assert refusal(managed.server, kept[0].username, kept[0].password).getName() == "Not authorized"
        for creds in kept[1:]:
            connects_within(managed.server, creds.username, creds.password, 1.0)
        assert wait_until(lambda: managed.access.fast_lane_ready, 2.0)
        reloads = managed.server.reloads_logged()
        rotated = managed.access.issue("SD-T013")  # and the fast lane again
        connects_within(managed.server, rotated.username, rotated.password, 1.0)
        assert managed.server.reloads_logged() == reloads


def test_a_broker_restarted_without_the_plugins_file_gets_every_change_in_its_password_file(
        managed: ManagedBroker) -> None:
    kept = managed.access.issue("SD-T008")
    gone = managed.access.issue("SD-T009")
    connects_within(managed.server, gone.username, gone.password, 1.0)
    managed.registry.retire("SD-T009", "test", NOW_MS + 1, "stolen")
    assert wait_until(lambda: managed.access.access("SD-T009").state is AccessState.REVOKED, 1.0)

    # the broker restarts and its plugin file is lost: what the plugin held is gone with it
    managed.server.stop()
    dynsec_file = Path(managed.server.conf_path.read_text().split("plugin_opt_config_file ", 1)[1].split("\n")[0])
    dynsec_file.write_text("")
    managed.server.start()
    (managed.server.workdir.parent / "mosquitto.pid").write_text(str(managed.server.pid))

    # the writer's admin connection comes back, and it folds every change into the password file
    connects_within(managed.server, kept.username, kept.password, 5.0)
    assert wait_until(lambda: managed.access.fast_lane_ready, 5.0)
    assert refusal(managed.server, gone.username, gone.password).getName() == "Not authorized"
    assert managed.access.condition is None


def test_a_restarted_writer_keeps_the_plugins_clients_that_agree_and_drops_those_that_do_not(
        tmp_path: Path) -> None:
    with managed_broker(tmp_path, dynamic_security=True) as managed:
        staying = managed.access.issue("SD-T014")
        stale = managed.access.issue("SD-T015")
        connects_within(managed.server, staying.username, staying.password, 1.0)
        connects_within(managed.server, stale.username, stale.password, 1.0)
        assert sorted(plugin_clients(managed)) == sorted([staying.username, stale.username])
        device = TestClient(managed.server, username=staying.username, password=staying.password)
        try:
            assert not device.connect().is_failure
            managed.access.stop()  # the service stops ...
            store = CredentialStore(managed.access._store._engine)  # noqa: SLF001  (the same table)
            # ... and a credential reaches the table but never the broker (the service died in between)
            fresh_password = store.issue("SD-T015", NOW_MS + 5)

            # the service starts again: a new writer on the same broker and table
            restarted = BrokerAccess(managed.registry, store, lambda: int(time.time() * 1000),
                                     files=BrokerAuthFiles(tmp_path / "auth"), pid_file=tmp_path / "mosquitto.pid",
                                     service_accounts={INGEST_ACCOUNT: managed.ingest_password},
                                     canary=MqttCanaryLogin(managed.server.host, managed.server.port),
                                     resend_after_s=0.2,
                                     overlay=DynamicSecurity(managed.server.host, managed.server.port,
                                                             secrets.token_urlsafe(24), answer_timeout_s=0.5))
            managed.access = restarted
            restarted.start()
            assert restarted.sync(timeout_s=10)
            assert wait_until(lambda: restarted.fast_lane_ready, 5.0)

            # the client that agrees with the table stays, and so does the device's connection
            assert plugin_clients(managed) == [staying.username]
            time.sleep(0.3)
            assert device.disconnects == []
            # the one that did not is gone: the table's new password holds, the old one is refused
            connects_within(managed.server, stale.username, fresh_password, 1.0)
            assert refusal(managed.server, stale.username, stale.password).getName() == "Not authorized"
        finally:
            device.close()
            managed.access.stop()


def test_a_bulk_through_the_file_is_not_shadowed_by_the_plugins_older_passwords(tmp_path: Path) -> None:
    with managed_broker(tmp_path, dynamic_security=True, overlay_batch_max=2) as managed:
        older = managed.access.issue("SD-T016")  # through the plugin
        connects_within(managed.server, older.username, older.password, 1.0)
        reloads = managed.server.reloads_logged()

        bulk = {c.device_id: c for c in managed.access.issue_many(["SD-T016", "SD-T017", "SD-T018"])}  # the file

        requested, _ = managed.access.generations()
        assert managed.access.wait_confirmed(requested, 5.0)
        assert managed.server.reloads_logged() > reloads
        # confirmed means in force: the plugin's client with the older password was deleted before that
        assert not refusal(managed.server, older.username, bulk["SD-T016"].password).is_failure
        assert refusal(managed.server, older.username, older.password).getName() == "Not authorized"
        assert plugin_clients(managed) == []
        for creds in bulk.values():
            assert not refusal(managed.server, creds.username, creds.password).is_failure


def test_without_the_plugin_loaded_every_change_still_reaches_the_broker_through_the_file(tmp_path: Path) -> None:
    with managed_broker(tmp_path, dynamic_security=True, plugin_loaded=False) as managed:
        assert not managed.access.fast_lane_ready
        creds = managed.access.issue("SD-T019")
        connects_within(managed.server, creds.username, creds.password, 3.0)
        assert wait_until(lambda: managed.access.access("SD-T019").state is AccessState.ACTIVE, 3.0)
        managed.registry.retire("SD-T019", "test", NOW_MS + 1, "stolen")
        assert wait_until(lambda: refusal(managed.server, creds.username, creds.password).is_failure, 3.0)
        assert wait_until(lambda: managed.access.access("SD-T019").state is AccessState.REVOKED, 3.0)
        assert managed.access.condition is None and managed.conditions == []


def test_a_change_during_the_fold_goes_first_and_its_client_stays(tmp_path: Path) -> None:
    with managed_broker(tmp_path, dynamic_security=True, overlay_limit=150) as managed:
        hierarchy = load_hierarchy()
        many = [DeviceRecord(f"SD-F{i:04d}", "smoke_detector", hierarchy.street_id, BUILDING, 1, "0101")
                for i in range(152)]
        managed.registry.register_many(many, "test", NOW_MS)
        ids = [r.device_id for r in many]
        requested, _ = managed.access.generations()
        managed.access.issue_many(ids[:150])  # through the plugin: it holds 150 clients
        assert managed.access.wait_confirmed(requested + 1, 5.0) and managed.access.fast_lane_clients == 150

        managed.access.issue(ids[150])  # past the limit: through the file, then the fold's deletions begin
        assert wait_until(lambda: managed.access.fast_lane_clients < 150, 5.0)
        rotated = managed.access.issue(ids[0])  # made while the fold deletes: applied at once, through the plugin

        assert connects_within(managed.server, rotated.username, rotated.password, 1.0) <= 1.0
        assert wait_until(lambda: plugin_clients(managed) == [rotated.username], 10.0), len(plugin_clients(managed))
        assert not refusal(managed.server, rotated.username, rotated.password).is_failure


def restarted_writer(managed: ManagedBroker, tmp_path: Path) -> BrokerAccess:
    """The service started again: a new writer on the same broker, files and table (``wanli run``'s wiring, its
    admin password derived from the same secrets)."""
    managed.access.stop()
    restarted = BrokerAccess(managed.registry, CredentialStore(managed.access._store._engine),  # noqa: SLF001
                             lambda: int(time.time() * 1000), files=BrokerAuthFiles(tmp_path / "auth"),
                             pid_file=tmp_path / "mosquitto.pid",
                             service_accounts={INGEST_ACCOUNT: managed.ingest_password},
                             canary=MqttCanaryLogin(managed.server.host, managed.server.port), resend_after_s=0.2,
                             overlay=DynamicSecurity(managed.server.host, managed.server.port,
                                                     managed.admin_password, answer_timeout_s=0.5))
    managed.access = restarted
    restarted.start()
    return restarted


def test_a_restarted_service_whose_broker_serves_the_table_already_starts_without_a_reload(tmp_path: Path) -> None:
    with managed_broker(tmp_path, dynamic_security=True, overlay_batch_max=2) as managed:
        in_file = {c.device_id: c for c in managed.access.issue_many([f"SD-T00{i}" for i in range(3)])}  # the file
        in_plugin = managed.access.issue("SD-T004")
        gone = managed.access.issue("SD-T005")
        connects_within(managed.server, gone.username, gone.password, 1.0)
        managed.registry.retire("SD-T005", "test", NOW_MS + 1, "stolen")
        assert wait_until(lambda: managed.access.access("SD-T005").state is AccessState.REVOKED, 2.0)
        device = TestClient(managed.server, username=in_plugin.username, password=in_plugin.password)
        try:
            assert not device.connect().is_failure
            reloads = managed.server.reloads_logged()

            restarted = restarted_writer(managed, tmp_path)

            assert restarted.sync(timeout_s=10)
            assert managed.server.reloads_logged() == reloads  # nothing to load: the broker has it all
            assert restarted.fast_lane_ready
            time.sleep(0.3)
            assert device.disconnects == []  # and nobody was knocked off
            for creds in in_file.values():
                assert not refusal(managed.server, creds.username, creds.password).is_failure
            assert refusal(managed.server, gone.username, gone.password).is_failure
            rotated = restarted.issue("SD-T001")  # the fast lane works on at once
            connects_within(managed.server, rotated.username, rotated.password, 1.0)
            assert managed.server.reloads_logged() == reloads
        finally:
            device.close()
            managed.access.stop()


def test_a_restarted_service_reloads_when_the_broker_has_another_password_file(tmp_path: Path) -> None:
    with managed_broker(tmp_path, dynamic_security=True, overlay_batch_max=1) as managed:
        bulk = {c.device_id: c for c in managed.access.issue_many(["SD-T006", "SD-T007"])}  # the file
        requested, _ = managed.access.generations()
        assert managed.access.wait_confirmed(requested, 5.0)
        managed.access.stop()
        # the file on disk changes behind the broker's back (a restore, a hand edit): the broker still has the old one
        files = BrokerAuthFiles(tmp_path / "auth")
        files.write_canary(secrets.token_urlsafe(24))
        reloads = managed.server.reloads_logged()

        restarted = restarted_writer(managed, tmp_path)

        assert restarted.sync(timeout_s=10)
        assert managed.server.reloads_logged() > reloads
        for creds in bulk.values():
            assert not refusal(managed.server, creds.username, creds.password).is_failure
        managed.access.stop()


def test_a_broker_restarted_on_the_latest_files_is_not_reloaded_and_keeps_every_change(tmp_path: Path) -> None:
    with managed_broker(tmp_path, dynamic_security=True) as managed:
        kept = managed.access.issue("SD-T008")
        gone = managed.access.issue("SD-T009")
        connects_within(managed.server, gone.username, gone.password, 1.0)
        managed.registry.retire("SD-T009", "test", NOW_MS + 1, "stolen")
        assert wait_until(lambda: managed.access.access("SD-T009").state is AccessState.REVOKED, 1.0)
        requested, _ = managed.access.generations()

        managed.server.stop()  # its plugin's file stays: the plugin starts again with its clients
        managed.server.start()
        (managed.server.workdir.parent / "mosquitto.pid").write_text(str(managed.server.pid))
        reloads = managed.server.reloads_logged()

        assert wait_until(lambda: managed.access.generations()[1] > requested, 5.0)  # the writer's check, confirmed
        assert wait_until(lambda: managed.access.fast_lane_ready, 5.0)
        assert managed.server.reloads_logged() == reloads
        connects_within(managed.server, kept.username, kept.password, 1.0)
        assert refusal(managed.server, gone.username, gone.password).getName() == "Not authorized"
        assert managed.access.condition is None


def test_a_bulk_reload_folds_a_plugin_holding_half_its_limit(tmp_path: Path) -> None:
    with managed_broker(tmp_path, dynamic_security=True, overlay_limit=4, overlay_batch_max=2) as managed:
        held = [managed.access.issue(f"SD-T01{i}") for i in range(2)]  # through the plugin: half its limit
        assert wait_until(lambda: sorted(plugin_clients(managed)) == sorted(c.username for c in held), 2.0)
        reloads = managed.server.reloads_logged()

        bulk = managed.access.issue_many(["SD-T002", "SD-T003", "SD-T004"])  # the file, with its reload

        # folded on that reload (below half its limit the plugin keeps the clients that agree with the file)
        assert wait_until(lambda: plugin_clients(managed) == [], 5.0)
        assert managed.server.reloads_logged() > reloads
        for creds in [*held, *bulk]:  # the file admits every one of them now
            connects_within(managed.server, creds.username, creds.password, 2.0)
