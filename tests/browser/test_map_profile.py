"""The street map and the building risk profile (数字化风险画像) in real Chromium, against the whole service.

The map must recolour a building the moment its incident opens (pushed over the stream, never a reload),
a click must open the building's profile, and the profile must show the score with its factors, the devices,
the history and the charts read back from the telemetry store.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, ViewportSize, expect

from devices.topics import MessageClass
from simulators.building import BuildingSimulation
from tests.browser.conftest import (
    DESK,
    SCREEN_TIMEOUT_MS,
    WALL,
    WatchedPage,
    active_incident_id,
    charging_station,
    elderly_alarm,
    send,
    signed_in_session,
    watched_page,
)
from tests.fixtures.service import auth_headers, now_ms
from tests.integration.test_buildings_api import connect_telemetry
from wanli.runtime import WanliService

pytestmark = pytest.mark.browser

# Records, in the page's clock, when a building's colour first changes to each state.
WATCH_STATES = """() => {
  window.stateSeenAt = {};
  new MutationObserver((changes) => {
    for (const c of changes) {
      const id = c.target.id, state = c.target.dataset.state;
      if (id && state) window.stateSeenAt[`${id}:${state}`] ??= Date.now();
    }
  }).observe(document.getElementById("plan"), { attributes: true, subtree: true, attributeFilter: ["data-state"] });
}"""


class MapPage(WatchedPage):
    def __init__(self, page: Page, base_url: str, artifacts: Path) -> None:
        super().__init__(page, base_url, artifacts)
        self.url = base_url + "/ops/map.html"
        self.link = page.locator("#link")

    def open(self) -> None:
        self.page.goto(self.url)
        expect(self.link).to_have_class("link up")

    def building(self, building_id: str) -> Locator:
        return self.page.locator(f"#plan g.building#b-{building_id}")


class ProfilePage(WatchedPage):
    def open(self, building_id: str) -> None:
        self.page.goto(f"{self.base_url}/ops/profile.html?b={building_id}")


@pytest.fixture
def street_map(chromium: Browser, service: WanliService, artifacts: Path) -> Iterator[MapPage]:
    with watched_page(chromium, MapPage, service.http_url, artifacts, WALL, signed_in_session(service)) as page:
        yield page


@pytest.fixture
def profile(chromium: Browser, service: WanliService, artifacts: Path) -> Iterator[ProfilePage]:
    with watched_page(chromium, ProfilePage, service.http_url, artifacts, DESK, signed_in_session(service)) as page:
        yield page


def api(service: WanliService, path: str) -> dict:
    with httpx.Client(base_url=service.http_url, headers=auth_headers(service), timeout=5) as client:
        return client.get(path).raise_for_status().json()  # type: ignore[no-any-return]


def test_the_map_recolours_a_building_live_and_a_click_opens_its_profile(
    street_map: MapPage, service: WanliService, building: BuildingSimulation, artifacts: Path,
) -> None:
    street_map.open()
    page = street_map.page
    page.evaluate("() => { window.notReloaded = true; }")
    page.evaluate(WATCH_STATES)
    xq01 = street_map.building("xq-01")
    expect(xq01).to_have_attribute("data-state", "fault")  # registered, never heard from
    for other in ("xq-02", "yh-01", "fp-01", "zh-01", "mx-01"):
        expect(street_map.building(other)).to_have_attribute("data-state", "no_devices")
    expect(page.locator("#n-fault")).to_have_text("1")
    expect(page.locator("#n-no_devices")).to_have_text("5")
    expect(page.locator("#plan .community-name")).to_have_count(5)
    expect(page.locator("#plan .station")).to_have_count(3)

    published_ms = now_ms()
    send(service, building.smoke_detectors()[0].alarm(published_ms))
    expect(xq01).to_have_attribute("data-state", "incident", timeout=SCREEN_TIMEOUT_MS)
    seen_ms = page.evaluate("() => window.stateSeenAt['b-xq-01:incident']")
    (artifacts / "map-latency.txt").write_text(
        f"publish → building recoloured on the map: {seen_ms - published_ms} ms (page's clock)\n", encoding="utf-8")
    expect(page.locator("#watch li").first).to_have_attribute("data-building", "xq-01")
    expect(page.locator("#watch li").first.locator(".why")).to_have_text("烟感报警")

    send(service, elderly_alarm(building).press(now_ms()))
    expect(xq01).to_have_attribute("data-state", "critical", timeout=SCREEN_TIMEOUT_MS)
    expect(page.locator("#n-critical")).to_have_text("1")
    expect(page.locator("#watch li").first.locator(".why")).to_have_text("一键通紧急呼叫")
    assert page.evaluate("() => window.notReloaded") is True, "the map reloaded to show the incident"
    street_map.screenshot("map-live.png", full_page=False)

    xq01.hover()
    expect(page.locator("#tip")).to_be_visible()
    expect(page.locator("#tip")).to_contain_text("香泉居民区 香泉 1号楼")
    expect(page.locator("#tip .state")).to_have_text("紧急警情")

    xq01.click()
    expect(page).to_have_url(re.compile(r"/ops/profile\.html\?b=xq-01$"))
    expect(page.locator("#title-building")).to_have_text("香泉居民区 香泉 1号楼")
    expect(page.locator("#state-chip")).to_have_text("紧急警情")


def test_the_profile_shows_the_score_its_factors_devices_history_and_charts(
    profile: ProfilePage, service: WanliService, building: BuildingSimulation,
) -> None:
    connect_telemetry(service)
    detectors, station = building.smoke_detectors(), charging_station(building)
    t0 = now_ms() - 20 * 60_000
    readings = [station.publication(MessageClass.TELEMETRY, "station_status", t0 + i * 60_000, ambient_temp_c=24.0,
                                    ports=[{"port": p, "state": "charging", "temperature_c": 28.0 + p + i * (0.6 if p == 3 else 0.1)}
                                           for p in (1, 2, 3)])
                for i in range(20)]
    for j, d in enumerate(detectors[:6]):
        readings += [d.publication(MessageClass.TELEMETRY, "heartbeat", t0 + k * 240_000 + j * 1000,
                                   battery_pct=round(60 - 9 * j - 0.5 * k, 1), rssi_dbm=-75) for k in range(5)]
    readings.append(detectors[7].publication(MessageClass.EVENT, "tamper", now_ms(), state="removed"))
    send(service, *readings)
    send(service, detectors[10].alarm(now_ms()))
    incident_id = active_incident_id(service, detectors[10].device_id)
    with httpx.Client(base_url=service.http_url, headers=auth_headers(service), timeout=5) as client:
        client.post(f"/api/incidents/{incident_id}/actions", json={"action": "false_alarm", "actor": "测试"}).raise_for_status()
    expected = api(service, "/api/buildings/xq-01/profile")

    profile.open("xq-01")
    page = profile.page
    expect(page.locator("#content")).to_be_visible()
    expect(page.locator("#risk-score")).to_have_text(str(expected["risk"]["score"]))
    expect(page.locator("#risk-level")).to_have_text(f"{expected['risk']['level_zh']}风险")
    expect(page.locator("#factors li")).to_have_count(len(expected["risk"]["factors"]))
    expect(page.locator("#factors li[data-code=tampered] .points")).to_have_text("+3")
    expect(page.locator("#factors li[data-code=low_battery] .factor-detail")).to_have_text("1 台设备电量低于 20%")
    smoke = page.locator("#kind-rows tr[data-kind=smoke_detector]")
    expect(smoke.locator("td[data-field=registered]")).to_have_text(str(len(detectors)))
    expect(smoke.locator("td[data-field=tampered]")).to_have_text("1")
    expect(smoke.locator("td[data-field=low_battery]")).to_have_text("1")
    expect(page.locator("#coverage")).to_contain_text("烟感覆盖 72/72 户")
    expect(page.locator("#history-stats .stat").nth(1).locator("b")).to_have_text("1")  # 其中误报
    expect(page.locator("#history-stats .stat").nth(2).locator("b")).to_have_text("100%")
    expect(page.locator("#chart-history rect[data-key=false_alarms]")).to_have_count(1)
    expect(page.locator("#chart-temperature path.series")).to_have_count(3, timeout=SCREEN_TIMEOUT_MS)
    expect(page.locator("#chart-battery path.series")).to_have_count(6)
    expect(page.locator("#chart-battery .chart-legend li").first).to_contain_text(detectors[5].device_id)  # lowest first
    expect(page.locator("#chart-temperature .threshold-label")).to_have_text("过热 60°C")
    expect(page.locator("#chart-temperature .chart-legend li").nth(2)).to_contain_text("3号口  42.4°C")
    profile.screenshot("profile.png")


def test_the_profile_follows_incidents_in_its_building_without_a_reload(
    profile: ProfilePage, service: WanliService, building: BuildingSimulation,
) -> None:
    profile.open("xq-01")
    page = profile.page
    expect(page.locator("#link")).to_have_class("link up")
    expect(page.locator("#active-count")).to_have_text("0")
    page.evaluate("() => { window.notReloaded = true; }")
    send(service, charging_station(building).smoke(now_ms()))
    expect(page.locator("#active-count")).to_have_text("1", timeout=SCREEN_TIMEOUT_MS)
    expect(page.locator("#active-rows tr")).to_contain_text("充电棚烟雾报警")
    expect(page.locator("#state-chip")).to_have_text("紧急警情")
    expect(page.locator("#factors li[data-code=critical_incident] .points")).to_have_text("+40")
    assert page.evaluate("() => window.notReloaded") is True


def test_an_unknown_building_says_so_in_chinese(profile: ProfilePage) -> None:
    profile.tolerate(r"status of 404 \(Not Found\)")
    profile.open("xq-99")
    expect(profile.page.locator("#error .title")).to_have_text("找不到楼栋“xq-99”")
    expect(profile.page.locator("#content")).to_be_hidden()


def test_the_profile_charts_a_year_from_hourly_means_and_a_day_from_raw_readings(
    chromium: Browser, service: WanliService, building: BuildingSimulation, artifacts: Path,
) -> None:
    """Forty days of a charging station's readings, rolled up by the retention job: the range selector asks the API
    for a year (hourly means: one point an hour) or a day (every reading), and the chart's note says which."""
    from ingest.points import TelemetryPoint
    from ingest.retention import DAY_MS

    station = charging_station(building)
    end = now_ms()
    points = [TelemetryPoint("charging_station", {"street": "wanli", "device": station.device_id, "type": "station_status",
                                                  "class": "telemetry", "port": str(port)},
                             {"temperature_c": 30.0 + 4 * port + (t // DAY_MS % 7)}, t)
              for t in range(end - 40 * DAY_MS, end, 10 * 60_000) for port in (1, 2, 3)]
    service.services.telemetry.write_points(points)
    service.lifecycle.job.run_once()
    with watched_page(chromium, ProfilePage, service.http_url, artifacts, ViewportSize(width=1920, height=1080),
                      signed_in_session(service)) as profile:
        profile.open("xq-01")
        page = profile.page
        expect(page.locator("#content")).to_be_visible()
        page.select_option("#telemetry-range", "365")
        expect(page.locator("#temp-note")).to_have_text("（sqlite · 小时均值）", timeout=SCREEN_TIMEOUT_MS)
        expect(page.locator("#chart-temperature path.series")).to_have_count(3)
        # thirty days of hourly means: the time axis reads in days (MM/DD), not in clock times
        expect(page.locator("#chart-temperature text.axis").last).to_have_text(re.compile(r"^\d\d/\d\d$"))
        page.locator("#chart-temperature").scroll_into_view_if_needed()
        profile.screenshot("profile-year.png", full_page=False)
        page.select_option("#telemetry-range", "1")
        expect(page.locator("#temp-note")).to_have_text("（sqlite · 原始读数）", timeout=SCREEN_TIMEOUT_MS)
        expect(page.locator("#chart-temperature path.series")).to_have_count(3)
