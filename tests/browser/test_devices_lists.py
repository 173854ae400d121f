"""The maintainers' lists on the device page: the quarantine filtered by reason, with a count per reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from devices.topics import MessageClass, device_topic
from tests.browser.conftest import DESK, signed_in_session, watched_page
from tests.browser.test_devices_page import DevicesPage
from tests.fixtures.service import auth_headers, now_ms, publish, wait_for
from wanli.runtime import WanliService

pytestmark = pytest.mark.browser


@pytest.fixture
def devices_page(chromium: Browser, service: WanliService, artifacts: Path) -> Iterator[DevicesPage]:
    with watched_page(chromium, DevicesPage, service.http_url, artifacts, DESK, signed_in_session(service)) as page:
        yield page


def test_the_quarantine_counts_and_filters_by_reason(devices_page: DevicesPage, service: WanliService) -> None:
    with httpx.Client(base_url=service.http_url, headers=auth_headers(service), timeout=5) as client:
        client.post("/api/devices", json={"device_id": "SD-OLD-1", "kind": "smoke_detector"}).raise_for_status()
        client.post("/api/devices/SD-OLD-1/retire", json={"reason": "拆除"}).raise_for_status()
    assert service.broker is not None
    body = b'{"v":1,"ts":%d,"seq":1,"type":"alarm"}' % now_ms()
    publish(service.broker.host, service.broker.port, [
        (device_topic("wanli", "smoke_detector", "SD-STRANGER-1", MessageClass.EVENT), body),
        (device_topic("wanli", "smoke_detector", "SD-STRANGER-2", MessageClass.EVENT), body),
        (device_topic("wanli", "smoke_detector", "SD-OLD-1", MessageClass.EVENT), body),
    ])
    wait_for(lambda: len(service.services.dead_letters.quarantined()) == 3)

    devices_page.open("quarantine")
    page = devices_page.page
    rows = page.locator("#quarantine-rows > tr")
    expect(rows).to_have_count(3)
    buttons = page.locator("#quarantine-filter button")
    expect(buttons.locator("b")).to_have_text(["3", "2", "1", "0"])
    page.locator("#quarantine-filter button[data-reason=retired_device]").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-device-id", "SD-OLD-1")
    expect(page.locator("#quarantine-filter button[data-reason=retired_device]")).to_have_attribute("aria-pressed", "true")
    page.locator("#quarantine-filter button[data-reason=unregistered_device]").click()
    expect(rows).to_have_count(2)
    page.locator("#quarantine-filter button[data-reason=kind_mismatch]").click()
    expect(rows).to_have_count(0)
    expect(page.locator("#quarantine-empty")).to_be_visible()
    page.locator("#quarantine-filter button[data-reason='']").click()
    expect(rows).to_have_count(3)
    devices_page.screenshot("devices-quarantine.png", full_page=False)
