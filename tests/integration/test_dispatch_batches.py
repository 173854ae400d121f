"""The dispatcher sends notices a batch at a time (alerts/dispatch.py, ``Outbox.claim``): each still once.

Real Mosquitto (a subscriber on the dispatch topics counts every copy of every notice) and real
databases. A dispatcher frozen mid-batch keeps its batch from the other instance's; a connection cut
in the middle of a batch (tests/support/mqtt_relay.py, between the dispatcher and the broker) leaves
what the broker did not acknowledge pending, and every notice reaches the subscriber once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from alerts.dispatch import Dispatcher, NoticePublisher, notice_id_of
from alerts.escalation import Notice
from alerts.outbox import CHANNEL_MQTT, CHANNEL_WEBHOOK, Outbox, notifications_table
from foundation.db import create_schema, make_engine
from foundation.mqtt import Subscriber
from tests.support.mqtt_relay import CuttingRelay
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mosquitto

TOPIC = "dispatch/v1/wanli/building/xq-01/building_leader"
WITNESS = "dispatch/v1/wanli/#"


class Ear:
    """Every copy of every notice on the dispatch topics, by notice id."""

    def __init__(self, broker, name: str) -> None:
        self.copies: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._sub = Subscriber(broker.host, broker.port, "dispatch/v1/wanli/building/#", self._heard,
                               client_id=f"ear-{name}")
        assert self._sub.wait(10)

    def _heard(self, message) -> None:
        notice = notice_id_of(message.payload)
        if notice is not None:
            with self._lock:
                self.copies[notice] += 1

    def counts(self) -> Counter[int]:
        with self._lock:
            return Counter(self.copies)

    def heard(self, notices: int) -> list[int]:
        """The notices heard, once that many are (sorted)."""
        return sorted(wait_for(lambda: c if len(c := self.counts()) >= notices else None))

    def close(self) -> None:
        self._sub.close()


def fill(outbox: Outbox, engine, count: int) -> list[int]:
    with engine.begin() as conn:
        outbox.add([Notice(f"inc_{n}", 0, "building", "xq-01", "building_leader", "楼长 张", "", TOPIC,
                           f'{{"v":1,"incident_id":"inc_{n}","title":"烟雾报警"}}') for n in range(count)], 1, conn)
    return [r.id for r in outbox.pending()]


def rows(engine) -> dict[int, tuple]:
    t = notifications_table
    with engine.connect() as conn:
        return {r.id: (r.sent_ms, r.attempts, r.last_error)
                for r in conn.execute(select(t.c.id, t.c.sent_ms, t.c.attempts, t.c.last_error))}


class FrozenPublisher(NoticePublisher):
    """A dispatcher's connection that freezes (a paused VM) once it holds a batch, until told to go on."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.holding = threading.Event()
        self.resume = threading.Event()

    def publish_notices(self, notices):
        self.holding.set()
        assert self.resume.wait(30)
        return super().publish_notices(notices)


@pytest.mark.postgres
def test_a_batch_held_by_a_frozen_dispatcher_is_not_sent_by_the_other_and_each_notice_goes_once(
        mosquitto, postgres_url):
    engine = make_engine(postgres_url)
    create_schema(engine)
    outbox = Outbox(engine)
    ids = fill(outbox, engine, 12)
    ear = Ear(mosquitto, "frozen")
    frozen_publisher = FrozenPublisher(mosquitto.host, mosquitto.port, client_id="frozen-dispatch")
    frozen = Dispatcher(outbox, frozen_publisher, batch=5)
    other = Dispatcher(outbox, NoticePublisher(mosquitto.host, mosquitto.port, client_id="other-dispatch"))
    try:
        round_of_the_frozen = threading.Thread(target=frozen.send_pending)
        round_of_the_frozen.start()
        assert frozen_publisher.holding.wait(10)  # it holds the five oldest, locked, and is frozen

        assert other.send_pending() == 7  # the seven it does not hold, not one of the five
        time.sleep(0.3)
        assert ear.heard(7) == ids[5:]
        assert sorted(r.id for r in outbox.pending()) == ids[:5]

        frozen_publisher.resume.set()  # it wakes, sends its batch and marks it
        round_of_the_frozen.join(10)
        assert frozen.sent == 5 and outbox.pending() == []
        assert other.send_pending() == 0
        time.sleep(0.5)
        assert ear.counts() == Counter({i: 1 for i in ids})  # every notice once on the topic
    finally:
        frozen_publisher.resume.set()
        frozen.stop()
        other.stop()
        ear.close()
        engine.dispose()


