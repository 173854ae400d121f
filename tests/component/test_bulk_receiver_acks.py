"""The bulk receiver's acknowledgements (ingest/bulk_receiver.py), byte for byte: a batch's PUBACKs go out together,
only once ingest said it is safe, and only on the connection the batch came on.

The broker's end of the connection is one end of a socket pair read here: what matters is exactly which PUBACK
bytes the receiver writes, and when, which a real broker does not show. The connection's life against a real
Mosquitto is tests/integration/test_receiver.py."""

from __future__ import annotations

import socket
from multiprocessing.connection import Connection

import mqtt5
import msgspec
import pytest

from ingest.bulk_receiver import BulkReceiver, receive_window
from ingest.receiver import BATCH, ReceiverConfig


@pytest.fixture
def wired():
    ingest_end, receiver_end = socket.socketpair()
    broker_end, client_end = socket.socketpair()
    cfg = ReceiverConfig("127.0.0.1", 1, ["safety/#"], "rx", batch_size=3, max_batches_in_flight=4,
                         leave_to_other_lane=("safety/+/+/+/+/event",), implementation="bulk")
    rx = BulkReceiver(Connection(receiver_end.detach()), cfg)
    rx._sock = client_end  # noqa: SLF001 - as _connect leaves it
    rx._connection_no = 1  # noqa: SLF001
    client_end.setblocking(False)
    broker_end.settimeout(0.2)
    ingest = Connection(ingest_end.detach())
    yield rx, ingest, broker_end
    ingest.close()
    broker_end.close()
    client_end.close()


def written(broker_end: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = broker_end.recv(65536)
        except TimeoutError:
            return out
        if not chunk:
            return out
        out += chunk


def pubacks(*ids: int) -> bytes:
    return b"".join(mqtt5.PubAckPacket(i).write() for i in ids)


def handed_over(ingest: Connection) -> list[tuple[int, list]]:
    out = []
    while ingest.poll(0.05):
        frame = ingest.recv_bytes()
        if frame[:1] == BATCH:
            no, _pending, messages = msgspec.msgpack.decode(frame[1:])
            out.append((no, messages))
    return out


def test_a_batch_is_acknowledged_once_safe_its_pubacks_in_one_write_and_the_other_lane_at_once(wired):
    rx, ingest, broker_end = wired
    rx._take([("safety/v1/w/k/d1/telemetry", b"1", 1, 11), ("safety/v1/w/k/d1/event", b"A", 1, 12),  # noqa: SLF001
              ("safety/v1/w/k/d2/telemetry", b"2", 0, None), ("safety/v1/w/k/d3/telemetry", b"3", 1, 13)])
    (no, messages), = handed_over(ingest)  # three of them: a full batch; the event is the alarm lane's
    assert [(m[0], m[3], m[4]) for m in messages] == [
        ("safety/v1/w/k/d1/telemetry", 1, 11), ("safety/v1/w/k/d2/telemetry", 0, 0), ("safety/v1/w/k/d3/telemetry", 1, 13)]
    assert bytes(rx._unsent) == pubacks(12)  # noqa: SLF001 - the alarm lane's copy: acknowledged at once
    assert written(broker_end) == b"", "something was acknowledged before ingest said it was safe"
    rx._acknowledge(no)  # noqa: SLF001 - ingest's A frame
    assert written(broker_end) == pubacks(11, 13)  # QoS 0 needs none
    assert rx._pending == 0 and not rx._in_flight  # noqa: SLF001


def test_a_batch_from_a_connection_that_ended_is_not_acknowledged_on_the_next_one(wired):
    """After a reconnection the broker sends the unacknowledged messages again (DUP, the same ids): the old batch's
    PUBACKs must not go on the new connection, where an id may already name another message; the copies are
    acknowledged once, with their own batch."""
    rx, ingest, broker_end = wired
    rx._take([("a/1", b"1", 1, 5), ("a/2", b"2", 1, 6), ("a/3", b"3", 1, 7)])  # noqa: SLF001
    (old, _), = handed_over(ingest)
    rx._connection_no = 2  # noqa: SLF001 - the connection was lost and made again
    rx._take([("a/1", b"1", 1, 5), ("a/2", b"2", 1, 6), ("a/3", b"3", 1, 7)])  # noqa: SLF001 - the redelivery
    (new, _), = handed_over(ingest)
    rx._acknowledge(old)  # noqa: SLF001 - ingest finishes the old batch after the reconnection
    assert written(broker_end) == b""
    rx._acknowledge(new)  # noqa: SLF001
    assert written(broker_end) == pubacks(5, 6, 7)
    assert rx._pending == 0  # noqa: SLF001 - both batches counted out of the backlog


def test_the_receive_window_is_what_the_receiver_may_hold_within_mqtts_two_bytes():
    cfg = ReceiverConfig("h", 1, ["#"], "c", batch_size=50, max_batches_in_flight=4)
    assert receive_window(cfg) == 200
    assert receive_window(ReceiverConfig("h", 1, ["#"], "c", batch_size=2000, max_batches_in_flight=25)) == 50_000
    assert receive_window(ReceiverConfig("h", 1, ["#"], "c", batch_size=2000, max_batches_in_flight=50)) == 65_535
