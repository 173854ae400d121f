"""Who was told, carried by the live stream: the wall never asks ``/api/incidents/{id}/notifications``; the stream's
``notices`` events and its snapshot bring the rows, each screen's with its own access (household members' names only
for those who may see them); in real Chromium against the whole service."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Request, expect

from dashboards.routes.notifications import HIDDEN
from simulators.building import BuildingSimulation
from tests.browser.conftest import (
    SCREEN_TIMEOUT_MS,
    OpsScreen,
    active_incident_id,
    alarm_on_the_wall,
    api_json,
    elderly_alarm,
    ops_screen,
    send,
)
from tests.fixtures.service import now_ms, session_for
from wanli.runtime import WanliService

pytestmark = pytest.mark.browser


def record_requests(ops: OpsScreen) -> list[str]:
    urls: list[str] = []

    def seen(request: Request) -> None:
        urls.append(request.url)

    ops.page.on("request", seen)
    return urls


def end_every_stream(service: WanliService) -> None:
    """The service ends every open stream (as when a screen falls behind): each screen reconnects for a snapshot."""
    loop = service.services.feed._loop
    assert loop is not None
    loop.call_soon_threadsafe(service.services.feed.close)


def test_the_wall_shows_who_was_told_from_the_stream_and_again_after_a_reconnect(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    page = ops.page
    page.set_viewport_size({"width": 1920, "height": 1080})
    requests = record_requests(ops)
    incident_id, row = alarm_on_the_wall(ops, service, building)
    told = row.locator("td.tier .told")
    expect(told).to_have_text(re.compile(r"^已通知 3 方："), timeout=SCREEN_TIMEOUT_MS)
    for name in ("楼组长 李阿姨", "香泉物业 保安室", "香泉微型消防站"):
        expect(told).to_contain_text(name)
    # queued with the incident, then sent by the dispatcher: the stream says so, nobody asks
    expect(told).not_to_contain_text("发送中", timeout=SCREEN_TIMEOUT_MS)
    rows = api_json(service, f"/api/incidents/{incident_id}/notifications")
    assert rows and all(r["sent_at"] for r in rows if r["attempt_id"] is None)
    assert told.get_attribute("title") == "\n".join(
        f"第{r['step'] + 1}级 {r['tier_zh']} {r['role_zh']}：{r['recipient']}" for r in rows)
    ops.screenshot("wall-told-from-stream.png", full_page=False)

    streams = sum(u.endswith("/api/stream") for u in requests)
    end_every_stream(service)
    for _ in range(200):  # the browser's EventSource asks again (playwright hands its events over while it waits)
        if sum(u.endswith("/api/stream") for u in requests) > streams:
            break
        page.wait_for_timeout(50)
    assert sum(u.endswith("/api/stream") for u in requests) > streams, "the screen did not reconnect"
    expect(ops.link).to_have_class("link up", timeout=10_000)
    expect(told).to_have_text(re.compile(r"^已通知 3 方："))  # the new snapshot's lists (it replaced the old ones)
    assert told.get_attribute("title") == "\n".join(
        f"第{r['step'] + 1}级 {r['tier_zh']} {r['role_zh']}：{r['recipient']}" for r in rows)

    # a second incident while connected: its list arrives by the stream too
    alarm = elderly_alarm(building)
    send(service, alarm.press(now_ms()))
    second = ops.row(active_incident_id(service, alarm.device_id))
    expect(second.locator("td.tier .told")).to_have_text(re.compile(r"^已通知 \d+ 方："), timeout=SCREEN_TIMEOUT_MS)
    ops.screenshot("wall-told-after-reconnect.png", full_page=False)
    assert not [u for u in requests if "/notifications" in u], "the wall asked for what the stream carries"


def test_each_screen_is_told_with_its_own_access_household_names_for_operators_only(
    chromium: Browser, ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    ops.open()
    with ops_screen(chromium, service.http_url, ops.artifacts, session_for(service, "viewer")) as viewer:
        viewer.open()
        alarm = elderly_alarm(building)
        send(service, alarm.press(now_ms()))
        incident_id = active_incident_id(service, alarm.device_id)
        family = {r["recipient"] for r in api_json(service, f"/api/incidents/{incident_id}/notifications")
                  if r["tier"] == "household"}
        assert family, "the elderly alarm's first step tells the family"
        for screen, sees in ((ops, True), (viewer, False)):
            told = screen.row(incident_id).locator("td.tier .told")
            expect(told).to_contain_text("已通知", timeout=SCREEN_TIMEOUT_MS)
            for name in family:
                (expect(told).to_contain_text if sees else expect(told).not_to_contain_text)(name)
            (expect(told).not_to_contain_text if sees else expect(told).to_contain_text)(HIDDEN)
        viewer.screenshot("wall-told-viewer.png", full_page=False)