def test_a_connection_cut_mid_batch_leaves_the_unacknowledged_pending_and_each_goes_once(tmp_path, mosquitto):
    """One instance (SQLite, no read-back): 7 of a batch of 20 confirmed, then the connection is cut. The 13 the
    broker never got stay pending with their error; the next round sends them, and paho does not send them a
    second time on reconnecting."""
    engine = make_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    create_schema(engine)
    outbox = Outbox(engine)
    ids = fill(outbox, engine, 20)
    ear = Ear(mosquitto, "cut")
    relay = CuttingRelay(mosquitto.host, mosquitto.port)
    dispatcher = Dispatcher(outbox, NoticePublisher(relay.host, relay.port, client_id="cut-dispatch", timeout_s=10),
                            batch=20)
    try:
        relay.cut_after(7, clean=True)
        assert dispatcher.send_pending() == 7
        assert relay.cut.is_set() and dispatcher.failures == 13
        state = rows(engine)
        assert [i for i in ids if state[i][0] is not None] == ids[:7]  # the seven confirmed, marked in one commit
        assert all(state[i][1] == 1 and "connection" in state[i][2] for i in ids[7:]), state  # each with its error
        assert ear.heard(7) == ids[:7]

        assert dispatcher.send_pending() == 13  # connected again: the rest, once
        assert outbox.pending() == []
        time.sleep(1.0)  # anything paho might send again on its own would have arrived by now
        assert ear.counts() == Counter({i: 1 for i in ids})
    finally:
        dispatcher.stop()
        relay.close()
        ear.close()
        engine.dispose()


@pytest.mark.postgres
def test_a_notice_whose_acknowledgement_was_lost_with_the_connection_is_read_back_and_not_sent_again(
        mosquitto, postgres_url):
    """Several instances (PostgreSQL, the witness): the broker took the 5th notice of a batch and delivered it, but
    its PUBACK (and the witness's copy) went down with the connection. The batch records it unsent; the read-back
    after reconnecting finds it in the session and marks it, and the next round sends only the 15 the broker
    never got: each notice once on the topic."""
    engine = make_engine(postgres_url)
    create_schema(engine)
    outbox = Outbox(engine)
    ids = fill(outbox, engine, 20)
    ear = Ear(mosquitto, "lost-ack")
    relay = CuttingRelay(mosquitto.host, mosquitto.port)
    publisher = NoticePublisher(relay.host, relay.port, client_id="wanli-lost-ack-dispatch", timeout_s=10,
                                witness_filter=WITNESS, on_witnessed=lambda ids_: outbox.mark_witnessed(ids_, 2))
    dispatcher = Dispatcher(outbox, publisher, batch=20)
    try:
        publisher.connect()  # the session exists and reads the dispatch topics
        relay.cut_after(5, clean=False)
        confirmed = dispatcher.send_pending()
        assert relay.cut.is_set() and confirmed <= 4 and dispatcher.failures == 20 - confirmed
        assert wait_for(lambda: ear.counts()[ids[4]] == 1)  # the 5th reached the subscriber; its sender was not told
        assert rows(engine)[ids[4]][:2] == (None, 1)

        sent = 0
        deadline = time.monotonic() + 20
        while outbox.pending() and time.monotonic() < deadline:
            try:
                sent += dispatcher.send_pending()
            except ConnectionError:
                time.sleep(0.2)
        assert outbox.pending() == []
        assert sent == 15  # not the 5th: the witness marked it
        assert rows(engine)[ids[4]][0] == 2  # marked by the witness (its clock), not by a send
        time.sleep(1.0)
        assert ear.counts() == Counter({i: 1 for i in ids})
    finally:
        dispatcher.stop()
        relay.close()
        ear.close()
        engine.dispose()


