"""Who was told, across instances (wanli/runtime.py ``live_feed``): the dispatcher runs where the dispatch role is
held, the wall may be on the other instance; when the dispatcher's round sent an incident's notices, the other
instance's feed hears of it through PostgreSQL (``wanli_notices``) and its screens read the lists again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from alerts.service import Listener
from dashboards.live import NoticesChanged
from foundation.change_bus import PostgresChangeBus
from foundation.db import create_schema, make_engine
from wanli.runtime import live_feed
from tests.support.waiting import run_in_own_loop


class Alerts:
    """What the feed asks of the alert service: its changes, and its active incidents (after a bus reconnect)."""

    def __init__(self) -> None:
        self.listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def active(self) -> list[Any]:
        return []


class Dispatcher:
    """What the feed asks of the dispatcher: to be told after each round which incidents' notices went."""

    def on_sent(self, incident_ids: set[str]) -> None: ...


@pytest.mark.postgres
def test_notices_sent_by_one_instances_dispatcher_reach_the_other_instances_screens(postgres_url: str) -> None:
    engines = [make_engine(postgres_url) for _ in range(2)]
    create_schema(engines[0])
    buses = [PostgresChangeBus(e, f"host-{i}") for i, e in enumerate(engines)]
    dispatchers = [Dispatcher(), Dispatcher()]
    feeds = [live_feed(Alerts(), d, b, e)  # type: ignore[arg-type]  # the parts of each it uses
             for d, b, e in zip(dispatchers, buses, engines, strict=True)]
    for b in buses:
        b.start()

    async def heard_on_the_other() -> Any:
        feeds[1].bind(asyncio.get_running_loop())
        async with feeds[1].subscription() as q:
            await asyncio.to_thread(dispatchers[0].on_sent, {"inc_a", "inc_b"})  # the dispatcher's round, there
            return await asyncio.wait_for(q.get(), 5)

    try:
        assert all(b.wait_connected(10) for b in buses)
        assert run_in_own_loop(heard_on_the_other) == NoticesChanged(frozenset({"inc_a", "inc_b"}))
    finally:
        for b in buses:
            b.stop()
        for e in engines:
            e.dispose()
