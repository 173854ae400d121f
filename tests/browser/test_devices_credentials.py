"""Bulk credentials from the maintainers' device page, in real Chromium, against a service managing a real Mosquitto.

The maintainer narrows the list (a building's smoke detectors), presses 批量发放接入凭据, confirms, and the
page saves the CSV of passwords (the only copy) and says when the broker has confirmed them; a device from the
file then logs in.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from devices.credentials import INGEST_ACCOUNT, BrokerAuthFiles
from tests.browser.conftest import DESK, signed_in_session, watched_page
from tests.browser.test_devices_page import DevicesPage, choose_place
from tooling.local_servers import secured_mosquitto
from tests.fixtures.servers import MosquittoServer
from tests.fixtures.service import ServiceFactory, register_building
from tests.integration.test_broker_acl import logged_in, refusal
from wanli.runtime import WanliService

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[MosquittoServer, BrokerAuthFiles, Path, str]]:
    with secured_mosquitto(tmp_path) as b:
        yield b.server, b.files, b.pid_file, b.ingest_password


@pytest.fixture
def managed(service_factory: ServiceFactory, broker: tuple[MosquittoServer, BrokerAuthFiles, Path, str]) -> WanliService:
    server, files, pid_file, ingest_password = broker
    return service_factory(mqtt_url=server.url, mqtt_password=ingest_password, mqtt_client_id=INGEST_ACCOUNT.username,
                           broker_auth_dir=files.directory, broker_pid_file=pid_file)


def test_bulk_credentials_for_a_building_s_smoke_detectors_are_saved_once_and_confirmed(
        chromium: Browser, managed: WanliService, broker: tuple[MosquittoServer, BrokerAuthFiles, Path, str],
        artifacts: Path) -> None:
    server = broker[0]
    register_building(managed)
    with watched_page(chromium, DevicesPage, managed.http_url, artifacts, DESK, signed_in_session(managed)) as devices:
        devices.open()
        page = devices.page
        choose_place(page, "f", "xiangquan", "xq-01")
        page.locator("#f-kind").select_option("smoke_detector")
        expect(devices.rows).to_have_count(72)

        page.locator("#bulk-credentials").click()
        dialog = page.locator("#credentials-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#credentials-scope")).to_have_text("烟感探测器 · 香泉 1号楼")
        expect(page.locator("#credentials-count")).to_have_text("72")
        expect(page.locator("#credentials-submit")).to_be_disabled()  # not without the confirmation
        page.locator("#credentials-confirm").check()
        with page.expect_download() as download_info:
            page.locator("#credentials-submit").click()
        download = download_info.value
        expect(page.locator("#credentials-result")).to_contain_text("已生效：设备现在可以用新凭据连接")
        devices.screenshot("devices-bulk-credentials.png", full_page=False)

        assert download.suggested_filename == "设备接入凭据-烟感探测器-香泉 1号楼.csv"
        rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text("utf-8"))))
        assert len(rows) == 72 and {r["username"].rsplit("/", 1)[0] for r in rows} == {"wanli/smoke_detector"}
        with logged_in(server, rows[0]["username"], rows[0]["password"]):
            pass

        dialog.locator("[data-close]").click()
        expect(dialog).to_be_hidden()
        expect(page.locator("#credentials-download")).to_be_hidden()  # the page keeps no copy once closed
    assert refusal(server, rows[0]["device_id"], rows[0]["password"]).is_failure  # the bare id is no login
