"""The login throttle as a state machine over a fake clock: delays that grow, never a lockout, bounded memory."""

from __future__ import annotations

from dashboards.login_throttle import LoginThrottle, Scope

ATTACKER, DESK = "203.0.113.9", "10.0.0.5"


def throttle(**overrides: int) -> LoginThrottle:
    values = {"free_failures_per_source": 10, "free_failures_per_account": 5, "base_delay_ms": 1_000,
              "max_delay_ms": 60_000, "forget_after_ms": 900_000, "max_sources": 1_000}
    values.update(overrides)
    return LoginThrottle(**values)


def fail(t: LoginThrottle, n: int, username: str, source: str, now: int, *, exists: bool = True) -> int:
    """n wrong passwords, each as soon as the throttle allows; returns the clock after them."""
    for _ in range(n):
        verdict = t.check(username, source, now)
        now += verdict.wait_ms
        t.failed(username, source, now, account_exists=exists)
    return now


def test_the_first_failures_are_free_then_the_source_waits_longer_each_time() -> None:
    t = throttle()
    now = fail(t, 10, "other-names", ATTACKER, 0, exists=False)
    assert t.check("duty", ATTACKER, now).allowed
    t.failed("x", ATTACKER, now, account_exists=False)
    waits = []
    for _ in range(8):
        verdict = t.check("x", ATTACKER, now)
        assert verdict.scope in (Scope.SOURCE, None)
        waits.append(verdict.wait_ms)
        now += verdict.wait_ms
        t.failed("x", ATTACKER, now, account_exists=False)
    assert waits == [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]  # doubling, capped: no lockout


def test_guessing_one_account_slows_the_guesser_and_never_the_right_password_from_elsewhere() -> None:
    t = throttle()
    now = fail(t, 7, "duty", ATTACKER, 0)
    verdict = t.check("duty", ATTACKER, now)
    assert not verdict.allowed and verdict.scope is Scope.ACCOUNT and verdict.wait_ms == 2_000  # 6th: 1 s, 7th: 2 s
    assert t.check("duty", DESK, now).allowed  # the duty operator at their own desk: at once


def test_many_sources_guessing_one_account_each_wait_after_their_first_failure() -> None:
    t = throttle()
    now = 0
    for i in range(20):  # a botnet: one guess per address
        now = fail(t, 1, "duty", f"198.51.100.{i}", now)
    assert not t.check("duty", "198.51.100.3", now).allowed  # a source that failed waits for the account
    assert t.check("duty", DESK, now).allowed


def test_a_delay_passes_and_old_failures_are_forgotten() -> None:
    t = throttle()
    now = fail(t, 12, "x", ATTACKER, 0, exists=False)
    wait = t.check("x", ATTACKER, now).wait_ms
    assert wait > 0 and t.check("x", ATTACKER, now + wait).allowed
    later = now + 900_000
    assert t.check("x", ATTACKER, later).allowed
    t.failed("x", ATTACKER, later, account_exists=False)
    assert t.check("x", ATTACKER, later).allowed  # counting from one again


def test_the_right_password_clears_its_source_but_not_the_account_others_are_guessing() -> None:
    t = throttle()
    now = fail(t, 8, "duty", ATTACKER, 0)
    t.failed("duty", DESK, now, account_exists=True)  # a typo at the desk, the account's 9th failure
    assert t.check("duty", DESK, now).wait_ms == 8_000  # a source that failed waits like any other (capped)
    now += 8_000
    t.succeeded("duty", DESK)
    assert t.check("duty", DESK, now).allowed
    t.failed("duty", ATTACKER, now, account_exists=True)  # the guessing goes on: the 10th, not a fresh start
    assert t.check("duty", ATTACKER, now).wait_ms == 16_000
    assert t.check("duty", DESK, now).allowed


def test_failures_report_the_delays_they_start_for_the_audit() -> None:
    t = throttle(free_failures_per_account=2)
    assert t.failed("duty", ATTACKER, 0, account_exists=True) == []
    assert t.failed("duty", ATTACKER, 10, account_exists=True) == []
    (started,) = t.failed("duty", ATTACKER, 20, account_exists=True)
    assert (started.scope, started.key, started.failures, started.delay_ms) == (Scope.ACCOUNT, "duty", 3, 1_000)


def test_memory_stays_bounded_and_names_that_do_not_exist_cannot_push_out_a_real_account() -> None:
    t = throttle(max_sources=1_000)
    now = fail(t, 7, "duty", ATTACKER, 0)
    for i in range(20_000):  # guesses at names that do not exist, from ever new addresses
        t.failed(f"name-{i}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", now + i, account_exists=False)
    assert len(t) <= 1_000 + 1
    # The attacker's own source, not waiting, may have been shed; the account's count was kept:
    t.failed("duty", ATTACKER, now + 20_000, account_exists=True)  # its 8th failure
    verdict = t.check("duty", ATTACKER, now + 20_000)
    assert verdict.scope is Scope.ACCOUNT and verdict.wait_ms == 4_000


def test_a_source_still_waiting_is_not_shed_while_others_may_go() -> None:
    t = throttle(max_sources=100, free_failures_per_source=1)
    now = fail(t, 5, "x", ATTACKER, 0, exists=False)
    assert not t.check("x", ATTACKER, now).allowed
    for i in range(500):
        t.failed("y", f"192.0.2.{i % 250}-{i}", now, account_exists=False)
    assert not t.check("x", ATTACKER, now).allowed
