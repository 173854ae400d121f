"""The wall's KPI strip and what each row says beyond the incident: who has been told, the tier, the countdown to
the next escalation, and notes; in real Chromium against the whole service."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from simulators.building import BuildingSimulation
from tests.browser.conftest import (
    PERSON_ACTOR,
    SCREEN_TIMEOUT_MS,
    OpsScreen,
    alarm_on_the_wall,
    api_json,
    elderly_alarm,
    send,
    step_button,
)
from tests.fixtures.service import now_ms
from wanli.runtime import WanliService

pytestmark = pytest.mark.browser

ACROSS_THE_ROOM_PX = 36  # the KPI figures: readable from the back of the ops centre


def test_the_kpi_strip_shows_the_street_at_a_glance_and_follows_the_stream(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    detectors = building.smoke_detectors()
    send(service, *(d.heartbeat(now_ms()) for d in detectors[:30]))
    page = ops.page
    expect_online = None
    for _ in range(100):  # ingest folds the heartbeats in a batch or two
        figures = api_json(service, "/api/kpi")["devices"]
        if figures["online"] == 30:
            expect_online = figures
            break
        page.wait_for_timeout(50)
    assert expect_online is not None
    ops.open()
    page.evaluate("() => { window.notReloaded = true; }")

    total = expect_online["total"]
    # numerator and denominator first, the rate beside them
    expect(page.locator("#kpi-online-value")).to_have_text(f"30/{total} {round(100 * 30 / total)}%")
    expect(page.locator("#kpi-online-sub")).to_have_text(f"30 台在线，共 {total} 台")
    expect(page.locator("#kpi-online")).to_have_class(re.compile(r"\bbad\b"))  # under 95 %: the tile says so
    expect(page.locator("#kpi-state-list")).to_have_text("无")
    expect(page.locator("#kpi-overdue-value")).to_have_text("0")
    expect(page.locator("#kpi-ack-value")).to_have_text("—")

    send(service, detectors[0].alarm(now_ms()))  # an incident: the strip follows within a second or two
    expect(page.locator("#kpi-state-list")).to_have_text("待响应 1", timeout=SCREEN_TIMEOUT_MS)
    expect(page.locator("#kpi-tiers")).to_have_text("按层级：居民区 1")
    expect(page.locator("#kpi-states")).to_have_class(re.compile(r"\bbad\b"))
    # no building is named for false alarms it did not have
    expect(page.locator("#kpi-false-value")).to_have_text("0 起误报")
    expect(page.locator("#kpi-false-sub")).to_have_text("近 24 小时 1 起火警，均非误报")

    step_button(ops.rows.first).click()  # 确认, well within the minute
    expect(page.locator("#kpi-ack-value")).to_have_text("1/1 100%", timeout=SCREEN_TIMEOUT_MS)
    expect(page.locator("#kpi-ack-sub")).to_have_text(re.compile(r"^1 起达标，共 1 起，中位 00:0\d$"))
    expect(page.locator("#kpi-state-list")).to_have_text("已确认 1")
    assert page.evaluate("() => window.notReloaded") is True

    for tile in ("#kpi-online-value", "#kpi-ack-value", "#kpi-overdue-value"):
        size = page.locator(tile).evaluate("n => parseFloat(getComputedStyle(n).fontSize)")
        assert size >= ACROSS_THE_ROOM_PX, (tile, size)
    ops.screenshot("wall-kpi.png", full_page=False)


def test_a_row_says_who_was_told_the_tier_and_counts_down_to_the_next_escalation(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    _, row = alarm_on_the_wall(ops, service, building)
    tier = row.locator("td.tier")
    expect(tier.locator(".tier-label")).to_have_text("报至居民区", timeout=SCREEN_TIMEOUT_MS)
    expect(tier.locator(".told")).to_have_text(re.compile(r"^已通知 3 方："), timeout=SCREEN_TIMEOUT_MS)
    for name in ("楼组长 李阿姨", "香泉物业 保安室", "香泉微型消防站"):
        expect(tier.locator(".told")).to_contain_text(name)
    countdown = tier.locator(".countdown")
    expect(countdown).to_have_text(re.compile(r"^00:[45]\d 后升级$"))  # one minute from opening, counting down
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first, timeout=2_500)
    assert countdown.inner_text() < first  # "mm:ss" orders as text
    ops.screenshot("wall-told-countdown.png", full_page=False)

    step_button(row).click()  # acknowledged: the climb stops, and so does the countdown
    expect(countdown).to_have_text("")
    expect(countdown).to_be_hidden()
    expect(tier.locator(".tier-label")).to_have_text("报至居民区")


def test_the_countdown_turns_red_in_its_last_seconds_and_says_when_it_is_due(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    page = ops.page
    page.clock.install()  # the page's clock only: the server escalates in its own time
    ops.open()
    send(service, elderly_alarm(building).press(now_ms()))
    countdown = ops.rows.locator("td.tier .countdown")
    expect(countdown).to_have_text(re.compile(r"后升级$"), timeout=SCREEN_TIMEOUT_MS)
    expect(countdown).not_to_have_class(re.compile(r"\bsoon\b"))
    page.clock.fast_forward("00:50")
    expect(countdown).to_have_class(re.compile(r"\bsoon\b"))
    page.clock.fast_forward("00:15")
    expect(countdown).to_have_text("正在升级…")


def test_a_note_from_the_wall_reaches_the_audit_trail(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    incident_id, row = alarm_on_the_wall(ops, service, building)
    row.locator("button.note").click()
    dialog = ops.page.locator("#note-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#note-what")).to_have_text("烟感报警 · 香泉居民区 香泉 1号楼 1层 0101室")
    ops.page.locator("#note-text").fill("已电话联系楼组长李阿姨，正在上楼查看")
    ops.screenshot("wall-note.png", full_page=False)
    ops.page.locator("#note-save").click()

    expect(dialog).to_be_hidden()
    expect(ops.page.locator("#notice .text")).to_have_text("备注已保存")
    expect(row).to_have_attribute("data-state", "open")  # a note changes nothing but the trail
    trail = service.services.incidents.audit(incident_id)
    assert (trail[-1].action, trail[-1].actor, trail[-1].note) == ("note", PERSON_ACTOR, "已电话联系楼组长李阿姨，正在上楼查看")
