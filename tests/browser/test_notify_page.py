"""The notifications page in real Chromium: an incident's attempts and answers (the drill of issue 22),
a person's contact points edited and tested, a rule edited. Screenshot at 1920x1080."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ViewportSize, expect

from tests.browser.conftest import WatchedPage, signed_in_session, watched_page
from tests.fixtures.notify_servers import ContractServer, GammuDaemon, contract_server, gammu_smsd  # noqa: F401
from tests.fixtures.service import ServiceFactory, wait_for
from tests.integration.test_notify_drill import CALLBACK, FAMILY, LEADER, configure, press, start
from wanli.runtime import WanliService

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FULL_HD = ViewportSize(width=1920, height=1080)


@pytest.fixture
def service(service_factory: ServiceFactory, contract_server: ContractServer, gammu_smsd: GammuDaemon) -> WanliService:
    return start(service_factory, contract_server, gammu_smsd)


@pytest.fixture
def operator(chromium: Browser, service: WanliService, artifacts: Path) -> Iterator[WatchedPage]:
    with watched_page(chromium, WatchedPage, service.http_url, artifacts, FULL_HD,
                      session=signed_in_session(service)) as page:
        yield page


def test_the_incidents_attempts_and_answers_on_the_page(operator: WatchedPage, service: WanliService,
                                                        service_factory: ServiceFactory,
                                                        contract_server: ContractServer) -> None:
    configure(service_factory, service)
    incident_id = press(service)
    calls = wait_for(lambda: len(contract_server.of("aliyunvoice")) >= 2 and contract_server.of("aliyunvoice"), 15)
    family_call = next(c["params"] for c in calls if c["params"]["CalledNumber"] == "13600000001")
    service_factory.anonymous(service).post(f"/api/notify/callbacks/aliyun/voice/{CALLBACK}", json=[
        {"out_id": family_call["OutId"], "status_code": "200000", "dtmf": "1"}])

    page = operator.page
    page.goto(f"{operator.base_url}/ops/notify.html#incident={incident_id}")
    table = page.locator("#attempts")
    expect(table).to_be_visible()
    family_sms = table.locator("tr", has_text=FAMILY).filter(has_text="短信")
    expect(family_sms.locator(".status")).to_have_text("已送达", timeout=10_000)
    expect(table.locator("tr", has_text=FAMILY).filter(has_text="电话").locator(".status")).to_have_text("已应答")
    expect(table.locator("tr", has_text=FAMILY).filter(has_text="电话")).to_contain_text("收到（电话按键）")
    expect(table.locator("tr", has_text=LEADER).filter(has_text="企业微信").locator(".status")).to_have_text("已送达")
    expect(page.locator("#incident-summary")).to_contain_text("一键通紧急呼叫")
    operator.screenshot("notify-incident-attempts.png", full_page=False)

    # a person's contact points edited on the page, and tested
    row = page.locator("#people tr", has_text="女儿 刘芳")
    row.locator("textarea").fill("email liufang@example.org")
    row.get_by_role("button", name="保存").click()
    expect(page.locator("#message")).to_have_text("已保存 女儿 刘芳 的联系方式")
    expect(page.locator("#people tr", has_text="女儿 刘芳")).to_contain_text("email liufang@example.org")
    page.locator("#people tr", has_text=LEADER).get_by_role("button", name="测试").click()
    expect(page.locator("#test-result")).to_contain_text("成功  企业微信")
    expect(page.locator("#test-result")).to_contain_text("成功  短信")

    page.locator("#rule-role").fill("property")
    page.locator("#rule-urgency").select_option("high")
    page.locator("#rule-steps").fill("0:wecom|email; 300:voice")
    page.get_by_role("button", name="新增或修改规则").click()
    expect(page.locator("#message")).to_have_text("已保存规则 property/high")
    rule = page.locator("#rules tr", has_text="property").filter(has_text="重要")
    expect(rule).to_contain_text("已修改")
    expect(rule.locator("input")).to_have_value("0:wecom|email; 300:voice")
    operator.tolerate(r"status of 422")
    page.locator("#rule-role").fill("nobody")
    page.get_by_role("button", name="新增或修改规则").click()
    expect(page.locator("#message")).to_contain_text("未知角色")
