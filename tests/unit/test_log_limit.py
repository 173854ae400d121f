"""Rate-limited log lines (foundation/log_limit.py): pure, on a fake clock."""

from foundation.log_limit import LogLimiter

T0 = 1_795_000_000_000


def test_the_first_line_passes_then_one_per_interval_with_the_count_not_logged():
    limiter = LogLimiter(interval_ms=60_000)
    key = ("SD-1", "bad_json")
    assert limiter.allow(key, T0) == 0
    assert [limiter.allow(key, T0 + i) for i in range(1, 1001)] == [None] * 1000
    assert limiter.allow(("SD-2", "bad_json"), T0) == 0  # another device, another key
    assert limiter.allow(("SD-1", "oversized"), T0) == 0  # another reason too
    assert limiter.allow(key, T0 + 60_000) == 1000
    assert limiter.allow(key, T0 + 60_001) is None
    assert limiter.total_suppressed == 1001


def test_flush_gives_the_counts_of_keys_whose_interval_ended_once():
    limiter = LogLimiter(interval_ms=1000)
    limiter.allow("a", T0)
    limiter.allow("a", T0 + 1)
    limiter.allow("a", T0 + 2)
    limiter.allow("b", T0 + 500)  # nothing suppressed: nothing to say
    limiter.allow("c", T0 + 900)
    limiter.allow("c", T0 + 901)
    assert limiter.flush(T0 + 999) == []
    assert limiter.flush(T0 + 1500) == [("a", 2)]
    assert limiter.flush(T0 + 1900) == [("c", 1)]
    assert limiter.flush(T0 + 10_000) == []
    assert limiter.allow("a", T0 + 10_000) == 0  # its window closed with the flush: a fresh first line


def test_keys_are_bounded():
    limiter = LogLimiter(interval_ms=60_000, max_keys=10)
    for i in range(1000):
        assert limiter.allow(i, T0) == 0
    assert len(limiter._windows) == 10


def test_log_limited_writes_the_first_line_then_the_next_after_the_interval_with_the_count(caplog):
    import logging

    from foundation.log_limit import log_held_back, log_limited

    log = logging.getLogger("test.flood")
    limiter = LogLimiter(interval_ms=1000)
    caplog.set_level(logging.WARNING, logger="test.flood")
    written = [log_limited(log, limiter, ("SD-1", "bad_json"), T0 + i, logging.WARNING, "rejected device=%s", "SD-1")
               for i in range(500)]
    assert written.count(True) == 1
    assert log_limited(log, limiter, ("SD-1", "bad_json"), T0 + 1000, logging.WARNING, "rejected device=%s", "SD-1")
    log_limited(log, limiter, ("SD-1", "bad_json"), T0 + 1001, logging.WARNING, "rejected device=%s", "SD-1")
    assert log_held_back(log, limiter, T0 + 5000) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "rejected device=SD-1", "rejected device=SD-1 (and 499 like it not logged)",
        "1 more log lines like the last for ('SD-1', 'bad_json') not logged"]
