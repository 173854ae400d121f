"""The answer page a signed link opens, on a phone, in real Chromium under CSP script-src 'self':
the incident's facts, three buttons, and an answer that is an audit step naming the person."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route, ViewportSize, expect

from tests.browser.conftest import WatchedPage, api_json, elderly_alarm, send, watched_page
from tests.fixtures.service import ServiceFactory, now_ms, register_building, wait_for
from wanli.runtime import WanliService

pytestmark = pytest.mark.browser

PHONE = ViewportSize(width=390, height=844)
FAMILY = "儿子 王强"


@pytest.fixture
def service(service_factory: ServiceFactory) -> WanliService:
    return service_factory(notify_tick_s=0.2)


@pytest.fixture
def phone(chromium: Browser, service: WanliService, artifacts: Path) -> Iterator[WatchedPage]:
    with watched_page(chromium, WatchedPage, service.http_url, artifacts, PHONE) as page:
        def with_csp(route: Route) -> None:  # as issue 15 will serve the pages: no inline script may run
            response = route.fetch()
            route.fulfill(response=response, headers={**response.headers,
                                                       "content-security-policy": "script-src 'self'"})
        page.page.route("**/ops/answer.*", with_csp)
        yield page


def pressed(service: WanliService) -> str:
    building = register_building(service)
    device = elderly_alarm(building)
    send(service, device.press(now_ms()))
    return wait_for(lambda: next((i.id for i in service.services.alerts.active() if i.device_id == device.device_id),
                                 None))


def test_the_family_answers_from_the_link_in_their_sms(phone: WatchedPage, service: WanliService) -> None:
    incident_id = pressed(service)
    notifier = service.services.notifier
    assert notifier is not None
    link = notifier.answer_link(incident_id, FAMILY, now_ms()).replace(
        f"http://{service.settings.http_host}:{service.settings.http_port}", service.http_url)
    page = phone.page
    page.goto(link)
    expect(page.locator("#title")).to_have_text("一键通紧急呼叫")
    expect(page.locator("#severity")).to_have_text("紧急")
    expect(page.locator("#location")).to_contain_text("香泉 1号楼")
    expect(page.locator("#person")).to_have_text(FAMILY)
    phone.screenshot("answer-page-phone.png", full_page=False)
    page.get_by_role("button", name="已到场").click()
    expect(page.locator("#status")).to_contain_text("已应答：已到场")
    phone.screenshot("answer-page-answered.png", full_page=False)
    incident = wait_for(lambda: (i := api_json(service, f"/api/incidents/{incident_id}"))["state"] == "acknowledged" and i)
    assert any(FAMILY in a["actor"] and a["note"] == "已到场（应答链接）" for a in incident["audit"])


def test_a_tampered_link_says_so_in_words(phone: WatchedPage, service: WanliService) -> None:
    incident_id = pressed(service)
    notifier = service.services.notifier
    assert notifier is not None
    link = notifier.answer_link(incident_id, FAMILY, now_ms()).replace(
        f"http://{service.settings.http_host}:{service.settings.http_port}", service.http_url)
    phone.tolerate(r"status of 422")
    phone.page.goto(link[:-3] + "AAA")
    expect(phone.page.locator("#status")).to_contain_text("应答链接无效")
    expect(phone.page.locator("#facts")).to_be_hidden()
