"""A drill, end to end in real Chromium: a tester starts it on the tester page, an operator follows it on the wall.

Two people, two browser contexts, as in the ops centre: 测试员 张伟 (the ``tester`` role only) starts
the 厨房油烟误报 scenario (``kitchen_false_alarm``) on ``/ops/tester.html``; 值班员 王芳 has the
wall ``/ops/`` open. Frying in 香泉 1号楼 0301 sets off its detector: the smoke alarm arrives on the
wall without a reload; the operator acknowledges and dispatches from the wall, records the
station's arrival, and once the detector has cleared by itself and the tester page says every
expected outcome was met (one of them: the incident is still waiting for a person, because a
clear is no verdict), she resolves and verifies it. The row leaves the wall, and the trail
names her for each of the five steps.

The service runs on a simulated clock ``SPEED`` times faster than real time (the pages and the
scenario read the service's clock), so the scenario's five and a half simulated minutes take
about a minute. Not faster: the simulated micro fire station answers its dispatch on its own
terminal 10–40 simulated seconds after receiving it (38 s in practice: its delays are seeded),
and the operator is to acknowledge first, as the street's rule asks; at this speed the worst
case leaves her two real seconds for that click (she takes about one). The station's answers
then arrive for steps she has already taken and are kept in the trail as notes. The wall
counts "waited" on the browser's real clock, so on this accelerated service it reads less
than the simulated time that passed.

Measured, not asserted: the time from the tester's click to the incident's row on the wall
(printed and written to ``test-artifacts/drill-timing.txt``). Screenshots: ``drill-*.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from simulators.clock import SimClock
from tests.browser.conftest import (
    DESK,
    PERSON_ACTOR,
    WATCH_ROWS,
    OpsScreen,
    WatchedPage,
    api_json,
    ops_screen,
    signed_in_session,
    step_button,
    watched_page,
)
from tests.fixtures.servers import free_port
from tests.fixtures.service import accounts, now_ms
from wanli.runtime import WanliService, running_in_thread
from wanli.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SPEED = 5.0
SCENARIO, SCENARIO_TITLE = "kitchen_false_alarm", "厨房油烟误报"
DETECTOR = "SD-XQ01-0301"
UNIT = "香泉居民区 香泉 1号楼 3层 0301室"
TESTER, TESTER_NAME = "zhangwei", "测试员 张伟"
OPERATOR = PERSON_ACTOR  # 值班员 王芳（wangfang）: the account signed in on the wall
SCENARIO_REAL_S = 330 / SPEED + 60  # the script's simulated seconds at SPEED, and room for a busy machine

# The tester's click, in the page's own clock (a capturing listener runs before the page's own handler).
NOTE_CLICK = """() => {
  document.getElementById("start-button").addEventListener("click", () => { window.clickedAt = Date.now(); },
                                                           { capture: true, once: true });
}"""

STEPS = (("确认", "acknowledge", "acknowledged", "已确认"), ("派单", "dispatch", "dispatched", "已派单"),
         ("到场", "arrive", "on_scene", "已到场"))


@pytest.fixture
def drill_service(tmp_path: Path) -> Iterator[WanliService]:
    clock = SimClock(speed=SPEED)
    settings = Settings(data_dir=tmp_path / "service", embedded_broker_port=free_port(), http_port=0,
                        simulate_building=False, mqtt_client_id=f"wanli-test-{free_port()}", alert_tick_s=0.05)
    with running_in_thread(settings, clock.now_ms) as service:
        yield service


def a_tester_signed_in(service: WanliService) -> str:
    """A session of a tester who may start and stop simulations and nothing else."""
    store = accounts(service)
    store.add_user(TESTER, "browser-test-password", ["tester"], now_ms(), display_name=TESTER_NAME)
    return store.open_session(store.user(TESTER), now_ms())


@pytest.fixture
def tester(chromium: Browser, drill_service: WanliService, artifacts: Path) -> Iterator[WatchedPage]:
    with watched_page(chromium, WatchedPage, drill_service.http_url, artifacts, DESK,
                      a_tester_signed_in(drill_service)) as page:
        yield page


@pytest.fixture
def wall(chromium: Browser, drill_service: WanliService, artifacts: Path) -> Iterator[OpsScreen]:
    with ops_screen(chromium, drill_service.http_url, artifacts, signed_in_session(drill_service)) as screen:
        yield screen


def test_a_drill_started_on_the_tester_page_is_followed_on_the_wall_to_its_closure(
    tester: WatchedPage, wall: OpsScreen, drill_service: WanliService, artifacts: Path,
) -> None:
    service = drill_service
    wall.open()
    wall.page.evaluate("() => { window.notReloaded = true; }")
    wall.page.evaluate(WATCH_ROWS)
    expect(wall.rows).to_have_count(0)

    # The tester chooses the scenario and starts it.
    page = tester.page
    page.goto(service.http_url + "/ops/tester.html")
    page.select_option("#kind", "scenario")
    page.select_option("#target", SCENARIO)
    expect(page.locator("#about")).to_contain_text("预期结果")
    page.evaluate(NOTE_CLICK)
    page.click("#start-button")
    expect(page.locator("#message")).to_contain_text("已开始")
    run = page.locator("#runs > tr").first
    expect(run).to_contain_text(f"场景 {SCENARIO_TITLE}")
    expect(run.locator(".state")).to_have_text("运行中")
    expect(page.locator("#verdict")).to_contain_text("运行中…")  # with how far it is and the time left
    expect(run.locator(".phase")).to_contain_text("0301室炒菜", timeout=30_000)  # the script's own words
    assert int(run.locator(".sent").inner_text().replace(",", "")) >= 81  # 香泉 1号楼's devices came online
    expect(page.locator("#log li")).to_contain_text(["正在注册 81 台演练设备"])  # the twins, DRILL-…
    tester.screenshot("drill-tester-running.png")

    # The smoke alarm arrives on the wall, live.
    expect(wall.rows).to_have_count(1, timeout=30_000)
    row = wall.rows.first
    incident_id = row.get_attribute("id").removeprefix("inc-")  # type: ignore[union-attr]
    button = step_button(row)

    # The operator is quicker than the station's own terminal: acknowledge and dispatch at once.
    for label, _action, state, state_zh in STEPS[:2]:
        expect(button).to_have_text(label)
        button.click()
        expect(row).to_have_attribute("data-state", state)
        expect(row.locator("td.state")).to_contain_text(state_zh)
    clicked_ms = page.evaluate("() => window.clickedAt")
    on_wall_ms = wall.page.evaluate(f"() => window.rowSeenAt['inc-{incident_id}']")
    expect(row.locator(".title")).to_have_text("烟感报警")
    expect(row).to_contain_text(UNIT)
    expect(row).to_contain_text(f"DRILL-{DETECTOR}")  # the drill's twin of the detector
    expect(row.locator(".kind-tag.drill")).to_have_text("演练")  # marked as a drill on the wall
    expect(row.locator(".badge.high")).to_have_text("高")
    expect(row.locator("td.state")).to_contain_text(OPERATOR)
    wall.screenshot("drill-wall-incident.png")

    label, _action, state, state_zh = STEPS[2]  # the station reports it is there: the operator records it
    expect(button).to_have_text(label)
    button.click()
    expect(row).to_have_attribute("data-state", state)
    expect(row.locator("td.state")).to_contain_text(state_zh)

    # The detector clears by itself; the scenario ends, every expected outcome met.
    expect(page.locator("#verdict")).to_contain_text("全部预期达成：4 / 4", timeout=SCENARIO_REAL_S * 1000)
    expect(page.locator("#outcomes li.met")).to_have_count(4)
    expect(page.locator("#outcomes li.unmet")).to_have_count(0)
    expect(page.locator("#outcomes")).to_contain_text("0301室烟感报警（高），已到场")
    expect(run.locator(".state")).to_have_text("已完成")
    tester.screenshot("drill-tester-finished.png")

    # A clear is not a verdict: the operator resolves and verifies, and the row leaves the wall.
    expect(row).to_have_attribute("data-state", "on_scene")
    for label, state in (("处置完毕", "resolved"), ("核查结案", None)):
        expect(button).to_have_text(label)
        button.click()
        if state:
            expect(row).to_have_attribute("data-state", state)
    expect(row).to_have_count(0)
    expect(wall.page.locator("#empty")).to_have_text("当前没有未结警情")
    assert wall.page.evaluate("() => window.notReloaded") is True, "the wall reloaded during the drill"
    wall.screenshot("drill-wall-closed.png")

    # The record: closed, by the operator, every step in her name.
    incident = api_json(service, f"/api/incidents/{incident_id}")
    assert (incident["condition"], incident["device_id"], incident["severity"]) == ("smoke_alarm", f"DRILL-{DETECTOR}",
                                                                                    "high")
    assert incident["drill"] is True
    assert incident["state"] == "closed"
    assert incident["acknowledged_by"] == OPERATOR
    moves = [(a["action"], a["actor"], a["from_state"], a["to_state"]) for a in incident["audit"]
             if a["from_state"] != a["to_state"]]
    assert moves == [
        ("open", "system", None, "open"),
        ("acknowledge", OPERATOR, "open", "acknowledged"),
        ("dispatch", OPERATOR, "acknowledged", "dispatched"),
        ("arrive", OPERATOR, "dispatched", "on_scene"),
        ("resolve", OPERATOR, "on_scene", "resolved"),
        ("verify", OPERATOR, "resolved", "closed"),
    ], incident["audit"]
    # The station's terminal answered the dispatch too, after her: kept as notes, moving nothing.
    station_notes = [a for a in incident["audit"] if "MFS-XQ" in a["actor"]]
    assert station_notes and all(a["from_state"] == a["to_state"] for a in station_notes), incident["audit"]

    run_id = run.locator("td").first.inner_text()
    sim = api_json(service, f"/api/simulations/{run_id}")
    assert sim["state"] == "finished" and sim["result"]["ok"] is True, sim

    # How long from the tester's click to the row on the wall, and what of it the script itself waits.
    opened_ms = datetime.fromisoformat(incident["opened_at"]).timestamp() * 1000
    started_ms = datetime.fromisoformat(sim["started_at"]).timestamp() * 1000
    script_s = (opened_ms - started_ms) / 1000  # simulated: registering, coming online, 20 s, the steam's 15–45 s
    def after_opening(entry: dict[str, str]) -> float:  # simulated seconds
        return datetime.fromisoformat(entry["at"]).timestamp() - opened_ms / 1000

    operator_ack = next(a for a in incident["audit"] if a["action"] == "acknowledge" and a["actor"] == OPERATOR)
    station = ", ".join(f"{a['action']} {after_opening(a):.0f} s" for a in station_notes)
    report = (f"drill {SCENARIO} at ×{SPEED:g}: the tester's click → the incident's row on the wall "
              f"{on_wall_ms - clicked_ms:.0f} ms (both pages' clocks, one machine); of which the scenario's "
              f"own lead-in (start → alarm opened) is {script_s:.1f} simulated s = {script_s / SPEED * 1000:.0f} ms real, "
              f"leaving {on_wall_ms - clicked_ms - script_s / SPEED * 1000:.0f} ms for the start request and the "
              f"opened incident reaching the wall\n"
              f"after opening (simulated): the operator acknowledged at {after_opening(operator_ack):.1f} s "
              f"(= {after_opening(operator_ack) / SPEED:.1f} s real); the station's terminal answered: {station}\n")
    print(report, end="")
    (artifacts / "drill-timing.txt").write_text(report, encoding="utf-8")
