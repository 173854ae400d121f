"""Group and dispatch lifecycle from the wall, and the history page, in real Chromium against the whole service.

Closing a suspected fire on the wall closes its member alarms (no member left escalating); marking an alarm
false on the wall sends the dispatched micro fire station a cancel notice on its duty topic (read here from the
embedded broker) and closes the dispatch; the history page finds both, opens the drawer, and exports CSV.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from simulators.building import BuildingSimulation
from tests.browser.conftest import (
    DESK,
    SCREEN_TIMEOUT_MS,
    OpsScreen,
    WatchedPage,
    active_incident_id,
    first_alarm,
    send,
    signed_in_session,
    step_button,
    watched_page,
)
from tests.fixtures.service import now_ms, wait_for
from foundation.mqtt import MQTTMessage, Subscriber
from wanli.runtime import WanliService

pytestmark = pytest.mark.browser


class DutyTopic:
    """What the micro fire stations' duty terminals receive: every message on dispatch/v1/+/fire_station/+/duty."""

    def __init__(self, service: WanliService) -> None:
        assert service.broker is not None
        self.messages: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._subscriber = Subscriber(service.broker.host, service.broker.port, "dispatch/v1/+/fire_station/+/duty",
                                      self._on_message, client_id=f"duty-{now_ms()}")
        assert self._subscriber.wait(5)

    def _on_message(self, msg: MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    def cancels(self) -> list[tuple[str, dict]]:
        with self._lock:
            return [(t, m) for t, m in self.messages if m.get("type") == "dispatch_cancel"]

    def close(self) -> None:
        self._subscriber.close()


def test_closing_a_suspected_fire_on_the_wall_leaves_no_member_escalating(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    ops.open()
    detectors = building.smoke_detectors()[:2]
    for d in detectors:
        send(service, d.alarm(now_ms()))
    members = [active_incident_id(service, d.device_id) for d in detectors]
    fire = wait_for(lambda: next((i.id for i in service.services.alerts.active() if i.scope), None))
    row = ops.row(fire)
    expect(row.locator("button.fold")).to_have_text("含 2 条单点报警 ▾", timeout=SCREEN_TIMEOUT_MS)
    button = step_button(row)
    for label in ("确认", "派单", "到场", "处置完毕", "核查结案"):
        expect(button).to_have_text(label, timeout=SCREEN_TIMEOUT_MS)
        button.click()
    expect(ops.rows).to_have_count(0, timeout=SCREEN_TIMEOUT_MS)  # the members went with it
    for member in members:
        closed = service.services.incidents.get(member)
        assert closed.state.value == "closed" and closed.next_deadline_ms is None
        trail = service.services.incidents.audit(member)
        assert any(a.action == "follow_group" and fire in a.note for a in trail)
    assert [i for i in service.services.alerts.active() if i.condition == "smoke_alarm"] == []


def test_a_false_alarm_on_the_wall_stands_the_station_down_and_history_finds_it(
    chromium: Browser, ops: OpsScreen, service: WanliService, building: BuildingSimulation, artifacts: Path,
) -> None:
    duty = DutyTopic(service)
    try:
        ops.open()
        _, incident_id = first_alarm(service, building)
        wait_for(lambda: any(m.get("incident_id") == incident_id for _, m in duty.messages))  # dispatched
        button = ops.row(incident_id).locator("button.false-alarm")
        button.click()
        button.click()  # 确认误报？
        expect(ops.row(incident_id)).to_have_count(0, timeout=SCREEN_TIMEOUT_MS)
        topic, cancel = wait_for(lambda: next(iter(duty.cancels()), None))
    finally:
        duty.close()
    assert topic.endswith("/fire_station/MFS-XQ/duty")
    assert (cancel["incident_id"], cancel["state"]) == (incident_id, "false_alarm")
    timed = [d for d in service.services.alerts.response_times() if d["incident"] == incident_id]
    assert timed and all(d["cancelled_ms"] is not None for d in timed)  # the dispatch is closed: no late breach

    with watched_page(chromium, WatchedPage, service.http_url, artifacts, {"width": 1920, "height": 1080},
                      signed_in_session(service)) as history:
        page = history.page
        page.goto(service.http_url + "/ops/history.html")
        expect(page.locator(f"#h-{incident_id}")).to_be_visible(timeout=SCREEN_TIMEOUT_MS)
        page.locator("#outcome").select_option("closed")
        page.locator("#search-go").click()
        expect(page.locator(f"#h-{incident_id}")).to_have_count(0)
        page.locator("#outcome").select_option("false_alarm")
        page.locator("#building").select_option("xq-01")
        page.locator("#search-go").click()
        expect(page.locator(f"#h-{incident_id}")).to_contain_text("误报")
        csv_href = page.locator("#csv").get_attribute("href")
        assert csv_href is not None and "outcome=false_alarm" in csv_href and "building_id=xq-01" in csv_href
        body = page.request.get(service.http_url + csv_href).text()
        assert body.startswith("\ufeffid,") and incident_id in body

        page.locator(f"#h-{incident_id}").click()
        expect(page.locator("#drawer")).to_have_attribute("data-loaded", incident_id)
        expect(page.locator("#drawer-timeline")).to_contain_text("撤销派单")
        expect(page.locator("#drawer-timeline")).to_contain_text("微型消防站（撤销派单）")
        history.screenshot("history-1920.png", full_page=False)


def test_history_refuses_a_bad_search_with_a_message(ops: OpsScreen, service: WanliService) -> None:
    page = ops.page
    ops.tolerate(r"422")
    page.goto(service.http_url + "/ops/history.html?since=2026-12-07T10:00:00Z&until=2026-12-06T10:00:00Z")
    expect(page.locator("#summary")).to_contain_text("查询失败", timeout=SCREEN_TIMEOUT_MS)
    expect(page.locator("#summary")).to_contain_text("起始时间须早于结束时间")


def test_the_drawer_hides_phone_numbers_from_a_viewer(
    chromium: Browser, service: WanliService, building: BuildingSimulation, artifacts: Path,
) -> None:
    from tests.fixtures.service import session_for

    _, incident_id = first_alarm(service, building)
    with watched_page(chromium, WatchedPage, service.http_url, artifacts, DESK, session_for(service, "viewer")) as w:
        w.page.goto(service.http_url + "/ops/")
        w.page.locator(f"#inc-{incident_id} td.place").click()
        expect(w.page.locator("#drawer")).to_have_attribute("data-loaded", incident_id)
        expect(w.page.locator("#drawer-contacts td.phone").first).to_have_text("（无权查看电话）")
        expect(w.page.locator("#drawer-contacts a[href^='tel:']")).to_have_count(0)


def test_a_fault_of_the_service_itself_is_in_its_own_section_not_among_the_alarms(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    ops.open()
    _, alarm = first_alarm(service, building)
    # A real fault of the service: its data disk "inside the alarm reserve" (a reserve larger than the disk), which the
    # health check turns into a system incident on its next tick (wanli/system_health.py), and closes once it clears.
    guard = service.services.disk_guard
    reserve = guard.reserve_bytes
    guard.reserve_bytes = 10**18
    try:
        _check_system_section(ops, alarm)
    finally:
        guard.reserve_bytes = reserve


def _check_system_section(ops: OpsScreen, alarm: str) -> None:
    section = ops.page.locator("#system-section")
    expect(section).to_be_visible(timeout=SCREEN_TIMEOUT_MS)
    expect(section.locator("tr")).to_have_count(1)
    expect(section.locator("tr .kind-tag")).to_have_text("系统故障")
    expect(section.locator("tr .title")).to_have_text("数据盘空间已到告警保留区，遥测与死信已停写")
    expect(ops.rows).to_have_count(1)  # the alarms' table holds the alarm only
    expect(ops.row(alarm)).to_be_visible()
    expect(ops.page.locator("#count-active")).to_have_text("1")
    section.locator("tr td.place").click()  # its drawer opens too, though "system" is no device kind
    expect(ops.page.locator("#drawer")).to_have_attribute("data-loaded", re.compile(r"^inc_"))
    expect(ops.page.locator("#drawer-title")).to_have_text("数据盘空间已到告警保留区，遥测与死信已停写")
