"""The service's broker access against a real Mosquitto 2.0: changes coalesced, confirmed, and refused when not.

Each test runs its own broker (config/mosquitto/auth.conf, with files the service writes)
and a ``BrokerAccess`` with its writer thread, a real registry and credential store,
SIGHUP by pid file and the canary login over MQTT, as ``wanli run`` wires them.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from devices.broker_access import AccessCondition, AccessState, BrokerAccess, MqttCanaryLogin
from devices.credentials import INGEST_ACCOUNT, BrokerAuthFiles, CredentialStore, render_broker_auth
from devices.hierarchy import load_hierarchy
from devices.registry import DeviceRecord, DeviceRegistry
from tests.fixtures.servers import MosquittoServer, free_port
from tests.integration.test_broker_acl import Login, logged_in, refusal
from wanli import db

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


def smoke_detectors(n: int, street: str) -> list[DeviceRecord]:
    return [DeviceRecord(f"SD-T{i:03d}", "smoke_detector", street, BUILDING, 1 + i % 5, f"{1 + i % 5:02d}01")
            for i in range(n)]


@pytest.fixture
def managed(tmp_path: Path) -> Iterator[ManagedBroker]:
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
    server.start()
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(str(server.pid))
    conditions: list[AccessCondition] = []
    access = BrokerAccess(registry, CredentialStore(engine), lambda: int(time.time() * 1000), files=files,
                          pid_file=pid_file, service_accounts={INGEST_ACCOUNT: ingest_password},
                          canary=MqttCanaryLogin(server.host, server.port), unconfirmed_after_s=1.5,
                          resend_after_s=0.2, on_condition=conditions.append)
    access.start()
    try:
        assert access.sync(timeout_s=10), "the first generation was not confirmed"
        yield ManagedBroker(server, registry, access, conditions, ingest_password)
    finally:
        access.stop()
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)
        server.stop()
        engine.dispose()


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


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
    assert all(managed.access.access(d).state is AccessState.ACTIVE and managed.access.access(d).can_connect_now
               for d in ids)
    # coalesced: far fewer reloads than changes (each SIGHUP the writer sends shows as one reload)
    assert managed.server.reloads_logged() - reloads < 20
    assert managed.conditions == []


def test_a_retired_device_is_dropped_and_refused_within_two_seconds(managed: ManagedBroker) -> None:
    creds = managed.access.issue("SD-T001")
    connects_within(managed.server, creds.username, creds.password, 2.0)
    device = Login(managed.server, creds.username, creds.password)
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
    assert [c.raised for c in managed.conditions] == [True, False]  # raised once, then cleared
    assert managed.access.access("SD-T004").state is AccessState.ACTIVE


def test_a_wrong_pid_file_raises_the_condition_and_nothing_is_admitted(managed: ManagedBroker, tmp_path: Path) -> None:
    (tmp_path / "mosquitto.pid").write_text("999999999")  # not the broker
    creds = managed.access.issue("SD-T005")
    deadline = time.monotonic() + 10
    while managed.access.condition is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert managed.access.condition is not None
    assert refusal(managed.server, creds.username, creds.password).is_failure
