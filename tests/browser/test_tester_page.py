"""The testers' page in real Chromium: start a simulated building and a scenario, follow them, stop them.

The service runs on a simulated clock twenty times faster than real time (the page and the
API cannot tell: they read the service's clock), so a scenario of a minute and a half takes
a few seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from simulators.clock import SimClock, shanghai
from tests.browser.conftest import DESK, WatchedPage, signed_in_session, watched_page
from tests.fixtures.servers import free_port
from tests.fixtures.service import auth_headers, wait_for
from wanli.runtime import WanliService, running_in_thread
from wanli.settings import Settings

pytestmark = pytest.mark.browser


@pytest.fixture
def fast_service(tmp_path: Path) -> Iterator[WanliService]:
    clock = SimClock(speed=20.0)
    settings = Settings(data_dir=tmp_path / "service", embedded_broker_port=free_port(), http_port=0,
                        simulate_building=False, mqtt_client_id=f"wanli-test-{free_port()}", alert_tick_s=0.05)
    with running_in_thread(settings, clock.now_ms) as service:
        yield service


@pytest.fixture
def tester(chromium: Browser, fast_service: WanliService, artifacts: Path) -> Iterator[WatchedPage]:
    with watched_page(chromium, WatchedPage, fast_service.http_url, artifacts, DESK,
                      signed_in_session(fast_service)) as page:
        page.page.goto(fast_service.http_url + "/ops/tester.html")
        yield page


def test_a_tester_starts_follows_and_stops_a_simulated_building(tester, fast_service):
    page = tester.page
    expect(page.locator("#target option")).to_have_count(len(fast_service.services.hierarchy.buildings))
    page.select_option("#target", "xq-01")
    # the kinds a simulated place has, in each kind's own word (/api/device-kinds, devices/kinds/): not the gas
    # detector, which the street does not place (it is registered by hand, as in its scenario)
    expect(page.locator("#about")).to_contain_text("（烟感、充电桩、微型消防站、一键通、水表、电梯摄像头）按真实周期上报")
    page.click("#start-button")
    row = page.locator("#runs > tr").first
    expect(row.locator(".state")).to_have_text("运行中")
    expect(page.locator("#message")).to_contain_text("已开始")
    # 81 devices of 香泉 1号楼 come online: the page counts what was sent
    wait_for(lambda: int(row.locator(".sent").inner_text().replace(",", "")) >= 81, timeout_s=15)
    api = httpx.Client(base_url=fast_service.http_url, headers=auth_headers(fast_service), timeout=10)
    seen = wait_for(lambda: [d for d in api.get("/api/devices", params={"building_id": "xq-01"}).json()
                             if "online" in d["health"]] or None, timeout_s=15)
    assert len(seen) == 81  # every device of the building reported through the broker and was ingested
    tester.screenshot("tester-building.png")
    row.locator("button", has_text="停止").click()
    expect(row.locator(".state")).to_have_text("已停止")
    api.close()


def test_a_scenario_shows_its_expected_outcomes_met_and_a_bad_request_is_explained(tester, fast_service):
    page = tester.page
    page.select_option("#kind", "scenario")
    expect(page.locator("#target-label")).to_have_text("场景")
    # one that jumps a day ahead runs only on its own clock: offered, but not here
    expect(page.locator('#target option[value="elderly_inactivity_day"]')).to_be_disabled()
    page.select_option("#target", "press_then_cancel")
    # what it is and what it expects, in Chinese; the machine form on hover
    expect(page.locator("#about")).to_contain_text("1201室刘老伯误按一键通")
    expected = page.locator("#about li").first
    expect(expected).to_have_text("1201室一键通紧急呼叫一起（中），按下一键通后 30 秒内生成，待响应，最多计 2 次")
    expect(expected).to_have_attribute("title", re.compile("severity warning"))
    page.click("#start-button")
    expect(page.locator("#verdict")).to_contain_text("全部预期达成", timeout=60_000)
    expect(page.locator("#outcomes li.met")).to_have_count(1)
    expect(page.locator("#outcomes li.met .seen")).to_have_text(re.compile(r"^实见：1201室一键通紧急呼叫（中），待响应"))
    expect(page.locator("#log li").first).to_have_text("正在注册 81 台演练设备")  # a drill: DRILL-… twins
    expect(page.locator("#log li").nth(-2)).to_have_text("完成")
    expect(page.locator("#log li").last).to_have_text("81 台演练设备已归档")
    expect(page.locator("#log")).to_contain_text("误按一键通，随即取消")
    run = page.locator("#runs > tr").first
    expect(run.locator(".state")).to_have_text("已完成")
    tester.screenshot("tester-scenario.png")
    # nothing on the page in the machine's words: every text the tester reads is Chinese (ids and numbers aside)
    shown = "\n".join(page.locator(f"#{part}").inner_text() for part in ("about", "runs", "detail"))
    assert not re.findall(r"[A-Za-z_]{5,}", shown), shown

    api = httpx.Client(base_url=fast_service.http_url, headers=auth_headers(fast_service), timeout=10)
    # the API keeps the machine-readable form beside the Chinese, for tests and the CLI
    outcome = api.get("/api/simulations").json()[0]["result"]["outcomes"][0]
    assert outcome["expectation"].startswith("exactly 1 incident(s) emergency_press")
    assert outcome["detail"].startswith("seen: emergency_press@EA-XQ01-1201 warning open")
    assert outcome["expectation_zh"].startswith("1201室一键通紧急呼叫一起（中）")
    # the script's line tells the story's own clock (the service's, Shanghai time), not a time written in the script
    run_json = api.get("/api/simulations").json()[0]
    said = next(line for line in run_json["log"] if "误按一键通" in line).split()[0]
    lo, hi = (int(datetime.fromisoformat(run_json[k]).timestamp()) for k in ("started_at", "simulated_at"))
    assert said in {shanghai(t * 1000).strftime("%H:%M") for t in range(lo, hi + 60, 30)}, (said, lo, hi)
    refused = api.post("/api/simulations", json={"kind": "scenario", "target": "elderly_inactivity_day"})
    assert refused.status_code == 422 and "wanli scenario run elderly_inactivity_day" in refused.json()["detail"]
    assert api.post("/api/simulations", json={"kind": "building", "target": "nope-99"}).status_code == 404
    assert api.post("/api/simulations", json={"kind": "volcano", "target": "xq-01"}).status_code == 422
    assert api.get("/api/simulations/sim-0-0").status_code == 404
    api.close()
