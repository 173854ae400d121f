"""Per-device rate limits (ingest/rate_limit.py): pure, on a fake clock."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.rate_limit import DeviceRateLimits, RateLimitPolicy, TokenBucket

T0 = 1_795_000_000_000
POLICY = RateLimitPolicy(messages_per_s=10, message_burst=20, dead_letters_per_s=1, dead_letter_burst=5,
                         dead_letter_sample_every=10, max_devices=100, idle_ms=60_000)


def test_a_bucket_gives_its_burst_then_refills_at_its_rate():
    b = TokenBucket(3, T0)
    assert [b.take(T0, 2.0, 3) for _ in range(4)] == [True, True, True, False]
    assert not b.take(T0 + 499, 2.0, 3)  # 0.998 of a token
    assert b.take(T0 + 500, 2.0, 3)
    assert [b.take(T0 + 100_000, 2.0, 3) for _ in range(4)] == [True, True, True, False]  # never more than the burst


def test_a_clock_stepping_back_neither_refills_nor_breaks_a_bucket():
    b = TokenBucket(1, T0)
    assert b.take(T0, 1.0, 1)
    assert not b.take(T0 - 10_000, 1.0, 1)
    assert b.take(T0 + 1000, 1.0, 1)


def test_telemetry_past_the_burst_is_refused_and_counted_per_device():
    limits = DeviceRateLimits(POLICY)
    admitted = [limits.admit("SD-1", "telemetry", T0) for _ in range(25)]
    assert admitted.count(True) == 20 and admitted[20:] == [False] * 5
    assert limits.admit("SD-2", "telemetry", T0)  # another device has its own budget
    assert limits.device("SD-1").refused == 5 and limits.total_refused == 5
    assert limits.admit("SD-1", "status", T0 + 100)  # one token back after 100 ms at 10/s
    assert not limits.admit("SD-1", "status", T0 + 100)


def test_an_event_is_never_refused_however_noisy_its_device():
    limits = DeviceRateLimits(POLICY)
    for _ in range(1000):
        limits.admit("SD-1", "telemetry", T0)
        limits.letter("SD-1", "bad_json", T0)
    assert not limits.admit("SD-1", "telemetry", T0)
    assert all(limits.admit("SD-1", "event", T0) for _ in range(10_000))
    assert limits.device("SD-1").events == 10_000 and limits.total_events == 10_000


def test_events_do_not_spend_the_telemetry_budget():
    limits = DeviceRateLimits(POLICY)
    for _ in range(500):
        limits.admit("SD-1", "event", T0)
    assert all(limits.admit("SD-1", "telemetry", T0) for _ in range(20))


def test_dead_letters_past_the_limit_are_counted_per_reason_and_sampled():
    limits = DeviceRateLimits(POLICY)
    stored = [limits.letter("SD-1", "bad_json" if i % 2 else "oversized", T0) for i in range(5 + 1 + 100)]
    assert stored[:5] == [True] * 5  # within the burst: each stored
    assert stored[5] is True  # the first past the limit is kept, so what it sends can be seen
    assert stored[6:].count(True) == 10  # then one in ten
    state = limits.device("SD-1")
    assert state.letters_over == 101 and sum(state.unstored.values()) == 101 - 1 - 10
    assert set(state.unstored) == {"bad_json", "oversized"}
    assert limits.take_unstored() == state.unstored and not limits.take_unstored()  # taken once
    assert limits.total_unstored == state.unstored
    assert limits.letter("SD-1", "bad_json", T0 + 1000)  # a token back after a second at 1/s


def test_noisy_devices_are_those_past_a_limit_lately_the_noisiest_first():
    limits = DeviceRateLimits(POLICY)
    for _ in range(30):
        limits.admit("SD-1", "telemetry", T0)
    for _ in range(50):
        limits.letter("SD-2", "bad_json", T0)
    limits.admit("SD-3", "telemetry", T0)
    assert [n.device_id for n in limits.noisy(T0 + 1000)] == ["SD-2", "SD-1"]
    assert limits.noisy(T0 + 1000)[0].unstored == {"bad_json": 45 - 1 - 4}  # 5 in the burst; of 45 over, the first and 1 in 10 kept
    assert limits.noisy(T0 + 120_000, within_ms=60_000) == []


def test_idle_devices_are_forgotten_and_the_map_never_exceeds_its_bound():
    limits = DeviceRateLimits(POLICY)
    for i in range(50):
        limits.admit(f"D-{i}", "telemetry", T0)
    limits.admit("D-0", "telemetry", T0 + 30_000)  # D-0 stays active
    assert limits.sweep(T0 + 60_000) == 49 and len(limits) == 1 and limits.device("D-0") is not None
    for i in range(1000):
        limits.admit(f"E-{i}", "telemetry", T0 + 70_000)
    assert len(limits) == 100 and limits.forgotten == 49 + 901
    assert limits.device("E-999") is not None and limits.device("E-0") is None


def test_a_forgotten_device_keeps_its_counts_in_the_totals():
    limits = DeviceRateLimits(POLICY)
    for _ in range(100):
        limits.letter("SD-1", "bad_json", T0)
    before = dict(limits.total_unstored)
    limits.sweep(T0 + 60_000)
    assert limits.device("SD-1") is None and limits.total_unstored == before and before["bad_json"] > 0


@pytest.mark.parametrize("bad", [dict(messages_per_s=0), dict(dead_letter_burst=0), dict(dead_letter_sample_every=0),
                                 dict(max_devices=0)])
def test_a_policy_that_cannot_work_is_refused(bad):
    with pytest.raises(ValueError):
        RateLimitPolicy(**bad)


@given(st.lists(st.integers(0, 5_000), min_size=1, max_size=300))
def test_over_any_stretch_a_device_gets_at_most_burst_plus_rate_times_time(steps):
    limits = DeviceRateLimits(POLICY)
    now, admitted = T0, 0
    for step in steps:
        now += step
        admitted += limits.admit("SD-1", "telemetry", now)
    assert admitted <= POLICY.message_burst + (now - T0) * POLICY.messages_per_s / 1000
    assert admitted + limits.device("SD-1").refused == len(steps)


def test_a_forgotten_device_is_no_longer_noisy():
    limits = DeviceRateLimits(POLICY)
    for _ in range(30):
        limits.admit("SD-1", "telemetry", T0)
    assert [n.device_id for n in limits.noisy(T0)] == ["SD-1"]
    limits.sweep(T0 + 60_000)
    assert limits.noisy(T0 + 60_000, within_ms=120_000) == []


def test_an_alarm_or_a_dead_letter_first_does_not_set_the_clock_of_the_devices_telemetry():
    # seen in CI: the alarm lane handled a detector's alarm (stamped 10 s after its buffered heartbeats) before the
    # main lane reached them; the bucket started at the alarm's time, never refilled, and refused the backlog
    for first in ("event", "letter"):
        limits = DeviceRateLimits(POLICY)
        if first == "event":
            assert limits.admit("SD-1", "event", T0 + 10_000)
        else:
            limits.letter("SD-1", "bad_json", T0 + 3_600_000)  # stamped by ingest, an hour past the device's clock
        sent = [T0 + i * 100 for i in range(200)]  # 10/s by the device's clock: exactly its rate
        assert all(limits.admit("SD-1", "telemetry", t, T0 + 3_600_000) for t in sent), first


def test_what_is_charged_inside_undo_on_error_is_taken_back_when_it_raises():
    limits = DeviceRateLimits(POLICY)
    assert all(limits.admit("SD-1", "telemetry", T0) for _ in range(10))
    with pytest.raises(OSError), limits.undo_on_error():
        assert all(limits.admit("SD-1", "telemetry", T0) for _ in range(10))
        assert not limits.admit("SD-1", "telemetry", T0) and limits.admit("SD-2", "telemetry", T0)
        raise OSError("the batch did not commit")
    assert limits.total_refused == 0 and limits.device("SD-2") is None and limits.noisy(T0) == []
    assert [limits.admit("SD-1", "telemetry", T0) for _ in range(11)].count(True) == 10  # 10 tokens left, as before
    with limits.undo_on_error():  # kept when it does not raise
        assert not limits.admit("SD-1", "telemetry", T0)
    assert limits.total_refused == 2
