"""The testers' page runs drills, isolated from the live street (issue 16), in real Chromium at 1920x1080.

Real 香泉1号楼 devices are registered and one has an emergency press already open (an unrelated,
real incident). A tester starts ``press_then_cancel`` on the page: it plays as a drill (DRILL-… twins),
judges only the incidents its own devices raised after it started, so it passes although a real
press of the same unit is open; the real incident stays real and untouched. A longer scenario shows
its progress and the time it has left, and is stopped mid-way; every drill device is archived after
both. The service runs on a simulated clock twenty times real time (the page cannot tell).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ViewportSize, expect

from devices.kinds.elderly_alarm.simulator import ElderlyAlarmSim
from simulators.clock import SimClock
from tests.browser.conftest import WatchedPage, signed_in_session, watched_page
from tests.fixtures.servers import free_port
from tests.fixtures.service import auth_headers, publish, register_building, wait_for
from wanli.runtime import WanliService, running_in_thread
from wanli.settings import Settings

pytestmark = pytest.mark.browser

FULL_HD = ViewportSize(width=1920, height=1080)


@pytest.fixture
def fast_service(tmp_path: Path) -> Iterator[tuple[WanliService, SimClock]]:
    clock = SimClock(speed=20.0)
    settings = Settings(data_dir=tmp_path / "service", embedded_broker_port=free_port(), http_port=0,
                        simulate_building=False, mqtt_client_id=f"wanli-test-{free_port()}", alert_tick_s=0.05)
    with running_in_thread(settings, clock.now_ms) as service:
        yield service, clock


@pytest.fixture
def tester(chromium: Browser, fast_service: tuple[WanliService, SimClock], artifacts: Path) -> Iterator[WatchedPage]:
    service, _clock = fast_service
    with watched_page(chromium, WatchedPage, service.http_url, artifacts, FULL_HD, signed_in_session(service)) as page:
        page.page.goto(service.http_url + "/ops/tester.html")
        yield page


def test_a_page_run_is_a_drill_that_judges_only_its_own_incidents(tester, fast_service):
    service, clock = fast_service
    page = tester.page
    api = httpx.Client(base_url=service.http_url, headers=auth_headers(service), timeout=10)
    # The live street: 香泉1号楼's real devices, and 1201's real press open before any drill.
    register_building(service)
    host, port = service.settings.mqtt_host_port
    real = ElderlyAlarmSim("EA-XQ01-1201", seq=1)
    publish(host, port, [real.press(clock.now_ms())])
    unrelated = wait_for(lambda: next((i for i in api.get("/api/incidents").json()
                                       if i["condition"] == "emergency_press"), None))
    assert unrelated["drill"] is False and unrelated["device_id"] == "EA-XQ01-1201"
    before = {d["device_id"]: (d["label"], d["lifecycle"]) for d in api.get("/api/devices", params={
        "building_id": "xq-01", "limit": 10_000}).json()}

    expect(page.locator("#drill-note")).to_contain_text("演练命名空间")
    page.select_option("#kind", "scenario")
    page.select_option("#target", "press_then_cancel")
    page.click("#start-button")
    expect(page.locator("#verdict")).to_contain_text("全部预期达成", timeout=60_000)
    run = page.locator("#runs > tr").first
    expect(run.locator(".drill-tag")).to_have_text("演练")
    expect(run.locator(".progress .left")).to_have_text("100%")
    expect(page.locator("#scope-note")).to_be_visible()
    expect(page.locator("#log")).to_contain_text("台演练设备已归档")
    tester.screenshot("tester-drill-isolated.png", full_page=False)

    incidents = api.get("/api/incidents").json()
    presses = [i for i in incidents if i["condition"] == "emergency_press"]
    assert {(i["device_id"], i["drill"]) for i in presses} == {("EA-XQ01-1201", False), ("DRILL-EA-XQ01-1201", True)}
    still = next(i for i in presses if i["id"] == unrelated["id"])
    assert still["severity"] == unrelated["severity"] and still["state"] == "open"  # the real one untouched
    result = api.get("/api/simulations").json()[0]["result"]
    assert result["ok"] and "EA-XQ01-1201" in result["outcomes"][0]["detail"]
    after = {d["device_id"]: (d["label"], d["lifecycle"]) for d in api.get("/api/devices", params={
        "building_id": "xq-01", "limit": 10_000}).json() if not d["device_id"].startswith("DRILL-")}
    assert after == before
    assert api.get("/api/drills/devices").json()["count"] == 0
    drill_id = next(i["id"] for i in presses if i["drill"])

    # On the wall both are there, the drill's marked 演练 (row and drawer), the real one not.
    page.goto(service.http_url + "/ops/")
    drill_row, real_row = page.locator(f"#inc-{drill_id}"), page.locator(f"#inc-{unrelated['id']}")
    expect(drill_row.locator(".kind-tag.drill")).to_have_text("演练")
    expect(drill_row).to_have_class(re.compile(r"\bdrill\b"))
    expect(real_row.locator(".kind-tag")).to_be_hidden()
    expect(page.locator("#kpi-tiers")).to_contain_text("含演练 1")
    drill_row.locator(".title").click()
    expect(page.locator("#drawer-title")).to_have_text(re.compile(r"^【演练】"))
    expect(page.locator("#drawer-facts")).to_contain_text("只通知演练联系人")
    # no real phone to ring from the screen during a drill: only its own contacts (none set here)
    expect(page.locator("#drawer-contacts")).to_have_text("演练：没有演练联系人（请勿拨打真实电话）")
    tester.screenshot("tester-drill-wall-drawer.png", full_page=False)
    # The street's KPIs leave it out: the real press is the only active incident they count.
    assert api.get("/api/kpi").json()["active"] == 1
    api.close()


def test_a_long_run_shows_progress_and_time_left_and_can_be_stopped(tester, fast_service):
    service, _clock = fast_service
    page = tester.page
    page.select_option("#kind", "scenario")
    page.select_option("#target", "real_fire_spreading")  # 400 simulated seconds: 20 s here
    page.click("#start-button")
    run = page.locator("#runs > tr").first
    expect(run.locator(".state")).to_have_text("运行中")
    expect(run.locator(".progress .left")).to_have_text(re.compile(r"^\d+%，剩余约 \d+ 秒$"), timeout=15_000)
    wait_for(lambda: int(run.locator(".progress [role=progressbar]").get_attribute("aria-valuenow") or 0) >= 10,
             timeout_s=15)
    expect(page.locator("#verdict")).to_contain_text("剩余约")
    tester.screenshot("tester-drill-progress.png", full_page=False)
    api = httpx.Client(base_url=service.http_url, headers=auth_headers(service), timeout=10)
    # the same building's twins in a second run at once: refused (the first to end would archive the other's)
    clash = api.post("/api/simulations", json={"kind": "building", "target": "xq-01"})
    assert clash.status_code == 409 and "same drill devices" in clash.json()["detail"]
    run.locator("button", has_text="停止").click()
    expect(run.locator(".state")).to_have_text("已停止", timeout=10_000)
    wait_for(lambda: api.get("/api/drills/devices").json()["count"] == 0, timeout_s=10)
    drill = [i for i in api.get("/api/incidents").json() if i["drill"]]
    assert drill and all(i["device_id"].startswith("DRILL-") for i in drill)
    api.close()
    tester.screenshot("tester-drill-stopped.png", full_page=False)
