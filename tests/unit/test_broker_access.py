"""The broker-access writer's protocol, with a broker that loses signals on purpose.

``ReloadingBroker`` stands for Mosquitto's reload only (what it would read from the files
when a SIGHUP gets through); ``FileCanary`` logs in against what the broker last read. The
real broker is in tests/integration/test_broker_access.py; here the writer's decisions are
tested: coalescing, resending a lost SIGHUP, the unconfirmed condition and its clearing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from devices.broker_access import CANARY_USERNAME, AccessState, BrokerAccess
from devices.credentials import INGEST_ACCOUNT, BrokerAuthFiles, CredentialStore, verify_mosquitto_password
from devices.hierarchy import load_hierarchy
from devices.registry import DeviceRecord, DeviceRegistry
from foundation import db

NOW_MS = 1_795_000_000_000


class ReloadingBroker:
    """Reads the password file when a reload gets through; ``drop_next`` reloads are lost, as mid-reload SIGHUPs are."""

    def __init__(self, files: BrokerAuthFiles) -> None:
        self.files = files
        self.logins: dict[str, str] = {}
        self.signals = 0
        self.applied = 0
        self.drop_next = 0
        self.stopped = False
        self.lock = threading.Lock()

    def reload(self) -> None:
        with self.lock:
            self.signals += 1
            if self.stopped:
                return
            if self.drop_next:
                self.drop_next -= 1
                return
            text = self.files.password_path.read_text()
            self.logins = dict(line.split(":", 1) for line in text.splitlines())
            self.applied += 1


class FileCanary:
    def __init__(self, broker: ReloadingBroker) -> None:
        self.broker = broker

    def try_login(self, username: str, password: str, timeout_s: float) -> bool:
        with self.broker.lock:
            encoded = self.broker.logins.get(username)
        return encoded is not None and verify_mosquitto_password(password, encoded)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    db.METADATA.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def parts(engine: Engine, tmp_path: Path) -> tuple[DeviceRegistry, CredentialStore, BrokerAuthFiles, ReloadingBroker]:
    hierarchy = load_hierarchy()
    registry = DeviceRegistry(engine, hierarchy)
    registry.register_many([DeviceRecord(f"SD-U{i:02d}", "smoke_detector", hierarchy.street_id, "xq-01", 1, "0101")
                            for i in range(30)], "test", NOW_MS)
    files = BrokerAuthFiles(tmp_path / "auth")
    files.directory.mkdir()
    return registry, CredentialStore(engine), files, ReloadingBroker(files)


def access_for(parts, **options) -> BrokerAccess:  # type: ignore[no-untyped-def]
    registry, store, files, broker = parts
    access = BrokerAccess(registry, store, lambda: int(time.time() * 1000), files=files, broker=broker,
                          canary=FileCanary(broker), service_accounts={INGEST_ACCOUNT: "ingest-pw"}, **options)
    access.start()
    return access


def test_changes_made_at_once_are_coalesced_and_every_one_reaches_the_broker(parts) -> None:  # type: ignore[no-untyped-def]
    access = access_for(parts, resend_after_s=0.2)
    try:
        assert access.sync(5)
        before = parts[3].applied
        barrier = threading.Barrier(30)

        def issue(i: int):  # type: ignore[no-untyped-def]
            barrier.wait()
            return access.issue(f"SD-U{i:02d}")

        threads_out: list = []
        threads = [threading.Thread(target=lambda i=i: threads_out.append(issue(i))) for i in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert access.wait_confirmed(max(i.generation for i in threads_out), 5)

        logins = parts[3].logins
        assert all(verify_mosquitto_password(i.password, logins[i.username]) for i in threads_out)
        assert parts[3].applied - before < 30  # far fewer reloads than changes
        assert {access.access(i.device_id).state for i in threads_out} == {AccessState.ACTIVE}
    finally:
        access.stop()


def test_a_lost_sighup_is_sent_again_until_the_canary_gets_in(parts) -> None:  # type: ignore[no-untyped-def]
    access = access_for(parts, resend_after_s=0.1)
    try:
        assert access.sync(5)
        parts[3].drop_next = 3
        signals = parts[3].signals

        issued = access.issue("SD-U01")

        assert access.wait_confirmed(issued.generation, 5)
        assert parts[3].signals - signals >= 4  # three lost, then one that got through
        assert verify_mosquitto_password(issued.password, parts[3].logins[issued.username])
        assert access.condition is None
    finally:
        access.stop()


def test_a_broker_that_applies_nothing_raises_the_condition_once_and_it_clears_when_it_does(parts) -> None:  # type: ignore[no-untyped-def]
    seen = []
    access = access_for(parts, resend_after_s=0.05, unconfirmed_after_s=0.3, on_condition=seen.append)
    try:
        assert access.sync(5)
        parts[3].stopped = True
        issued = access.issue("SD-U02")
        deadline = time.monotonic() + 5
        while access.condition is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert access.condition is not None and access.condition.name == "broker_access_unconfirmed"
        assert access.access("SD-U02").state is AccessState.UNCONFIRMED
        time.sleep(0.3)
        assert [c.raised for c in seen] == [True]  # raised once, not at every retry

        parts[3].stopped = False
        assert access.wait_confirmed(issued.generation, 5)
        assert access.condition is None and [c.raised for c in seen] == [True, False]
        assert access.access("SD-U02").state is AccessState.ACTIVE
    finally:
        access.stop()


def test_a_retired_device_leaves_the_file_and_the_canary_is_in_every_generation(parts) -> None:  # type: ignore[no-untyped-def]
    registry = parts[0]
    access = access_for(parts)
    try:
        issued = access.issue_many(["SD-U03", "SD-U04"])
        assert access.wait_confirmed(issued[0].generation, 5)
        registry.retire("SD-U03", "test", NOW_MS + 1, "stolen")
        requested, _ = access.generations()
        assert access.wait_confirmed(requested, 5)

        logins = parts[3].logins
        assert issued[0].username not in logins and issued[1].username in logins
        assert {CANARY_USERNAME, INGEST_ACCOUNT.username} <= logins.keys()
        assert access.access("SD-U03").state is AccessState.REVOKED
        assert access.access("SD-U05").state is AccessState.NONE
    finally:
        access.stop()