def test_the_claim_skips_what_it_is_told_to_and_takes_the_oldest_first(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    create_schema(engine)
    outbox = Outbox(engine)
    ids = fill(outbox, engine, 6)
    with outbox.claim(CHANNEL_MQTT, 3, skip={ids[1]}) as claim:
        assert [r.id for r in claim.rows] == [ids[0], ids[2], ids[3]]
        claim.sent([ids[0], ids[3]], 9)
        claim.failed([ids[2]], "ConnectionError: away")
    state = rows(engine)
    assert [state[i] for i in ids[:4]] == [(9, 0, ""), (None, 0, ""), (None, 1, "ConnectionError: away"), (9, 0, "")]
    engine.dispose()


class Webhook(BaseHTTPRequestHandler):
    """The city platform's webhook: 400 for one notice (a payload it refuses), 200 for the rest."""

    got: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server name
        body = self.rfile.read(int(self.headers["content-length"]))
        Webhook.got.append(body)
        self.send_response(400 if b"inc_bad" in body else 200)
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


def test_a_webhook_notice_it_refuses_holds_up_none_of_the_others_and_a_dead_webhook_is_tried_three_times_a_round(
        tmp_path, mosquitto):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/notices"
    engine = make_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    create_schema(engine)
    outbox = Outbox(engine, webhook=True)
    with engine.begin() as conn:
        outbox.add([Notice(incident, 0, "building", "xq-01", "building_leader", "楼长 张", "", TOPIC,
                           f'{{"v":1,"incident_id":"{incident}"}}') for incident in ("inc_bad", "inc_1", "inc_2")],
                   1, conn)
    dispatcher = Dispatcher(outbox, NoticePublisher(mosquitto.host, mosquitto.port, client_id="webhook-dispatch"), url)
    try:
        Webhook.got = []
        assert dispatcher.send_pending() == 5  # three on MQTT, two on the webhook; the refused one does not stop them
        [stuck] = outbox.pending()
        assert stuck.channel == CHANNEL_WEBHOOK and stuck.incident_id == "inc_bad"
        assert len(Webhook.got) == 3

        with engine.begin() as conn:
            outbox.add([Notice(f"inc_later_{n}", 0, "building", "xq-01", "building_leader", "楼长 张", "", TOPIC,
                               '{"v":1}') for n in range(5)], 2, conn)
        server.shutdown()
        server.server_close()  # the webhook is away: each try refused
        assert dispatcher.send_pending() == 5  # the MQTT ones
        state = rows(engine)
        assert sum(attempts for _sent, attempts, _error in state.values()) == 1 + Dispatcher.WEBHOOK_TRIES
    finally:
        dispatcher.stop()
        engine.dispose()


@pytest.mark.postgres
def test_a_notice_the_read_back_holds_undecided_is_not_claimed_when_the_dead_ones_lock_falls(
        mosquitto, postgres_url):
    """The dead dispatcher's last notice reached the broker; its transaction still holds the row (PostgreSQL has not
    cut its session yet). The next holder's read-back sees the notice and cannot mark it; when the lock falls, the
    next round must not take it ahead of the read-back (it would go twice): the read-back marks it. (Without
    ``NoticePublisher.undecided`` the round took it in 2 of 3 runs; the read-back's next try, 0.1 s on, won the
    third.)"""
    from tests.support.mqtt import connected

    from alerts.dispatch import with_notice_id

    engine = make_engine(postgres_url)
    create_schema(engine)
    outbox = Outbox(engine)
    first, second = fill(outbox, engine, 2)
    ear = Ear(mosquitto, "undecided")

    def publisher() -> NoticePublisher:  # each instance's: the same client id, the same persistent session
        return NoticePublisher(mosquitto.host, mosquitto.port, client_id="wanli-u-dispatch", witness_filter=WITNESS,
                               on_witnessed=lambda ids_: outbox.mark_witnessed(ids_, 2))

    dead = publisher()
    dead.publish_notice(TOPIC + "/_warmup", "{}")  # the session exists and reads the dispatch topics
    dead.close()
    dead_session = engine.connect()  # the dead one's transaction, holding its notice
    held = dead_session.begin()
    dead_session.execute(select(notifications_table.c.id).where(notifications_table.c.id == first).with_for_update())
    [row] = [r for r in outbox.pending() if r.id == first]
    with connected(mosquitto, "the-dead-ones-last-packet") as raw:
        raw.publish(TOPIC, with_notice_id(row.payload, row.id).encode())

    successor = Dispatcher(outbox, publisher())
    try:
        assert successor.send_pending() == 1  # the second only: the first is locked
        assert first in successor.publisher.undecided()
        held.rollback()  # PostgreSQL cuts the dead one's session: the lock falls
        assert successor.send_pending() == 0  # not taken ahead of the read-back
        wait_for(lambda: outbox.pending() == [])  # the read-back marks it
        assert rows(engine)[first][0] == 2
        time.sleep(0.5)
        assert ear.counts() == Counter({first: 1, second: 1})
    finally:
        dead_session.close()
        successor.stop()
        ear.close()
        engine.dispose()
