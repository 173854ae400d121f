"""Simulated devices against a broker that requires credentials: each logs in as itself, with its last will.

A real Mosquitto 2.0 with ``allow_anonymous false`` and the password and ACL files
devices/credentials.py renders for one building's devices (config/mosquitto/auth.conf).
``DevicePublishers`` gives each device its own connection (client id = user name = device
id); the ingest account reads what they send, and the wills the broker publishes for them
when every connection dies at once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.credentials import (
    INGEST_ACCOUNT,
    BrokerAuthFiles,
    CredentialStore,
    DeviceTopicOwner,
    render_broker_auth,
)
from devices.hierarchy import load_hierarchy
from simulators.population import Population
from simulators.publisher import BrokerAddress, DevicePublishers
from tests.fixtures.servers import MosquittoServer, free_port
from tests.integration.test_broker_acl import logged_in
from tests.support.waiting import wait_until
from foundation import db
from foundation.errors import StoreUnavailable

pytestmark = pytest.mark.mosquitto

NOW_MS = 1_795_000_000_000


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[MosquittoServer, Population, dict[str, str], str]]:
    """xq-01's devices, each with issued credentials, on a broker that admits nobody else (and ingest)."""
    population = Population.of(load_hierarchy(), building_ids=["xq-01"], start_seq=1_000)
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    db.METADATA.create_all(engine)
    store = CredentialStore(engine)
    passwords = {d: store.issue(d, NOW_MS) for d in population.devices}
    ingest_password = secrets.token_urlsafe(24)
    owners = [DeviceTopicOwner("wanli", r.kind, r.device_id) for r in population.records]
    files = BrokerAuthFiles(tmp_path / "auth")
    files.directory.mkdir()
    files.write(*render_broker_auth(owners, store.active_hashes(), {INGEST_ACCOUNT: ingest_password}))
    server = MosquittoServer(tmp_path / "broker", port=free_port(), password_file=files.password_path,
                             acl_file=files.acl_path)
    server.start()
    try:
        yield server, population, passwords, ingest_password
    finally:
        server.stop()
        engine.dispose()


def logins(population: Population) -> dict[str, str]:
    """Each device's MQTT login as the service issues it: street/kind/device id."""
    return {r.device_id: DeviceTopicOwner("wanli", r.kind, r.device_id).username for r in population.records}


def test_each_device_publishes_as_itself_and_its_will_is_published_when_it_drops(secured):
    server, population, passwords, ingest_password = secured
    broker = BrokerAddress(server.host, server.port)
    clock = iter(range(NOW_MS, NOW_MS + 10**9, 1000))
    sink = DevicePublishers(broker, passwords, now_ms=lambda: next(clock), usernames=logins(population),
                            wills={d.device_id: d.offline for d in population.devices.values()})
    with logged_in(server, INGEST_ACCOUNT.username, ingest_password) as ingest:
        ingest.subscribe("safety/#")
        try:
            sink.connect_all(list(population.devices))
            assert sink.connections == len(population) > 50
            sent = population.start(NOW_MS)
            for t, body in sent:
                sink.publish(t, body)
            assert sink.flush(30) and sink.acked == sink.sent == len(sent)
            assert wait_until(lambda: len(ingest.messages) >= len(sent), 15.0), f"{len(ingest.messages)} of {len(sent)}"
            assert sorted((m.topic, m.payload) for m in ingest.messages) == sorted(sent)

            dropped = sink.drop_all()  # every connection dies: the broker speaks for each device
        finally:
            sink.close()
        assert dropped == len(population)
        assert wait_until(lambda: len(ingest.messages) >= 2 * len(sent), 15.0)
    wills = ingest.messages[len(sent):]
    assert sorted(m.topic for m in wills) == sorted(t.rsplit("/", 1)[0] + "/status" for t, _ in sent)
    for m in wills:
        body = json.loads(m.payload)
        online = json.loads(next(b for t, b in sent if t == m.topic))
        # Reserved when it connected, as the contract says: the number just before its `online`.
        assert (body["type"], body["seq"]) == ("offline", online["seq"] - 1)


def test_a_device_without_its_credentials_is_refused_by_name(secured):
    server, population, _passwords, _ = secured
    device_id = next(iter(population.devices))
    broker = BrokerAddress(server.host, server.port)
    for wrong in ({}, {device_id: "not-its-password"}):
        sink = DevicePublishers(broker, wrong)
        try:
            with pytest.raises(StoreUnavailable, match=f"refused {device_id}: Not authorized"):
                sink.connect_all([device_id])
        finally:
            sink.close()


def test_a_station_reads_its_own_dispatches_over_its_own_connection(secured):
    """The duty terminal subscribes on the connection it publishes on (one client id per device under the ACL)."""
    server, population, passwords, ingest_password = secured
    [station] = population.stations()
    got: list[tuple[str, bytes]] = []
    own = f"dispatch/v1/wanli/fire_station/{station.device_id}/duty"
    sink = DevicePublishers(BrokerAddress(server.host, server.port), passwords, dispatch_topics={station.device_id: own},
                            usernames=logins(population),
                            on_dispatch=lambda sid, body: got.append((sid, body)))
    try:
        sink.connect_all([station.device_id, "SD-XQ01-0101"])
        with logged_in(server, INGEST_ACCOUNT.username, ingest_password) as platform:
            platform.publish("dispatch/v1/wanli/fire_station/MFS-YH/duty", b'{"dispatch_id":"other-0"}')
            platform.publish(own, b'{"dispatch_id":"inc_1-0"}')
        assert wait_until(lambda: bool(got), 15.0)
        assert got == [(station.device_id, b'{"dispatch_id":"inc_1-0"}')]
    finally:
        sink.close()


def test_stations_answer_through_their_own_connections_in_a_scenario(mosquitto):
    """station_slow_ack with a connection per device: the station hears its dispatch on its own duty topic."""
    from dataclasses import replace

    from wanli.embedded_scenario import run_embedded
    from simulators.scenarios import get

    result = run_embedded(replace(get("station_slow_ack"), per_device_connections=True), mqtt_url=mosquitto.url)
    assert result.ok, result.report()
    assert any("收到派单" in line for line in result.log)
