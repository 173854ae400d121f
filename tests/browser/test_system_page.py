"""The system page in real Chromium (issue 24): this instance, the roles it holds, who holds each role, and
the service's own faults. Screenshot at 1920x1080."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ViewportSize, expect

from tests.browser.conftest import WatchedPage, signed_in_session, watched_page
from tests.fixtures.service import ServiceFactory
from wanli.runtime import WanliService

pytestmark = [pytest.mark.browser]

FULL_HD = ViewportSize(width=1920, height=1080)


@pytest.fixture
def service(service_factory: ServiceFactory) -> WanliService:
    return service_factory(instance_name="ops-host-1")


@pytest.fixture
def operator(chromium: Browser, service: WanliService, artifacts: Path) -> Iterator[WatchedPage]:
    with watched_page(chromium, WatchedPage, service.http_url, artifacts, FULL_HD,
                      session=signed_in_session(service)) as page:
        yield page


def test_the_system_page_shows_the_roles_this_instance_holds_and_who_holds_each(
        operator: WatchedPage, service: WanliService) -> None:
    page = operator.page
    page.goto(f"{operator.base_url}/ops/system.html")
    expect(page.locator("#instance")).to_have_text("ops-host-1")
    expect(page.locator("#ready")).to_have_text("本实例可以服务")
    held = page.locator("#held li")
    expect(held).to_have_count(3)
    expect(held.nth(0)).to_contain_text("接收设备消息")
    rows = page.locator("#leases tbody tr")
    expect(rows).to_have_count(3)
    for i in range(3):
        expect(rows.nth(i)).to_contain_text("本实例承担")
        expect(rows.nth(i)).to_contain_text("ops-host-1")
    expect(page.locator("#no-faults")).to_be_visible()
    operator.screenshot("system-roles-1920.png", full_page=False)
    assert service.keeper.held() == [service.ingest_role, "escalation", "dispatch"]
