"""The ``wanli bench`` command tree: ``wanli bench ingest`` (``tooling.bench``) and each bench module's commands.

It sits above every bench module, so that one bench composing others (``wanli bench all`` runs
``tooling.bench``'s ingest path) does not make a circle with the module that registers it.
"""

from __future__ import annotations

from typing import Any

from tooling import (bench, bench_access, bench_alerts, bench_all, bench_dispatch, bench_nodered, bench_notify,
                     bench_policies, bench_receive, bench_spool, bench_stages, bench_storage, bench_street, bench_workers)


def add_commands(sub: Any) -> None:
    """``wanli bench ...`` on the CLI's subcommands."""
    bench_parser, commands = bench.add_commands(sub)
    bench_alerts.add_commands(commands)  # wanli bench alerts
    bench_street.add_commands(commands)  # wanli bench street
    bench_spool.add_commands(commands)  # wanli bench spool
    bench_workers.add_commands(commands)  # wanli bench workers
    bench_notify.add_commands(commands)  # wanli bench notify
    bench_storage.add_commands(commands)  # wanli bench storage
    bench_access.add_commands(commands)  # wanli bench access
    bench_policies.add_commands(commands)  # wanli bench policies
    bench_stages.add_commands(commands)  # wanli bench stages
    bench_nodered.add_commands(commands)  # wanli bench nodered
    bench_receive.add_commands(commands)  # wanli bench receive
    bench_dispatch.add_commands(commands)  # wanli bench dispatch
    bench_all.add_commands(bench_parser, commands)  # wanli bench [all]
