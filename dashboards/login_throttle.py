"""Slowing down password guessing without locking anyone out: a pure state machine over a clock passed in.

Two counters of wrong passwords, each forgotten ``forget_after_ms`` after its last failure:

- per **source** (the caller's address): past ``free_failures_per_source`` failures, that source
  waits a growing delay before its next try (doubling from ``base_delay_ms`` up to ``max_delay_ms``);
- per **account**: past ``free_failures_per_account`` failures on one username, a growing delay too,
  but only for sources that have themselves failed: a source with no wrong password to its name
  (the duty operator at their own desk) signs in at once, whatever anyone else is trying.

The delays are capped, so nothing is ever a lockout. Memory is bounded without letting an
attacker push a victim out: account entries are kept only for usernames that exist (there are as
many as the database has accounts), and guesses at names that do not exist count against their
source alone; the source table, when full, drops the source whose last failure is oldest
(never one still being delayed while any other may go).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    SOURCE = "source"
    ACCOUNT = "account"


@dataclass(slots=True)
class _Entry:
    failures: int = 0
    last_failure_ms: int = 0
    next_allowed_ms: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    wait_ms: int  # 0: try now
    scope: Scope | None  # which counter asks to wait

    @property
    def allowed(self) -> bool:
        return self.wait_ms <= 0


@dataclass(frozen=True, slots=True)
class DelayStarted:
    """A failure that made a counter ask for a wait (what the audit trail and the metrics record)."""

    scope: Scope
    key: str
    failures: int
    delay_ms: int


class LoginThrottle:
    def __init__(self, *, free_failures_per_source: int = 10, free_failures_per_account: int = 5,
                 base_delay_ms: int = 1_000, max_delay_ms: int = 60_000, forget_after_ms: int = 900_000,
                 max_sources: int = 100_000) -> None:
        self.free = {Scope.SOURCE: free_failures_per_source, Scope.ACCOUNT: free_failures_per_account}
        self.base_delay_ms, self.max_delay_ms = base_delay_ms, max_delay_ms
        self.forget_after_ms, self.max_sources = forget_after_ms, max_sources
        self._sources: dict[str, _Entry] = {}
        self._accounts: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._sources) + len(self._accounts)

    def check(self, username: str, source: str, now_ms: int) -> Verdict:
        """May this source try a password for this username now?"""
        src = self._live(self._sources, source, now_ms)
        if src is not None and src.next_allowed_ms > now_ms:
            return Verdict(src.next_allowed_ms - now_ms, Scope.SOURCE)
        acc = self._live(self._accounts, username.lower(), now_ms)
        if acc is not None and acc.next_allowed_ms > now_ms and src is not None and src.failures > 0:
            return Verdict(acc.next_allowed_ms - now_ms, Scope.ACCOUNT)
        return Verdict(0, None)

    def failed(self, username: str, source: str, now_ms: int, *, account_exists: bool) -> list[DelayStarted]:
        """A wrong password; returns the delays it started or lengthened."""
        started = []
        if (d := self._count(self._sources, Scope.SOURCE, source, now_ms)) is not None:
            started.append(d)
        if account_exists and (d := self._count(self._accounts, Scope.ACCOUNT, username.lower(), now_ms)) is not None:
            started.append(d)
        if len(self._sources) > self.max_sources:
            self._shed_sources(now_ms)
        return started

    def succeeded(self, username: str, source: str) -> None:
        """The right password: this source starts afresh (the account's count stays: others may be guessing it)."""
        self._sources.pop(source, None)

    def delay_after(self, failures: int, scope: Scope) -> int:
        over = failures - self.free[scope]
        return 0 if over <= 0 else min(self.max_delay_ms, self.base_delay_ms << min(over - 1, 30))

    def _live(self, table: dict[str, _Entry], key: str, now_ms: int) -> _Entry | None:
        entry = table.get(key)
        if entry is not None and now_ms - entry.last_failure_ms >= self.forget_after_ms:
            del table[key]
            return None
        return entry

    def _count(self, table: dict[str, _Entry], scope: Scope, key: str, now_ms: int) -> DelayStarted | None:
        entry = self._live(table, key, now_ms)
        if entry is None:
            entry = table[key] = _Entry()
        entry.failures += 1
        entry.last_failure_ms = now_ms
        delay = self.delay_after(entry.failures, scope)
        if delay <= 0:
            return None
        entry.next_allowed_ms = max(entry.next_allowed_ms, now_ms + delay)
        return DelayStarted(scope, key, entry.failures, delay)

    def _shed_sources(self, now_ms: int) -> None:
        """Forget what is old; if still too many, the sources not waiting now whose last failure is oldest,
        down to nine tenths of the bound (so the sort is paid once per tenth, not once per failure)."""
        for key in [k for k, e in self._sources.items() if now_ms - e.last_failure_ms >= self.forget_after_ms]:
            del self._sources[key]
        excess = len(self._sources) - self.max_sources * 9 // 10
        if excess > 0:
            idle = sorted((e.last_failure_ms, k) for k, e in self._sources.items() if e.next_allowed_ms <= now_ms)
            for _at, key in idle[:excess]:
                del self._sources[key]
