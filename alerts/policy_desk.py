"""The administrator's desk for escalation policies: check a draft, dry-run it, apply it, read the history.

A draft is the whole policy document (``alerts/policies.py``). ``check`` validates it against
the street's roles and the rules' thresholds. ``dry_run`` replays stories under the version in
force and under the draft and lists, step by step, what the draft changes (earlier, later,
added, removed, other recipients); the replays are injected (``wanli/policy_replay.py``), so
this desk does no I/O of its own beyond the store. ``apply`` stores the draft as the next
version (the audit record: who, when, which version it replaced, what it changed) and hands it
to the alert engine, which follows it at once for new incidents and for open ones.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from alerts.policies import PolicySet, describe_changes, parse_policy_document
from alerts.policy_store import PolicyStore, PolicyVersion
from alerts.service import AlertService
from devices.hierarchy import ROLE_LABELS, Hierarchy
from foundation.errors import Conflict, Invalid
from foundation.service_clock import ClockMs

log = logging.getLogger(__name__)

# (current, draft, what to replay) -> {"stories": [...], "differences": [...]}: the replays (wanli/policy_replay.py)
DryRun = Callable[[PolicySet, PolicySet, Mapping[str, Any]], dict[str, Any]]


def hierarchy_roles(hierarchy: Hierarchy) -> set[str]:
    """Every role a step may name: those the project knows, and any role the street's hierarchy gives someone."""
    roles = set(ROLE_LABELS)
    for place in (*hierarchy.buildings.values(), *hierarchy.communities.values(), *hierarchy.areas.values()):
        roles |= {r.role for r in place.responders}
    roles |= {r.role for r in (*hierarchy.street_responders, *hierarchy.district_responders)}
    return roles


@dataclass(frozen=True, slots=True)
class Applied:
    version: PolicyVersion
    rebased: int  # open incidents whose running deadline changed


class PolicyDesk:
    def __init__(self, store: PolicyStore, alerts: AlertService, *, known_roles: Set[str] | None = None,
                 threshold_defaults: Mapping[str, Mapping[str, float]] | None = None,
                 clock_ms: ClockMs, dry_run: DryRun | None = None,
                 stories: Sequence[Mapping[str, Any]] = ()) -> None:
        self.store = store
        self._alerts = alerts
        self._roles = set(known_roles) if known_roles is not None else None
        self.threshold_defaults = threshold_defaults
        self._clock_ms = clock_ms
        self._dry_run = dry_run
        self.stories = list(stories)  # what a dry-run can replay: {name, title, default}
        # One dry-run at a time: it is CPU work beside the alarm path (which takes no lock of its), so a second
        # administrator waits for the first rather than both taking the cores from ingest.
        self._replaying = threading.Lock()

    @property
    def in_force(self) -> PolicySet:
        return self._alerts.policies

    def check(self, draft: str | Mapping[str, Any]) -> PolicySet:
        """The draft, validated (``Invalid`` says what is wrong)."""
        return parse_policy_document(draft, known_roles=self._roles, threshold_defaults=self.threshold_defaults)

    def changes(self, draft: PolicySet) -> list[str]:
        return describe_changes(self.in_force, draft)

    def dry_run(self, draft_text: str | Mapping[str, Any], what: Mapping[str, Any]) -> dict[str, Any]:
        draft = self.check(draft_text)
        if self._dry_run is None:
            raise Invalid("dry-run is not available on this service")
        if not self._replaying.acquire(blocking=False):
            raise Conflict("另一次试运行正在进行，请稍候（another dry-run is running）")
        try:
            report = self._dry_run(self.in_force, draft, what)
        finally:
            self._replaying.release()
        return {"current_version": self.in_force.version, "changes": self.changes(draft), **report}

    def apply(self, draft_text: str | Mapping[str, Any], *, actor: str, comment: str,
              based_on: int) -> Applied:
        """Store the draft as the next version and put it in force at once. ``based_on``: the version the editor
        started from (another stored meanwhile: Conflict). A draft identical to the version in force is refused."""
        draft = self.check(draft_text)
        changes = self.changes(draft)
        if not changes:
            raise Invalid("草稿与现行版本相同，无需应用（the draft changes nothing）")
        stored = self.store.add(draft, actor=actor, comment=comment, changes=changes, now_ms=self._clock_ms(),
                                expected_previous=based_on)
        rebased = self._alerts.apply_policies(draft.with_version(stored.version), self._clock_ms())
        log.info("policy version=%s applied actor=%s rebased=%d", stored.version, actor, len(rebased))
        return Applied(stored, len(rebased))

    def follow(self, _changed: object = None) -> None:
        """Another instance applied a version (foundation/change_bus.py): follow it here too. That instance rebased
        the open incidents and wrote them (their changes arrive on their own); here the policies and thresholds
        in force are swapped only."""
        stored = self.store.current()
        if stored is None or stored.version == self.in_force.version:
            return
        try:
            policies = self.check(stored.document)
        except Invalid as exc:  # followed as stored, as at a start (load_in_force)
            log.error("policy version=%s does not validate here, followed as stored: %s", stored.version, exc)
            policies = parse_policy_document(stored.document)
        self._alerts.adopt_policies(policies.with_version(stored.version))
        log.info("policy version=%s applied by another instance, followed", stored.version)

    def history(self, limit: int = 50) -> Sequence[PolicyVersion]:
        return self.store.history(limit)
