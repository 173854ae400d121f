"""The escalation policy versions in the database: every version kept, who stored it, when, what it changed.

A version is never edited: applying a draft stores the next version (``add``), whose row is
the audit record (actor, time, the version it replaced, the changes it made, the comment).
The newest version is the one in force. An empty table is seeded from the policy file
(``WANLI_POLICY_FILE``, by default the shipped ``alerts/policies.json``) as version 1.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, Engine, Integer, String, Table, Text, func, insert, select
from sqlalchemy.exc import IntegrityError

from alerts.policies import (
    PolicySet,
    canonical_json,
    default_document_text,
    describe_changes,
    parse_policy_document,
)
from foundation.change_bus import POLICIES, ChangeBus, LocalChangeBus
from foundation.db import METADATA
from foundation.errors import Conflict, Invalid, NotFound

log = logging.getLogger(__name__)

policy_versions_table = Table(
    "policy_versions", METADATA,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("previous_version", Integer, nullable=True),
    Column("digest", String(16), nullable=False),
    Column("comment", String(400), nullable=False),
    Column("changes", Text, nullable=False),  # JSON list of lines (alerts.policies.describe_changes)
    Column("document", Text, nullable=False),
)


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    version: int
    created_ms: int
    actor: str
    previous_version: int | None
    digest: str
    comment: str
    changes: list[str]
    document: dict[str, Any]


class PolicyStore:
    def __init__(self, engine: Engine, bus: ChangeBus | None = None) -> None:
        self.bus: ChangeBus = bus if bus is not None else LocalChangeBus()
        self._engine = engine

    def current(self) -> PolicyVersion | None:
        t = policy_versions_table
        with self._engine.connect() as conn:
            row = conn.execute(select(t).order_by(t.c.version.desc()).limit(1)).mappings().first()
        return _version(row) if row else None

    def get(self, version: int) -> PolicyVersion:
        t = policy_versions_table
        with self._engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.version == version)).mappings().first()
        if row is None:
            raise NotFound("policy version", str(version))
        return _version(row)

    def history(self, limit: int = 50) -> list[PolicyVersion]:
        t = policy_versions_table
        with self._engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.version.desc()).limit(limit)).mappings().all()
        return [_version(r) for r in rows]

    def add(self, policies: PolicySet, *, actor: str, comment: str, changes: list[str], now_ms: int,
            expected_previous: int | None) -> PolicyVersion:
        """Store the next version. ``expected_previous``: the version the editor started from; another version
        stored meanwhile (a second administrator) is a Conflict, so nobody overwrites a change unseen."""
        t = policy_versions_table
        try:
            with self._engine.begin() as conn:
                latest = conn.execute(select(func.max(t.c.version))).scalar()
                if latest != expected_previous:
                    raise Conflict(f"升级策略已是第 {latest} 版，不是你编辑时的第 {expected_previous} 版，请重新载入"
                                   f"（policy version {latest} is current, not {expected_previous}: reload）")
                version = (latest or 0) + 1
                conn.execute(insert(t).values(
                    version=version, created_ms=now_ms, actor=actor[:200], previous_version=latest,
                    digest=policies.digest, comment=comment[:400],
                    changes=json.dumps(changes, ensure_ascii=False), document=canonical_json(policies.document)))
                self.bus.announce(conn, POLICIES, [str(version)])  # the other instances follow it (PolicyDesk.follow)
        except IntegrityError:  # two stored the same version number at once
            raise Conflict("另一位管理员同时保存了升级策略，请重新载入（another version was stored at the same time）") from None
        log.info("policy version=%s stored actor=%s previous=%s changes=%d", version, actor, latest, len(changes))
        return self.get(version)


def _version(r: Mapping[str, Any]) -> PolicyVersion:
    return PolicyVersion(int(r["version"]), int(r["created_ms"]), str(r["actor"]),
                         None if r["previous_version"] is None else int(r["previous_version"]), str(r["digest"]),
                         str(r["comment"]), json.loads(r["changes"]), json.loads(r["document"]))


def load_in_force(store: PolicyStore, *, seed_file: Path | None, now_ms: int,
                  known_roles: set[str] | None = None,
                  threshold_defaults: Mapping[str, Mapping[str, float]] | None = None) -> PolicySet:
    """The version in force; an empty table is first seeded from ``seed_file`` (default: the shipped file).

    A seed file that does not validate refuses the start (``Invalid``, naming what is wrong): the operator
    chose it. A stored version that no longer validates (a role the hierarchy dropped) is still followed,
    checked leniently, with an error in the log: alarms must keep reaching people."""
    stored = store.current()
    if stored is None:
        try:
            text = seed_file.read_text("utf-8") if seed_file else default_document_text()
        except OSError as exc:
            raise Invalid(f"cannot read the policy file {seed_file}: {exc}") from exc
        seeded = parse_policy_document(text, known_roles=known_roles, threshold_defaults=threshold_defaults)
        where = str(seed_file) if seed_file else "alerts/policies.json"
        try:
            stored = store.add(seeded, actor=f"system ({where})", comment="初始版本（seeded from the policy file）",
                               changes=[], now_ms=now_ms, expected_previous=None)
        except Conflict:  # another process seeded it first
            stored = store.current()
            assert stored is not None
    try:
        policies = parse_policy_document(stored.document, known_roles=known_roles,
                                         threshold_defaults=threshold_defaults)
    except Invalid as exc:
        log.error("policy version=%s does not validate any more, followed as stored: %s", stored.version, exc)
        policies = parse_policy_document(stored.document, known_roles=_roles_in(stored.document))
    return policies.with_version(stored.version)


def _roles_in(document: Mapping[str, Any]) -> set[str]:
    return {r for p in document.get("policies", {}).values() for s in p.get("steps", []) for r in s.get("roles", [])}


__all__ = ["PolicyStore", "PolicyVersion", "describe_changes", "load_in_force", "policy_versions_table"]
