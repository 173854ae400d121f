"""The escalation policies page in real Chromium (issue 16): an administrator edits a deadline, sees the dry-run
(the scenario library replayed under both versions), applies it, and it takes effect at once on an open incident,
audited with the account's name. Screenshots at 1920x1080."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ViewportSize, expect

from tests.browser.conftest import WatchedPage, api_json, first_alarm, watched_page
from tests.fixtures.service import ServiceFactory, accounts, now_ms, register_building, wait_for
from wanli.runtime import WanliService

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FULL_HD = ViewportSize(width=1920, height=1080)
ADMIN, ADMIN_NAME = "zhaolei", "管理员 赵磊"


@pytest.fixture
def service(service_factory: ServiceFactory) -> WanliService:
    return service_factory()


@pytest.fixture
def admin(chromium: Browser, service: WanliService, artifacts: Path) -> Iterator[WatchedPage]:
    store = accounts(service)
    store.add_user(ADMIN, "browser-test-password", ["admin"], now_ms(), display_name=ADMIN_NAME)
    session = store.open_session(store.user(ADMIN), now_ms())
    with watched_page(chromium, WatchedPage, service.http_url, artifacts, FULL_HD, session=session) as page:
        yield page


def test_a_deadline_changed_on_the_page_is_dry_run_then_applied_at_once_and_audited(
        admin: WatchedPage, service: WanliService) -> None:
    building = register_building(service)
    _, incident_id = first_alarm(service, building)  # a smoke alarm: policy "fire", its first step's 60 s running
    opened = api_json(service, f"/api/incidents/{incident_id}")
    assert opened["escalation_policy"] == "fire" and opened["escalation_step"] == 0

    page = admin.page
    page.goto(f"{admin.base_url}/ops/policies.html")
    expect(page.locator("#current")).to_contain_text("第 1 版")
    expect(page.locator("#versions tbody tr")).to_have_count(1)
    document = json.loads(page.locator("#draft").input_value())
    assert document["policies"]["fire"]["steps"][0]["ack_within_s"] == 60

    # a draft that does not validate: refused with what is wrong, and nothing can be applied
    admin.tolerate(r"status of 422")
    broken = json.loads(json.dumps(document))
    broken["policies"]["fire"]["steps"][0]["roles"] = ["night_watchman"]
    page.locator("#draft").fill(json.dumps(broken, ensure_ascii=False, indent=2))
    page.get_by_role("button", name="检查").click()
    expect(page.locator("#message")).to_contain_text("unknown role night_watchman")
    expect(page.get_by_role("button", name="应用")).to_be_disabled()

    # the fire policy's first step: 60 s → 10 s; dry-run first
    document["policies"]["fire"]["steps"][0]["ack_within_s"] = 10
    page.locator("#draft").fill(json.dumps(document, ensure_ascii=False, indent=2))
    page.locator("#comment").fill("夜间烟感先行升级")
    page.get_by_role("button", name="试运行").click()
    expect(page.locator("#message")).to_contain_text("试运行完成", timeout=60_000)
    expect(page.locator("#changes")).to_contain_text("fire 第1级：确认时限 60 s → 10 s")
    earlier = page.locator("#differences tbody tr", has_text="station_slow_ack").filter(has_text="提前")
    expect(earlier.first).to_be_visible()
    expect(earlier.first).to_contain_text("60 秒")  # the step that fired after a minute…
    expect(earlier.first).to_contain_text("10 秒")  # …fires after ten seconds under the draft
    expect(page.locator("#stories tbody tr", has_text="real_fire_spreading")).to_be_visible()
    admin.screenshot("policies-dry-run.png", full_page=False)
    assert api_json(service, "/api/policies")["version"] == 1  # a dry-run stores nothing

    page.get_by_role("button", name="应用").click()
    expect(page.locator("#message")).to_contain_text("已应用第 2 版")
    expect(page.locator("#current")).to_contain_text("第 2 版")
    row = page.locator("#versions tbody tr", has_text="第 2 版")
    expect(row).to_contain_text(ADMIN)
    expect(row).to_contain_text("第 1 版")
    expect(row).to_contain_text("fire 第1级：确认时限 60 s → 10 s")
    expect(row).to_contain_text("夜间烟感先行升级")
    admin.screenshot("policies-applied.png", full_page=False)

    # at once for the open incident: its deadline follows the new version, and it climbs 10 s after it opened
    rebased = api_json(service, f"/api/incidents/{incident_id}")
    assert any(a["action"] == "policy" and "第 2 版" in a["note"] for a in rebased["audit"])
    wait_for(lambda: api_json(service, f"/api/incidents/{incident_id}")["escalation_step"] >= 1, timeout_s=20)
    opened_ms = service.services.incidents.get(incident_id).opened_ms
    escalated_ms = next(a.at_ms for a in service.services.incidents.audit(incident_id) if a.action == "escalate")
    assert 10_000 <= escalated_ms - opened_ms < 15_000  # not 60 s: the new version's 10 s
    versions = api_json(service, "/api/policies/versions")
    assert [v["version"] for v in versions] == [2, 1] and ADMIN in versions[0]["actor"]
