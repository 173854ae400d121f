"""The operations screen in real Chromium, against the whole service running in-process.

A device publishes over MQTT; the incident must reach the wall through the event stream,
without a reload, and an operator's clicks must walk it through the closed loop
(确认 → 派单 → 到场 → 处置完毕 → 核查结案) into its record and audit trail. While the link is
down the wall must say so, never show an all-clear.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route, expect

from devices.kinds.gas_detector.simulator import GasDetectorSim
from devices.registry import DeviceRecord
from simulators.building import BuildingSimulation
from tests.browser.conftest import (
    PERSON_ACTOR,
    SCREEN_TIMEOUT_MS,
    WATCH_ROWS,
    OpsScreen,
    act,
    active_incident_id,
    alarm_on_the_wall,
    audit_actions,
    charging_station,
    elderly_alarm,
    first_alarm,
    ops_screen,
    send,
    signed_in_session,
    step_button,
)
from tests.fixtures.servers import free_port
from tests.fixtures.service import now_ms, register_building
from wanli.runtime import WanliService, running_in_thread
from wanli.settings import Settings

pytestmark = pytest.mark.browser

FIRST_UNIT = "香泉居民区 香泉 1号楼 1层 0101室"  # where smoke_detectors()[0] hangs (first_alarm's detector)
OPERATOR = PERSON_ACTOR  # the trail names the account signed in on the page
LATE = re.compile(r"\blate\b")
FRESH = re.compile(r"\bfresh\b")
OFFLINE = re.compile(r"\boffline\b")
RED = "rgb(255, 59, 59)"  # --critical

# Two clicks in one task, so both land before any answer from the server; returns how many
# requests they started.
CLICK_TWICE_COUNTING_REQUESTS = """button => {
  const fetch = window.fetch;
  let sent = 0;
  window.fetch = (...args) => { sent += 1; return fetch(...args); };
  try { button.click(); button.click(); } finally { window.fetch = fetch; }
  return sent;
}"""

# Marks a DOM node with a JavaScript property: it survives updates in place, not a rebuild.
MARK = "node => { node.wanliMark = true; }"
MARKED = "node => node.wanliMark === true"


def test_empty_screen_connects_to_the_live_stream(ops: OpsScreen) -> None:
    ops.open()

    page = ops.page
    expect(ops.link).to_have_text("实时连接")
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#empty")).to_have_text("当前没有未结警情")
    expect(page.locator("body")).not_to_have_class(OFFLINE)
    expect(page.locator("#wall thead")).to_be_hidden()
    expect(ops.rows).to_have_count(0)
    expect(page.locator("#count-active")).to_have_text("0")
    expect(page.locator("#count-critical").locator("..")).to_have_class(re.compile(r"\bzero\b"))
    expect(page.locator("#sound")).to_have_text("开启声音")
    expect(page.locator("#clock")).to_have_text(re.compile(r"^\d{2}:\d{2}:\d{2}$"))
    ops.screenshot("ops-empty.png")


def test_the_page_watch_reports_console_errors_and_page_errors(ops: OpsScreen) -> None:
    ops.open()
    ops.page.evaluate("() => { console.error('wanli-test: logged'); setTimeout(() => { throw new Error('wanli-test: thrown'); }); }")
    for _ in range(100):  # Playwright delivers the page's events while the test waits on it
        if len(ops.problems) >= 2:
            break
        ops.page.wait_for_timeout(50)
    problems = ops.take_problems()
    assert any("console error: wanli-test: logged" in p for p in problems), problems
    assert any("page error" in p and "wanli-test: thrown" in p for p in problems), problems


def test_alarm_after_load_appears_live_and_repeats_update_the_same_row(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation, artifacts: Path,
) -> None:
    ops.open()
    page = ops.page
    page.evaluate("() => { window.notReloaded = true; }")
    page.evaluate(WATCH_ROWS)
    detector = building.smoke_detectors()[0]

    published_ms = now_ms()
    send(service, detector.alarm(published_ms))
    expect(ops.rows).to_be_visible(timeout=SCREEN_TIMEOUT_MS)
    test_saw_ms = now_ms()

    incident_id = active_incident_id(service, detector.device_id)
    row = ops.row(incident_id)
    expect(row).to_be_visible()
    expect(row.locator(".title")).to_have_text("烟感报警")
    expect(row).to_contain_text(FIRST_UNIT)
    expect(row).to_contain_text(f"烟感 {detector.device_id}")
    expect(row.locator("td.state")).to_have_text("待响应")
    expect(row.locator(".badge.high")).to_have_text("高")
    expect(row.locator("td.count")).to_have_text("1")
    expect(page.locator("#empty")).to_be_hidden()
    expect(page.locator("#wall thead")).to_be_visible()
    expect(page.locator("#count-active")).to_have_text("1")
    expect(page.locator("#count-high")).to_have_text("1")
    expect(page.locator("#count-high").locator("..")).not_to_have_class(re.compile(r"\bzero\b"))
    expect(page.locator("#count-critical").locator("..")).to_have_class(re.compile(r"\bzero\b"))
    assert page.evaluate("() => window.notReloaded") is True, "the screen reloaded to show the incident"

    on_screen_ms = page.evaluate(f"() => window.rowSeenAt['inc-{incident_id}']")
    report = (f"publish → row on the ops screen: {on_screen_ms - published_ms} ms (page's clock); "
              f"the test saw it after {test_saw_ms - published_ms} ms")
    print(report)
    (artifacts / "screen-latency.txt").write_text(report + "\n", encoding="utf-8")
    ops.screenshot("ops-incident.png")

    row.evaluate(MARK)
    send(service, detector.alarm(now_ms()))
    expect(row.locator("td.count")).to_have_text("2", timeout=SCREEN_TIMEOUT_MS)
    expect(ops.rows).to_have_count(1)
    expect(page.locator("#count-active")).to_have_text("1")
    assert row.evaluate(MARKED), "the row was rebuilt for a repeat instead of updated in place"


def test_waiting_time_counts_up_every_second(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    ops.open()
    send(service, building.smoke_detectors()[0].alarm(now_ms()))
    waited = ops.rows.locator("td.waited")
    expect(waited).to_have_text(re.compile(r"^00:0\d$"), timeout=SCREEN_TIMEOUT_MS)

    first = waited.inner_text()
    expect(waited).not_to_have_text(first, timeout=2_500)
    assert waited.inner_text() > first  # "mm:ss" orders as text
    expect(waited).not_to_have_class(LATE)


def test_unacknowledged_incident_turns_late_after_one_minute(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    page = ops.page
    page.clock.install()  # fakes the page's Date and timers only; the server keeps real time
    ops.open()
    send(service, building.smoke_detectors()[0].alarm(now_ms()))
    waited = ops.rows.locator("td.waited")
    expect(waited).to_have_text(re.compile(r"^00:0\d$"), timeout=SCREEN_TIMEOUT_MS)
    expect(waited).not_to_have_class(LATE)

    page.clock.fast_forward("01:01")  # past the street's rule: acknowledge within one minute

    expect(waited).to_have_class(LATE)
    expect(waited).to_have_text(re.compile(r"^01:0\d$"))
    expect(waited).to_have_css("color", RED)
    ops.screenshot("ops-late.png")


def test_acknowledge_click_reaches_the_incident_and_its_audit_trail(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    ops.open()
    _, incident_id = first_alarm(service, building)
    expect(ops.rows.locator("td.state")).to_have_text("待响应", timeout=SCREEN_TIMEOUT_MS)
    row = ops.row(incident_id)
    button = step_button(row)
    expect(button).to_have_text("确认")
    expect(button).to_have_attribute("data-action", "acknowledge")
    expect(button).to_be_enabled()

    button.click()

    expect(row.locator("td.state")).to_contain_text("已确认")
    expect(row.locator("td.state")).to_contain_text(OPERATOR)
    expect(row).to_have_attribute("data-state", "acknowledged")
    # The row now offers the next step of the loop, and the wait stopped counting at the response.
    expect(button).to_have_text("派单")
    expect(button).to_have_attribute("data-action", "dispatch")
    expect(button).to_be_enabled()
    waited = row.locator("td.waited")
    expect(waited).to_have_text(re.compile(r"^响应 00:0\d$"))
    frozen = waited.inner_text()
    ops.page.wait_for_timeout(1_500)
    expect(waited).to_have_text(frozen)
    expect(waited).not_to_have_class(LATE)
    ops.screenshot("ops-acknowledged.png")

    assert audit_actions(service, incident_id)[-1] == ("acknowledge", OPERATOR, "open", "acknowledged")
    assert service.services.incidents.get(incident_id).acknowledged_by == OPERATOR


def test_a_quick_second_click_sends_one_action(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    ops.open()
    _, incident_id = first_alarm(service, building)
    button = ops.rows.locator("button[data-action=acknowledge]")
    expect(button).to_be_enabled(timeout=SCREEN_TIMEOUT_MS)

    sent = button.evaluate(CLICK_TWICE_COUNTING_REQUESTS)

    assert sent == 1, f"two quick clicks sent {sent} actions"
    expect(ops.rows.locator("td.state")).to_contain_text("已确认")
    expect(ops.page.locator("#notice")).to_be_hidden()
    assert [a[0] for a in audit_actions(service, incident_id)] == ["open", "notify", "acknowledge"]


def test_the_wall_walks_the_closed_loop_to_closure(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    incident_id, row = alarm_on_the_wall(ops, service, building)
    button = step_button(row)
    steps = [("确认", "acknowledged", "已确认"), ("派单", "dispatched", "已派单"), ("到场", "on_scene", "已到场"),
             ("处置完毕", "resolved", "已处置")]
    for label, state, state_zh in steps:
        expect(button).to_have_text(label, timeout=SCREEN_TIMEOUT_MS)
        button.click()
        expect(row).to_have_attribute("data-state", state)
        expect(row.locator("td.state")).to_contain_text(state_zh)
        if state == "dispatched":
            ops.screenshot("ops-dispatched.png")
    expect(button).to_have_text("核查结案")
    button.click()

    expect(row).to_have_count(0)  # closed: off the wall
    expect(ops.page.locator("#empty")).to_have_text("当前没有未结警情")
    assert audit_actions(service, incident_id) == [
        ("open", "system", None, "open"),
        ("notify", "system", "open", "open"),
        ("acknowledge", OPERATOR, "open", "acknowledged"),
        ("dispatch", OPERATOR, "acknowledged", "dispatched"),
        ("arrive", OPERATOR, "dispatched", "on_scene"),
        ("resolve", OPERATOR, "on_scene", "resolved"),
        ("verify", OPERATOR, "resolved", "closed"),
    ]


def test_false_alarm_asks_once_more_on_the_button(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    ops.page.clock.install()
    incident_id, row = alarm_on_the_wall(ops, service, building)
    button = row.locator("button.false-alarm")
    expect(button).to_have_text("误报")

    button.click()  # only asks
    expect(button).to_have_text("确认误报？")
    expect(button).to_have_class(re.compile(r"\bconfirming\b"))
    ops.page.clock.run_for(3_100)
    expect(button).to_have_text("误报")  # nobody answered: the question went away
    expect(row).to_have_attribute("data-state", "open")

    button.click()
    expect(button).to_have_text("确认误报？")
    button.click()  # Playwright waits until it takes clicks again: a double click is no answer
    expect(row).to_have_count(0)
    assert service.services.incidents.get(incident_id).state.value == "false_alarm"
    # the station dispatched with the alarm is stood down (alerts/service.py)
    assert [a[0] for a in audit_actions(service, incident_id)] == ["open", "notify", "false_alarm", "stand_down"]


def test_a_refused_action_shows_a_fading_notice_not_a_dialog(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    ops.tolerate(r"status of 409 \(Conflict\)")  # the refusal this test arranges
    _, incident_id = first_alarm(service, building)
    detail = f"incident {incident_id}: cannot acknowledge when acknowledged"

    def refuse(route: Route) -> None:
        route.fulfill(status=409, content_type="application/json", body=json.dumps({"detail": detail}))

    page = ops.page
    page.clock.install()
    page.route("**/api/incidents/*/actions", refuse)
    ops.open()
    button = step_button(ops.row(incident_id))
    button.click()

    notice = page.locator("#notice")
    expect(notice).to_be_visible()
    expect(notice.locator(".text")).to_have_text("未能确认：该警情已是“已确认”，可能已由他人处理")
    expect(notice.locator(".raw")).to_have_text(detail)  # the server's words, small
    expect(button).to_be_enabled()  # the operator may try again
    ops.screenshot("ops-refused.png")
    page.clock.run_for(10_000)
    expect(notice).to_be_hidden()


def test_a_click_is_not_lost_when_an_update_lands_between_press_and_release(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    ops.open()
    detector, incident_id = first_alarm(service, building)
    row = ops.row(incident_id)
    button = step_button(row)
    expect(button).to_be_enabled()
    box = button.bounding_box()
    assert box is not None

    page = ops.page
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    send(service, detector.alarm(now_ms()))  # a repeat: the row updates while the button is held
    expect(row.locator("td.count")).to_have_text("2", timeout=SCREEN_TIMEOUT_MS)
    page.mouse.up()

    expect(row).to_have_attribute("data-state", "acknowledged")


def test_critical_incidents_are_listed_above_high_ones_and_only_new_rows_flash(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    ops.open()
    detector = building.smoke_detectors()[0]
    elderly = elderly_alarm(building)
    send(service, detector.alarm(now_ms()))
    expect(ops.rows).to_have_count(1, timeout=SCREEN_TIMEOUT_MS)
    high = ops.rows.nth(0)
    expect(high).to_have_class(FRESH)
    expect(high).not_to_have_class(FRESH, timeout=5_000)  # it flashed, and stopped
    high.evaluate(MARK)

    send(service, elderly.press(now_ms()))

    expect(ops.rows).to_have_count(2, timeout=SCREEN_TIMEOUT_MS)
    critical_row = ops.row(active_incident_id(service, elderly.device_id))
    expect(ops.rows.nth(0)).to_have_id(f"inc-{active_incident_id(service, elderly.device_id)}")
    expect(ops.rows.nth(0).locator(".badge.critical")).to_have_text("紧急")
    expect(ops.rows.nth(1)).to_have_id(f"inc-{active_incident_id(service, detector.device_id)}")
    expect(critical_row).to_have_class(FRESH)
    expect(ops.rows.nth(1)).not_to_have_class(FRESH)  # moved down, not new: no flash
    assert ops.rows.nth(1).evaluate(MARKED), "the high row was rebuilt when the critical one arrived"
    expect(ops.page.locator("#count-critical")).to_have_text("1")
    expect(ops.page.locator("#count-high")).to_have_text("1")
    expect(ops.page.locator("#count-active")).to_have_text("2")


def test_new_high_and_critical_incidents_ring_their_own_tones_once_sound_is_on(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    ops.open()
    page = ops.page
    send(service, elderly_alarm(building).press(now_ms()))
    expect(ops.rows).to_have_count(1, timeout=SCREEN_TIMEOUT_MS)
    assert page.evaluate("() => window.wanliBeeps") == 0  # browsers allow no sound before a click

    page.locator("#sound").click()
    expect(page.locator("#sound")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#sound")).to_have_text("声音已开")

    send(service, building.smoke_detectors()[0].alarm(now_ms()))  # high: its own tone
    expect(ops.rows).to_have_count(2, timeout=SCREEN_TIMEOUT_MS)
    page.wait_for_function("() => window.wanliRings.some(r => r.severity === 'high')")
    send(service, charging_station(building).smoke(now_ms()))  # critical: the critical tone, at once
    expect(ops.rows).to_have_count(3, timeout=SCREEN_TIMEOUT_MS)
    page.wait_for_function("() => window.wanliRings.some(r => r.severity === 'critical')", timeout=3_000)


def test_wall_with_incidents_at_every_stage(
    ops: OpsScreen, service: WanliService, building: BuildingSimulation,
) -> None:
    detectors = building.smoke_detectors()
    for detector in detectors[:3]:  # one after the other
        send(service, detector.alarm(now_ms()))
        active_incident_id(service, detector.device_id)
    act(service, active_incident_id(service, detectors[1].device_id), "acknowledge", actor="王值班")
    act(service, active_incident_id(service, detectors[2].device_id), "acknowledge", "dispatch", actor="李值班")
    send(service, elderly_alarm(building).press(now_ms()))
    active_incident_id(service, elderly_alarm(building).device_id)
    ops.open()

    # Three detectors alarming in one building are also a suspected fire: it carries their alarms, folded under it.
    # Unacknowledged first, newest first: the elderly press came last.
    expect(ops.rows).to_have_count(2)
    expect(ops.rows.locator(".title")).to_have_text(["一键通紧急呼叫", "疑似火灾：相邻楼层多个烟感报警"], use_inner_text=True)
    fold = ops.rows.nth(1).locator("button.fold")
    expect(fold).to_have_text("含 3 条单点报警 ▾")
    fold.click()
    expect(ops.rows).to_have_count(5)
    expect(ops.rows.locator(".title")).to_have_text(["一键通紧急呼叫", "疑似火灾：相邻楼层多个烟感报警", "烟感报警", "烟感报警", "烟感报警"],
                                                     use_inner_text=True)
    expect(ops.rows.locator("td.state .state-label")).to_have_text(["待响应", "待响应", "待响应", "已派单", "已确认"])
    expect(ops.rows.locator("button.step")).to_have_text(["确认", "确认", "确认", "到场", "派单"])
    expect(ops.rows.nth(2)).to_have_class(re.compile(r"\bmember\b"))
    expect(ops.rows.nth(0).locator(".badge")).to_have_text("紧急")
    expect(ops.rows.nth(1).locator(".badge")).to_have_text("紧急")
    ops.screenshot("ops-wall.png")


@pytest.mark.slow
def test_screen_reconnects_after_a_restart_and_catches_up(
    chromium: Browser, artifacts: Path, tmp_path: Path,
) -> None:
    # Same data and same HTTP port both times: the page must find the new server by itself.
    settings = Settings(data_dir=tmp_path, embedded_broker_port=free_port(), http_port=free_port(),
                        simulate_building=False)
    with ops_screen(chromium, f"http://{settings.http_host}:{settings.http_port}", artifacts) as ops:
        ops.tolerate(r"/api/stream\)$")  # the stream breaks while the server is away: that is the point
        ops.tolerate(r"/api/(kpi|auth/status)\)$")  # and so do the KPI refresh and the session check, if they run then
        page = ops.page
        with running_in_thread(settings) as first:
            building = register_building(first)
            ops.sign_in(signed_in_session(first))  # the session is in the database: it outlives the restart
            ops.open()
            before = building.smoke_detectors()[0]
            send(first, before.alarm(now_ms()))
            expect(ops.rows).to_have_count(1, timeout=SCREEN_TIMEOUT_MS)

        expect(ops.link).to_have_class("link down")
        expect(ops.link).to_have_text("连接中断，重连中…")
        expect(page.locator("body")).to_have_class(OFFLINE)
        expect(page.locator("#offline-note")).to_be_visible()  # what is shown may be out of date
        expect(page.locator("#wall")).to_have_css("opacity", "0.4")
        ops.screenshot("ops-disconnected.png")

        with running_in_thread(settings) as second:
            detector = building.smoke_detectors()[1]
            send(second, detector.alarm(now_ms()))
            expect(ops.link).to_have_class("link up", timeout=10_000)
            active_incident_id(second, detector.device_id)
            # two detectors of the building: a suspected fire, whose row carries both alarms
            fire = next(i.id for i in second.services.alerts.active() if i.scope)
            expect(ops.row(fire)).to_be_visible()
            expect(page.locator("body")).not_to_have_class(OFFLINE)
            expect(page.locator("#offline-note")).to_be_hidden()
            page.close()  # before the service stops, so the open stream does not hold up its shutdown


@pytest.mark.slow
def test_screen_retries_when_the_stream_is_refused(ops: OpsScreen) -> None:
    ops.tolerate(r"502 \(Bad Gateway\)")
    refusing = [True]
    refused: list[str] = []

    def refuse_while_told(route: Route) -> None:
        if refusing[0]:
            refused.append(route.request.url)
            route.fulfill(status=502, body="bad gateway")
        else:
            route.continue_()

    page = ops.page
    page.route("**/api/stream", refuse_while_told)
    page.goto(ops.url)
    expect(ops.link).to_have_class("link down")
    # No all-clear while the wall does not know: the empty table says the link is down, in red.
    empty = page.locator("#empty")
    expect(empty).to_have_text("连接中断，警情可能未显示")
    expect(empty).to_have_css("color", RED)
    expect(page.locator("body")).to_have_class(OFFLINE)
    ops.screenshot("ops-disconnected-empty.png")

    refusing[0] = False
    expect(ops.link).to_have_class("link up", timeout=8_000)
    expect(empty).to_have_text("当前没有未结警情")
    assert len(refused) >= 1


def test_a_kinds_words_come_from_its_slice_and_an_alarm_never_waits_for_them(ops: OpsScreen, service: WanliService) -> None:
    """The wall names a device by its kind's own word (GET /api/device-kinds, from devices/kinds/<kind>/): the gas
    detector, added as one folder and one line, needs nothing here. While the words cannot be had, the row shows
    the kind's wire name; the next load has the word."""
    detector = GasDetectorSim("GD-FP01-0302")
    service.services.registry.register_many(
        [DeviceRecord(detector.device_id, "gas_detector", "wanli", "fp-01", 3, "0302", label="富平 1号楼 0302 厨房")],
        actor="test", now_ms=now_ms())
    page = ops.page
    page.route("**/api/device-kinds", lambda route: route.abort())
    ops.open()
    send(service, detector.gas_alarm(now_ms(), "high", 52.0))
    incident_id = active_incident_id(service, detector.device_id)
    row = ops.row(incident_id)
    expect(row).to_be_visible(timeout=SCREEN_TIMEOUT_MS)
    expect(row.locator(".title")).to_have_text("可燃气体泄漏（高限）")
    expect(row.locator(".badge.critical")).to_have_text("紧急")
    expect(row).to_contain_text(f"gas_detector {detector.device_id}")
    problems = ops.take_problems()  # the refused request, and only it, was reported by the browser
    assert problems and all("Failed to load resource" in p for p in problems), problems

    page.unroute("**/api/device-kinds")
    ops.open()
    expect(ops.row(incident_id)).to_contain_text(f"燃气探测器 {detector.device_id}")
    ops.screenshot("ops-gas-leak.png", full_page=False)
