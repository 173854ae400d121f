"""Per-device credentials against a real Mosquitto 2.0: who may connect, and publish where.

Each test runs its own broker (allow_anonymous false, config/mosquitto/auth.conf) whose
password and ACL files devices/credentials.py generated, with two smoke detectors A and B
and the ingest service account. Changes go through ``sync_broker_auth`` (rewrite + SIGHUP)
on the running broker, as in production.

Mosquitto answers a forbidden QoS 1 publish from an MQTT 3.1.1 client with an ordinary
PUBACK and drops it, and grants a forbidden subscription, delivering nothing. So
non-delivery is shown against a positive control: a permitted message sent after the
forbidden one over the same connection arrives, and the broker keeps per-connection
order, so the forbidden one would have arrived first.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from paho.mqtt.reasoncodes import ReasonCode

from devices.credentials import (
    INGEST_ACCOUNT,
    BrokerAuthFiles,
    CredentialStore,
    DeviceTopicOwner,
    render_broker_auth,
    sync_broker_auth,
)
from devices.topics import MessageClass, device_topic
from tests.fixtures.servers import MosquittoServer, free_port
from tests.support.mqtt import TestClient
from foundation import db

pytestmark = pytest.mark.mosquitto

MQTT_TIMEOUT_S = 10.0
NOW_MS = 1_795_000_000_000

A = DeviceTopicOwner("wanli", "smoke_detector", "SD-XQ01-0101")
B = DeviceTopicOwner("wanli", "smoke_detector", "SD-XQ01-0102")


def topic(owner: DeviceTopicOwner, msg_class: MessageClass = MessageClass.EVENT) -> str:
    return device_topic(owner.street, owner.kind, owner.device_id, msg_class)


def payload(seq: int, msg_type: str = "alarm") -> bytes:
    return json.dumps({"v": 1, "ts": NOW_MS, "seq": seq, "type": msg_type}).encode()


@contextmanager
def logged_in(broker: MosquittoServer, username: str, password: str, *, client_id: str = "",
              will_topic: str = "") -> Iterator[TestClient]:
    login = TestClient(broker, client_id, username=username, password=password, timeout_s=MQTT_TIMEOUT_S,
                       will=(will_topic, payload(0, "offline")) if will_topic else None)
    try:
        reason = login.connect()
        assert not reason.is_failure, f"{username} was refused: {reason}"
        yield login
    finally:
        login.close()


def refusal(broker: MosquittoServer, username: str | None, password: str | None) -> ReasonCode:
    """The CONNACK a login gets (the test expects a refusal)."""
    login = TestClient(broker, username=username, password=password, timeout_s=MQTT_TIMEOUT_S)
    try:
        return login.connect()
    finally:
        login.close()


@dataclass
class SecuredBroker:
    """A broker whose password and ACL files come from a credential store and a device list."""

    server: MosquittoServer
    store: CredentialStore
    files: BrokerAuthFiles
    owners: list[DeviceTopicOwner]
    passwords: dict[str, str]  # device id or account name -> plaintext, as the installer would hold them

    def login(self, name: str, **options: str) -> AbstractContextManager[TestClient]:
        """Log in as a device (by its id: its login is street/kind/id) or a service account."""
        username = next((o.username for o in self.owners if o.device_id == name), name)
        return logged_in(self.server, username, self.passwords[name], **options)

    def ingest(self) -> AbstractContextManager[TestClient]:
        return self.login(INGEST_ACCOUNT.username)

    def sync(self) -> None:
        """``sync_broker_auth`` against the running broker; returns once it has reloaded."""
        reloads = self.server.reloads_logged()
        sync_broker_auth(
            self.owners, self.store, self.files, self._pid(), {INGEST_ACCOUNT: self.passwords[INGEST_ACCOUNT.username]}
        )
        self.server.wait_for_reload(reloads)

    def _pid(self) -> int:
        pid = self.server.pid
        assert pid is not None, "broker is not running"
        return pid


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[SecuredBroker]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    db.METADATA.create_all(engine)
    store = CredentialStore(engine)
    passwords = {owner.device_id: store.issue(owner.device_id, NOW_MS) for owner in (A, B)}
    passwords[INGEST_ACCOUNT.username] = secrets.token_urlsafe(24)
    files = BrokerAuthFiles(tmp_path / "auth")
    files.directory.mkdir()
    files.write(*render_broker_auth([A, B], store.active_hashes(), {INGEST_ACCOUNT: passwords[INGEST_ACCOUNT.username]}))
    server = MosquittoServer(
        tmp_path / "broker", port=free_port(), password_file=files.password_path, acl_file=files.acl_path
    )
    server.start()
    try:
        yield SecuredBroker(server, store, files, [A, B], passwords)
    finally:
        server.stop()
        engine.dispose()


def test_device_publishes_on_its_own_topics_and_ingest_receives_them(broker: SecuredBroker) -> None:
    """The broker accepts passwords hashed by devices.credentials (the devices' and ingest's)."""
    sent = [(topic(A, msg_class), payload(seq)) for seq, msg_class in enumerate(MessageClass, start=1)]
    with broker.ingest() as ingest, broker.login(A.device_id) as device:
        assert [code.value for code in ingest.subscribe("safety/#")] == [1]
        for t, body in sent:
            device.publish(t, body)
        received = ingest.wait_for_message(sent[-1][1])

    assert [(m.topic, m.payload, m.qos) for m in received] == [(t, body, 1) for t, body in sent]


@pytest.mark.parametrize(
    "forbidden_topic",
    [
        topic(B),  # the other device's own topic
        device_topic("wanli", "elderly_alarm", A.device_id, MessageClass.EVENT),  # its id under another kind
        device_topic("fuping", A.kind, A.device_id, MessageClass.EVENT),  # its id and kind in another street
        topic(A) + "/extra",  # below its topics
        "safety/v1/wanli/smoke_detector",  # outside the contract
    ],
    ids=["other-device", "other-kind", "other-street", "deeper", "outside-contract"],
)
def test_device_cannot_publish_outside_its_own_topics(broker: SecuredBroker, forbidden_topic: str) -> None:
    with broker.ingest() as ingest, broker.login(A.device_id) as device:
        ingest.subscribe("safety/#")
        device.publish(forbidden_topic, payload(1, "forged"))  # acknowledged all the same
        device.publish(topic(A), payload(2))
        received = ingest.wait_for_message(payload(2))

    assert [(m.topic, m.payload) for m in received] == [(topic(A), payload(2))]


def test_device_cannot_read_other_devices_messages(broker: SecuredBroker) -> None:
    with broker.ingest() as ingest, broker.login(A.device_id) as eavesdropper, broker.login(B.device_id) as other:
        ingest.subscribe("safety/#")
        # Granted (MQTT 3.1.1 SUBACK QoS 1), yet nothing is delivered: reads are checked per message.
        assert [code.value for code in eavesdropper.subscribe("safety/#")] == [1]
        other.publish(topic(B), payload(1))
        ingest.wait_for_message(payload(1))
        # A PUBACK on the eavesdropper's own connection comes after anything queued to it before.
        eavesdropper.publish(topic(A), payload(2))

        assert eavesdropper.messages == []


@pytest.mark.parametrize(
    ("username", "password"),
    [
        (A.username, "wrong-password"),
        (A.username, ""),
        (A.device_id, "any"),  # the bare id is not a login
        ("SD-NOT-ISSUED", "anything"),
        (None, None),  # anonymous
    ],
    ids=["wrong-password", "empty-password", "bare-device-id", "unknown-user", "anonymous"],
)
def test_connection_without_valid_credentials_is_refused(
    broker: SecuredBroker, username: str | None, password: str | None
) -> None:
    reason = refusal(broker.server, username, password)

    assert (reason.is_failure, reason.getName()) == (True, "Not authorized")


def test_device_cannot_knock_another_off_by_taking_its_client_id(broker: SecuredBroker) -> None:
    """use_username_as_clientid: A's client id becomes its login "wanli/smoke_detector/SD-XQ01-0101", whatever A asks
    for (here B's login, and B's bare id)."""
    victim_login = broker.login(B.device_id, client_id=B.username, will_topic=topic(B, MessageClass.STATUS))
    with broker.ingest() as ingest, victim_login as victim:
        ingest.subscribe("safety/#")
        with broker.login(A.device_id, client_id=B.username), broker.login(A.device_id, client_id=B.device_id):
            victim.publish(topic(B), payload(1))
            received = ingest.wait_for_message(payload(1))

        assert victim.disconnects == []
        assert [m.topic for m in received] == [topic(B)]  # B's last will was not set off


@pytest.mark.parametrize("how", ["revoked", "retired"])
def test_device_shut_out_by_sync_is_dropped_and_refused_while_others_stay(broker: SecuredBroker, how: str) -> None:
    with broker.ingest() as ingest, broker.login(A.device_id) as staying, broker.login(B.device_id) as leaving:
        ingest.subscribe("safety/#")
        if how == "revoked":
            broker.store.revoke(B.device_id, NOW_MS + 1)  # its registration stays
        else:
            broker.owners.remove(B)  # retired in the registry, credentials not (yet) revoked
        pid = broker.server.pid

        broker.sync()

        leaving.wait_for_disconnect()  # Mosquitto re-checks connected clients on reload
        staying.publish(topic(A), payload(1))
        assert [m.payload for m in ingest.wait_for_message(payload(1))] == [payload(1)]
    assert broker.server.pid == pid  # reloaded, not restarted
    assert refusal(broker.server, B.username, broker.passwords[B.device_id]).getName() == "Not authorized"
    with broker.login(A.device_id):
        pass


def test_device_added_after_start_connects_after_sync_without_restart(broker: SecuredBroker) -> None:
    c = DeviceTopicOwner("wanli", "charging_station", "CS-XQ01-01")
    broker.passwords[c.device_id] = broker.store.issue(c.device_id, NOW_MS + 1)
    broker.owners.append(c)
    pid = broker.server.pid
    assert refusal(broker.server, c.username, broker.passwords[c.device_id]).getName() == "Not authorized"

    broker.sync()

    with broker.ingest() as ingest, broker.login(c.device_id) as charger:
        ingest.subscribe("safety/#")
        charger.publish(topic(c, MessageClass.TELEMETRY), payload(1, "station_status"))
        [message] = ingest.wait_for_message(payload(1, "station_status"))
    assert message.topic == "safety/v1/wanli/charging_station/CS-XQ01-01/telemetry"
    assert broker.server.pid == pid


def test_rotated_password_replaces_the_old_one_after_sync(broker: SecuredBroker) -> None:
    old = broker.passwords[A.device_id]
    broker.passwords[A.device_id] = broker.store.issue(A.device_id, NOW_MS + 1)

    broker.sync()

    assert refusal(broker.server, A.username, old).getName() == "Not authorized"
    with broker.login(A.device_id):
        pass


def test_reload_with_the_password_file_missing_shuts_everyone_out(broker: SecuredBroker) -> None:
    """Why BrokerAuthFiles replaces files atomically: Mosquitto 2.0 fails closed.

    It logs 'Error: Unable to open pwfile', drops every connected client (ingest too) and
    refuses every login until a reload finds the file again.
    """
    saved = broker.files.password_path.read_text()
    with broker.ingest() as ingest:
        broker.files.password_path.unlink()
        broker.server.reload()

        ingest.wait_for_disconnect()
    assert refusal(broker.server, A.username, broker.passwords[A.device_id]).getName() == "Not authorized"
    assert "Unable to open pwfile" in broker.server.log_tail()

    broker.files.write(saved, broker.files.acl_path.read_text())
    broker.server.reload()

    with broker.login(A.device_id):
        pass


def test_a_micro_fire_station_receives_its_dispatches_and_nothing_else(broker: SecuredBroker) -> None:
    """The platform publishes a dispatch on the station's duty topic (as alerts/escalation.py addresses it) and the
    station's duty terminal, logged in as itself, receives it; another station's dispatch does not reach it, a
    smoke detector reads no dispatch, and a station cannot forge one."""
    from devices.topics import dispatch_topic

    station = DeviceTopicOwner("wanli", "fire_station", "MFS-XQ")
    broker.passwords[station.device_id] = broker.store.issue(station.device_id, NOW_MS + 1)
    broker.owners.append(station)
    broker.sync()
    own = dispatch_topic("wanli", "fire_station", "MFS-XQ", "duty")
    other = dispatch_topic("wanli", "fire_station", "MFS-YH", "duty")

    with broker.ingest() as platform, broker.login(station.device_id) as duty, broker.login(A.device_id) as detector:
        assert [code.value for code in duty.subscribe("dispatch/v1/wanli/fire_station/+/duty")] == [1]
        detector.subscribe("dispatch/#")
        duty.publish(own, b'{"forged": true}')  # acknowledged, dropped: only the platform sends dispatches
        platform.publish(other, b'{"dispatch_id": "inc_other-0"}')
        platform.publish(own, b'{"dispatch_id": "inc_1-0"}')
        received = duty.wait_for_message(b'{"dispatch_id": "inc_1-0"}')
        detector.publish(topic(A), payload(1))  # its PUBACK comes after anything queued to it before

        assert [(m.topic, m.payload) for m in received] == [(own, b'{"dispatch_id": "inc_1-0"}')]
        assert detector.messages == []
    # The station still publishes its answers on its own device topics.
    with broker.ingest() as ingest, broker.login(station.device_id) as duty:
        ingest.subscribe("safety/#")
        duty.publish(topic(station), payload(2, "dispatch_ack"))
        [answer] = ingest.wait_for_message(payload(2, "dispatch_ack"))
    assert answer.topic == "safety/v1/wanli/fire_station/MFS-XQ/event"
