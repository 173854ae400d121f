"""``wanli bench policies``: how long a policy dry-run takes (wanli/policy_replay.py).

Replays each story of the scenario library under the shipped policies, on the stepped clock, and
prints per story the simulated time it covers, the real seconds it took and the escalation steps
it fired; then the page's default dry-run (the default stories under two versions, compared).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from alerts.policies import default_document_text, load_default, parse_policy_document


def main(args: argparse.Namespace) -> int:
    from simulators.scenarios import scenarios
    from wanli.policy_replay import NOT_REPLAYABLE, dry_run, replay_scenario

    policies = load_default()
    print(f"{'story':<24} {'simulated':>10} {'real s':>8} {'steps':>6} {'incidents':>9}")
    for name, scenario in scenarios().items():
        if name in NOT_REPLAYABLE:
            continue
        began = time.monotonic()
        result = replay_scenario(scenario, policies)
        real = time.monotonic() - began
        simulated = _simulated_s(scenario, policies)
        print(f"{name:<24} {simulated / 3600:>9.1f}h {real:>8.2f} {len(result.fired):>6} {result.incidents:>9}"
              + (f"  ({result.error})" if result.error else ""))
    draft = json.loads(default_document_text())
    draft["policies"]["fire"]["steps"][0]["ack_within_s"] = 30
    timings = []
    for _ in range(args.repeat):
        began = time.monotonic()
        report = dry_run(policies, parse_policy_document(draft), {})
        timings.append(time.monotonic() - began)
    print(f"default dry-run (8 stories x 2 versions, fire step 1 60 s -> 30 s): "
          f"best {min(timings):.2f} s, worst {max(timings):.2f} s of {args.repeat}; "
          f"{len(report['differences'])} differences")
    return 0


def _simulated_s(scenario: Any, policies: Any) -> float:
    from wanli.policy_replay import ReplayStage

    stage = ReplayStage(scenario, policies)
    start = stage.now_ms()
    try:
        stage.send(stage.population.start(start))
        scenario.play(stage)
    except Exception:  # noqa: BLE001 - the replay above already said why
        pass
    return (stage.now_ms() - start) / 1000


def add_commands(bench: Any) -> None:
    p = bench.add_parser("policies", help="the policy dry-run: each library story replayed, and the default dry-run")
    p.add_argument("--repeat", type=int, default=3)
    p.set_defaults(func=main)
