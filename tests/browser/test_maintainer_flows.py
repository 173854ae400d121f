"""The maintainers' wishes of issue 16 on the device page, in real Chromium: a CSV saved by Chinese Excel (GBK)
imported, a retired device in it left retired and listed, the rejected rows downloaded as a CSV, credentials for
the import batch and for one device with the broker's address, devices found by part of their id, and no 操作人
box (the history names the signed-in account). Screenshots at 1920x1080."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ViewportSize, expect

from tests.browser.conftest import PERSON_ACTOR, signed_in_session, watched_page
from tests.browser.test_devices_page import DevicesPage
from tests.fixtures.service import ServiceFactory, now_ms, register_building
from wanli.runtime import WanliService

pytestmark = pytest.mark.browser

FULL_HD = ViewportSize(width=1920, height=1080)
BROKER = "mqtts://mqtt.wanli.example:8883"
FILE = ("device_id,kind,building_id,floor,unit,label\r\n"
        "SD-XQ02-0101,smoke_detector,xq-02,1,0101,香泉2号楼 101 厨房\r\n"
        "SD-XQ01-0102,smoke_detector,xq-01,1,0102,香泉1号楼 102 厨房\r\n"
        "SD-XQ02-0301,smoke_detector,xq-99,3,0301,写错的楼栋\r\n")


@pytest.fixture
def service(service_factory: ServiceFactory) -> WanliService:
    return service_factory(device_broker_url=BROKER)


@pytest.fixture
def devices(chromium: Browser, service: WanliService, artifacts: Path) -> Iterator[DevicesPage]:
    with watched_page(chromium, DevicesPage, service.http_url, artifacts, FULL_HD, signed_in_session(service)) as page:
        yield page


def test_gbk_import_retired_rows_rejected_file_batch_credentials_and_search(
        devices: DevicesPage, service: WanliService, tmp_path: Path) -> None:
    register_building(service)
    service.services.registry.retire("SD-XQ01-0102", "test", now_ms(), "被盗")
    gbk = tmp_path / "设备导入.csv"
    gbk.write_bytes(FILE.encode("gbk"))  # what Chinese Excel's "CSV（逗号分隔）" writes

    devices.open("import")
    page = devices.page
    expect(page.locator("#operator")).to_have_count(0)  # no 操作人 box: the signed-in account is the actor
    page.locator("#import-file").set_input_files(str(gbk))
    page.locator("#import-start").click()
    expect(page.locator("#sum-created")).to_have_text("1")
    expect(page.locator("#sum-retired")).to_have_text("1")
    expect(page.locator("#sum-rejected")).to_have_text("1")
    expect(page.locator("#sum-reactivated")).to_have_text("0")
    expect(page.locator("#import-encoding")).to_contain_text("GBK")
    expect(page.locator("#retired-rows tr[data-line='3']")).to_contain_text("SD-XQ01-0102")
    expect(page.locator("#retired-rows")).to_contain_text("该设备已退役，本次未重新启用")
    registry = service.services.registry
    assert registry.is_retired("SD-XQ01-0102")  # left retired
    assert registry.get("SD-XQ02-0101").label == "香泉2号楼 101 厨房"
    assert [h.actor for h in registry.history("SD-XQ02-0101")] == [PERSON_ACTOR]

    with page.expect_download() as got:
        page.locator("#rejected-download").click()
    rejected = Path(got.value.path()).read_text("utf-8-sig")
    rows = list(csv.reader(io.StringIO(rejected)))
    assert rows[0] == ["device_id", "kind", "building_id", "floor", "unit", "label", "原因 reason"]
    assert rows[1][:6] == ["SD-XQ02-0301", "smoke_detector", "xq-99", "3", "0301", "写错的楼栋"]
    assert rows[1][6].startswith("第 4 行：楼栋编号 xq-99 不存在") and len(rows) == 2
    devices.screenshot("maintainer-gbk-import.png", full_page=False)

    # credentials for the batch just imported: a file with the broker's address
    expect(page.locator("#import-credentials")).to_have_text("为本次导入的 1 台设备发放接入凭据")
    page.locator("#import-credentials").click()
    expect(page.locator("#credentials-count")).to_have_text("1")
    page.locator("#credentials-confirm").check()
    with page.expect_download() as got:
        page.locator("#credentials-submit").click()
    batch = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text("utf-8"))))
    assert [(r["device_id"], r["broker_url"]) for r in batch] == [("SD-XQ02-0101", BROKER)]
    assert got.value.suggested_filename == "设备接入凭据-导入批次.csv"
    page.locator("#credentials-dialog [data-close]").click()

    # search by id, and one device's credentials shown on the page
    devices.tab("list")
    page.locator("#f-q").fill("xq01-05")
    expect(devices.rows).to_have_count(4)  # 5层 0501–0504
    page.locator("#f-q").fill("sd-xq01-0501")
    expect(devices.rows).to_have_count(1)
    devices.row("SD-XQ01-0501").locator("[data-action=credentials]").click()
    expect(page.locator("#credentials-title")).to_have_text("发放接入凭据 SD-XQ01-0501")
    expect(page.locator("#credentials-count")).to_have_text("1")
    page.locator("#credentials-confirm").check()
    with page.expect_download():
        page.locator("#credentials-submit").click()
    shown = page.locator("#credentials-single")
    expect(shown.locator("[data-field=broker_url]")).to_have_text(BROKER)
    expect(shown.locator("[data-field=username]")).to_have_text("wanli/smoke_detector/SD-XQ01-0501")
    expect(shown.locator("[data-field=password]")).not_to_be_empty()
    devices.screenshot("maintainer-single-credentials.png", full_page=False)
