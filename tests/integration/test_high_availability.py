"""Two instances are one service: the ingest holder killed or frozen mid-storm (tooling/chaos_host_loss.py).

Real PostgreSQL and Mosquitto, two ``wanli run`` processes with the same MQTT client id and a
data directory each. A probe alarm's escalation deadline falls inside the takeover (its first step due after
15 s here, by a policy file, rather than the street's 60 s, to keep the suite short).
"""

from __future__ import annotations

import pytest

from tooling.chaos_host_loss import TAKEOVER_TARGET_S, HostLossReport, format_host_loss_table, host_loss

pytestmark = [pytest.mark.mosquitto, pytest.mark.postgres]


def check(report: HostLossReport) -> None:
    table = format_host_loss_table([report]) + f"\n{report.details}"
    print(table)
    assert report.takeovers_s and max(report.takeovers_s) <= TAKEOVER_TARGET_S, table
    assert report.published > 100 and report.opened == report.published, table  # every alarm its incident
    assert report.lost == 0 and report.doubled == 0, table
    assert report.notices_sent > 0 and report.notices_doubled == 0 and report.notices_unsent == 0, table
    assert report.registration_seen_s <= 1.0, table  # registered through one, honoured by the other within 1 s
    assert report.escalation_late_s is not None and report.escalation_late_s <= TAKEOVER_TARGET_S, table
    assert report.session_fights_after == 0, table


def test_the_ingest_holder_killed_mid_storm_is_taken_over_with_nothing_lost_or_sent_twice(
        tmp_path, mosquitto, postgres_url):
    check(host_loss(tmp_path, mosquitto, postgres_url, kills=1, rate=20.0, between_s=0, first_step_s=15))


def test_the_ingest_holder_frozen_for_30_s_is_taken_over_and_writes_nothing_when_it_wakes(
        tmp_path, mosquitto, postgres_url):
    check(host_loss(tmp_path, mosquitto, postgres_url, freeze_s=30.0, rate=8.0, between_s=0, first_step_s=15))


def test_a_notice_the_broker_took_from_a_dispatcher_that_died_before_its_commit_is_not_sent_again(
        mosquitto, postgres_url):
    """The witness (alerts/dispatch.py), step by step: the dead dispatcher's last publish reached the broker, its
    commit did not; the next holder's dispatcher reads it back from the shared session, marks it, sends it not."""
    import time
    from collections import Counter

    from tests.support.mqtt import connected

    from alerts.dispatch import Dispatcher, NoticePublisher, with_notice_id
    from alerts.escalation import Notice
    from alerts.outbox import Outbox
    from foundation.db import create_schema, make_engine
    from foundation.mqtt import Subscriber

    engine = make_engine(postgres_url)
    create_schema(engine)
    outbox = Outbox(engine)
    topic = "dispatch/v1/wanli/building/xq-01/building_leader"
    with engine.begin() as conn:
        outbox.add([Notice("inc_w", 0, "building", "xq-01", "building_leader", "楼长 张", "", topic,
                           '{"v":1,"incident_id":"inc_w","title":"烟雾报警"}'),
                    Notice("inc_w2", 0, "building", "xq-01", "building_leader", "楼长 张", "", topic,
                           '{"v":1,"incident_id":"inc_w2","title":"烟雾报警"}')], 1, conn)
    first, second = outbox.pending()
    copies: Counter[bytes] = Counter()
    listener = Subscriber(mosquitto.host, mosquitto.port, "dispatch/v1/wanli/building/#",
                          lambda m: copies.update([m.payload]), client_id="duty-listener")
    assert listener.wait(10)

    def publisher() -> NoticePublisher:  # each instance's: the same client id, the same persistent session
        return NoticePublisher(mosquitto.host, mosquitto.port, client_id="wanli-w-dispatch",
                               witness_filter="dispatch/v1/wanli/#",
                               on_witnessed=lambda ids: outbox.mark_witnessed(ids, 2))

    dead = publisher()
    dead.publish_notice(topic + "/_warmup", "{}")  # connected once: the session exists and reads dispatch/v1/wanli/#
    dead.close()  # ... and the instance dies: what follows is its last publish, taken by the broker
    with connected(mosquitto, "the-dead-ones-last-packet") as raw:
        raw.publish(topic, with_notice_id(first.payload, first.id).encode())
    assert [r.id for r in outbox.pending()] == [first.id, second.id]  # its commit never happened

    successor = Dispatcher(outbox, publisher())
    try:
        assert successor.send_pending() == 1  # the other one only: the first was seen on the broker, marked sent
        assert outbox.pending() == [] and successor.publisher.witnessed >= 1
        time.sleep(0.5)
        ours = {p: n for p, n in copies.items() if b"inc_w" in p}
        assert sorted(ours.values()) == [1, 1], ours  # each notice once on the topic
        assert all(b'"notice_id":' in p for p in ours)
    finally:
        successor.stop()
        listener.close()
        engine.dispose()
