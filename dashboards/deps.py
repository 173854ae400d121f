"""What every route depends on: the application context, built by the runtime (or a test)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine

from alerts.notify.service import Notifier
from alerts.service import AlertService
from alerts.store import IncidentStore
from alerts.system_faults import Fault
from dashboards.live import LiveFeed
from devices.broker_access import BrokerAccess
from devices.registry import DeviceRegistry
from ingest.dead_letters import DeadLetterStore
from ingest.telemetry import TelemetryStore
from foundation.service_clock import ClockMs, wall_ms
from wanli.settings import Settings


@dataclass
class AppContext:
    alerts: AlertService
    incidents: IncidentStore
    registry: DeviceRegistry
    dead_letters: DeadLetterStore
    feed: LiveFeed
    snapshot: Callable[..., dict[str, Any]]  # counters, spool and latency figures (WanliService.snapshot)
    broker_access: BrokerAccess
    ingest_ready: Callable[[], bool] = lambda: True
    clock_ms: ClockMs = field(default=wall_ms)
    telemetry: TelemetryStore | None = None  # read back for the building profile's charts
    settings: Settings | None = None  # the API's access rules (mode, secret key, sessions)
    engine: Engine | None = None  # the database its accounts, sessions and tokens live in
    faults: Callable[[], Sequence[Fault]] = lambda: ()  # the service's own faults now (wanli/system_health.py)
    notifier: Notifier | None = None  # reaching people (alerts/notify): contact points, rules, answers
    # Charts over a range (ingest/retention.py): ``series(device, field, start_ms, end_ms, now_ms, port)``
    # -> (resolution, points), raw for short recent ranges and hourly aggregates beyond. None: not available.
    history: Any = None
    # This instance and the roles it holds now (foundation/leases.py): {"instance": name, "held": [...], "leases": [...]}
    roles: Callable[[], dict[str, Any]] = lambda: {}
    policy_desk: Any = None  # alerts.policy_desk.PolicyDesk: the escalation policies' versions (None: not available)


def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


Ctx = Annotated[AppContext, Depends(get_ctx)]
