"""The MQTT seam's pure parts (foundation/mqtt.py, foundation/background.py Backoff), with no broker."""

from __future__ import annotations

import itertools

import pytest

from foundation.background import Backoff
from foundation.mqtt import Subscriber, TopicFilters, matches, new_client, unshared

EVENT = "safety/v1/wanli/smoke_detector/SD-XQ01-0101/event"


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), [
    ("safety/#", EVENT, True),
    ("safety/+/+/+/+/event", EVENT, True),
    ("safety/+/+/+/+/event", "safety/v1/wanli/smoke_detector/SD-1/telemetry", False),
    ("safety/+/+/+/+/event", "safety/v1/wanli/smoke_detector/SD-1/event/extra", False),
    ("safety/v1/wanli/#", "safety/v1/wanli", True),  # '#' takes the level above it too
    ("safety/v1/+", "safety/v1", False),
    ("dispatch/v1/wanli/fire_station/+/duty", "dispatch/v1/wanli/fire_station/MFS-XQ/duty", True),
    ("#", "$SYS/broker/uptime", False),  # a wildcard first level never takes a $ topic
    ("+/broker/uptime", "$SYS/broker/uptime", False),
    ("$SYS/#", "$SYS/broker/uptime", True),
    ("$share/ingest/safety/#", EVENT, True),  # a shared subscription matches with its own filter
    ("$share/ingest/dispatch/#", EVENT, False),
    ("safety/v1/wanli/smoke_detector/SD-XQ01-0101/event", EVENT, True),
    ("Safety/#", EVENT, False),  # topics are case-sensitive
])
def test_a_topic_filter_matches_as_the_broker_does(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected
    assert TopicFilters([topic_filter]).match(topic) is expected


def test_several_filters_match_at_once_and_a_malformed_shared_filter_is_refused() -> None:
    lanes = TopicFilters(["safety/+/+/+/+/event", "$share/g/safety/v1/+/elderly_alarm/#"])
    assert lanes.match(EVENT) and lanes.match("safety/v1/wanli/elderly_alarm/EA-1/telemetry")
    assert not lanes.match("safety/v1/wanli/smoke_detector/SD-1/telemetry")
    assert unshared("$share/g/safety/#") == "safety/#" and unshared("safety/#") == "safety/#"
    for bad in ("$share/g", "$share//safety/#", "$share/g/"):
        with pytest.raises(ValueError, match="shared subscription"):
            matches(bad, EVENT)


def test_a_client_is_made_one_way_with_its_login() -> None:
    client = new_client("wanli-test", username="SD-1", password="secret", clean_session=False, manual_ack=True)
    assert client._client_id == b"wanli-test" and client._username == b"SD-1"  # noqa: SLF001 - no public getter
    assert client._clean_session is False and client._manual_ack is True  # noqa: SLF001


def test_backoff_doubles_to_its_cap_each_wait_jittered_and_starts_again_after_a_success() -> None:
    lowest = Backoff(1.0, 30.0, jitter=0.2, rng=lambda: 0.0)
    assert [round(lowest.next_s(), 6) for _ in range(7)] == [0.8, 1.6, 3.2, 6.4, 12.8, 24.0, 24.0]
    highest = Backoff(1.0, 30.0, jitter=0.2, rng=lambda: 0.999999)
    assert all(wait <= 36.0 for wait in (highest.next_s() for _ in range(10)))
    even = Backoff(0.5, 5.0, jitter=0.0)
    assert list(itertools.islice(iter(even.next_s, None), 5)) == [0.5, 1.0, 2.0, 4.0, 5.0]
    even.reset()
    assert even.next_s() == 0.5
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


def test_backoff_spreads_clients_that_lost_the_same_server() -> None:
    import random

    rngs = [random.Random(seed).random for seed in range(20)]
    first_waits = {round(Backoff(1.0, 30.0, rng=rng).next_s(), 3) for rng in rngs}
    assert len(first_waits) > 10 and all(0.8 <= w <= 1.2 for w in first_waits)


def test_a_subscriber_that_reaches_no_broker_says_so_at_once() -> None:
    from tests.fixtures.servers import free_port

    with pytest.raises(OSError):
        Subscriber("127.0.0.1", free_port(), "dispatch/#", lambda _m: None, client_id="nobody-home")
