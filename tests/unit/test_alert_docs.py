"""docs/incidents.md stays true: every rule is there with the defaults of its thresholds, and every escalation policy."""

from pathlib import Path

from alerts.escalation import POLICIES, policy_for
from alerts.incidents import Severity
from alerts.rules import RULE_MODULES

DOC = (Path(__file__).parents[2] / "docs" / "incidents.md").read_text("utf-8")


def test_every_rule_is_documented_with_its_thresholds_and_their_defaults():
    for module in RULE_MODULES:
        for rule in module.RULES:
            (row,) = [line for line in DOC.splitlines() if f"`{rule.__name__}`:" in line]
            for values in rule.THRESHOLDS.values():
                for name, default in values.items():
                    assert f"`{name}` {default:g}" in row, (rule.__name__, name)


def test_every_escalation_policy_has_a_row():
    rows = [line for line in DOC.split("## Escalation", 1)[1].split("## Dispatch", 1)[0].splitlines()
            if line.startswith("| ") and not line.startswith("| policy")]
    named = {"fire-critical": "fire, critical", "fire": "fire, high", "welfare-critical": "welfare, critical",
             "welfare": "welfare, high", "charging": "charging", "hazard": "hazard", "readiness": "readiness",
             "response-breach": "response breach", "maintenance": "maintenance",
             "system-critical": "system, critical", "system": "system, high"}
    policies = {p.name for p in POLICIES.values()} | {policy_for("fire", Severity.HIGH, "dispatch_ack_late:x").name,
                                                       policy_for("maintenance", Severity.WARNING).name}
    assert policies == set(named)
    for name in policies:
        assert any(row.startswith(f"| {named[name]}") for row in rows), name
