"""The one publisher (foundation/mqtt.py ``Publisher``) against a real Mosquitto that goes away and comes back: it waits
its ``Backoff`` between attempts and takes the connection up again; a publish while the broker is away fails with
ConnectionError (the dispatcher then keeps the notice pending); the dispatcher's connection is not taken up again
while its role is held elsewhere; a cut connection leaves the last will, a closed one does not."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from alerts.dispatch import NoticePublisher
from simulators.publisher import BrokerAddress, MqttPublisher
from tests.fixtures.service import wait_for
from tooling.local_servers import MosquittoServer
from foundation.background import Backoff
from foundation.errors import StoreUnavailable
from foundation.mqtt import MQTTMessage, Publisher, Subscriber
from foundation.ports import free_port


class CountedBackoff(Backoff):
    """A Backoff that counts the waits it was asked for."""

    def __init__(self, first_s: float, cap_s: float) -> None:
        super().__init__(first_s, cap_s, jitter=0.0)
        self.waits = 0

    def next_s(self) -> float:
        self.waits += 1
        return super().next_s()


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = MosquittoServer(tmp_path / "broker", port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def listen(broker: MosquittoServer, topic_filter: str, name: str) -> tuple[Subscriber, list[MQTTMessage]]:
    heard: list[MQTTMessage] = []
    ear = Subscriber(broker.host, broker.port, topic_filter, heard.append, client_id=name)
    assert ear.wait(10)
    return ear, heard


def test_a_publisher_waits_its_backoff_while_the_broker_is_away_and_connects_again(broker: MosquittoServer) -> None:
    backoff = CountedBackoff(0.05, 0.2)
    publisher = Publisher(broker.host, broker.port, client_id="pub-restart", backoff=backoff)
    try:
        assert publisher.connect(5) is True
        publisher.publish_confirmed("t/one", b"1", 5)
        broker.stop()
        wait_for(lambda: not publisher.connected, timeout_s=10)
        with pytest.raises(ConnectionError):  # nobody acknowledges it: the caller keeps it for later
            publisher.publish_confirmed("t/away", b"away", 0.3)
        with pytest.raises(ConnectionError, match="not connected"):
            publisher.connect(0.3)
        wait_for(lambda: backoff.waits >= 3, timeout_s=10)  # attempts, each after a wait of its backoff
        broker.start()
        ear, heard = listen(broker, "t/#", "ear-restart")
        try:
            publisher.connect(10)  # taken up again by itself (its next attempt after the broker came back)
            publisher.publish_confirmed("t/two", b"2", 5)
            wait_for(lambda: any(m.topic == "t/two" for m in heard), timeout_s=5)
            assert backoff.next_s() == 0.05  # reset once the broker took the connection
        finally:
            ear.close()
    finally:
        publisher.close()
    assert not publisher.running


def test_the_dispatchers_connection_is_not_taken_up_again_while_its_role_is_held_elsewhere(
        broker: MosquittoServer) -> None:
    held = [True]
    publisher = NoticePublisher(broker.host, broker.port, client_id="wanli-gated-dispatch", timeout_s=2)
    publisher.gate = lambda: held[0]
    try:
        publisher.publish_notice("dispatch/v1/wanli/x", '{"a":1}')
        held[0] = False  # the role went elsewhere, then the connection dropped
        broker.restart()
        wait_for(lambda: not publisher.running, timeout_s=10)  # its loop ended rather than take the session back
        time.sleep(0.5)
        assert not publisher.connected and not publisher.running
        with pytest.raises(ConnectionError, match="dispatch role is not held"):
            publisher.publish_notice("dispatch/v1/wanli/x", '{"a":2}')
        held[0] = True  # the role is back here: the next notice connects anew
        ear, heard = listen(broker, "dispatch/#", "ear-gated")
        try:
            publisher.publish_notice("dispatch/v1/wanli/x", '{"a":3}')
            wait_for(lambda: [m.payload for m in heard] == [b'{"a":3}'], timeout_s=5)
        finally:
            ear.close()
    finally:
        publisher.close()


def test_a_cut_connection_leaves_its_last_will_and_a_closed_one_none(broker: MosquittoServer) -> None:
    ear, heard = listen(broker, "will/#", "ear-wills")
    address = BrokerAddress(broker.host, broker.port)
    try:
        cut = MqttPublisher(address, client_id="dev-cut", will=("will/dev-cut", b"offline"))
        closed = MqttPublisher(address, client_id="dev-closed", will=("will/dev-closed", b"offline"))
        closed.close()
        cut.drop()
        wait_for(lambda: any(m.topic == "will/dev-cut" for m in heard), timeout_s=10)
        time.sleep(0.3)
        assert [m.topic for m in heard] == ["will/dev-cut"]
    finally:
        ear.close()


def test_a_simulated_device_without_a_broker_is_told_so_at_once() -> None:
    began = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        MqttPublisher(BrokerAddress("127.0.0.1", free_port()), client_id="nobody-home", connect_timeout_s=30)
    assert time.monotonic() - began < 10  # the refusal of the first attempt, not the 30 s allowed for a handshake


def test_every_connection_sends_small_packets_at_once(broker: MosquittoServer) -> None:
    """TCP_NODELAY on the client's socket (foundation.mqtt.new_client): a PUBACK held back by Nagle's algorithm meets
    the broker's delayed ACK and a notice's round trip takes 40 ms (wanli bench dispatch shows the broker's side)."""
    import socket

    publisher = NoticePublisher(broker.host, broker.port, client_id="nodelay-probe")
    try:
        publisher.connect()
        sock = publisher._client.socket()  # noqa: SLF001 - the socket paho opened for it
        assert sock is not None and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        publisher.close()
