"""Issue 15's browser attacks in real Chromium: a page on another loopback port (same site, another origin:
Grafana on :3000, say) tries to make the signed-in maintainer's browser import devices and rotate a device's
broker credentials, and to frame the pages. All refused; the pages' own requests still pass, under the CSP.

The service's session cookie is SameSite=Strict, and 127.0.0.1:other-port is the same site, so the browser
does send it with these requests: only the CSRF checks (tests/reliability/test_attacks.py, docs/access.md)
stand between them and the change, which is what these tests show.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from devices.credentials import CredentialStore
from tests.browser.conftest import DESK, WatchedPage, signed_in_session, watched_page
from tests.fixtures.service import accounts, auth_headers, wait_for
from wanli.runtime import WanliService

pytestmark = pytest.mark.browser

DEVICE = "SD-XQ01-0101"
EVIL = "SD-EVIL-0001"

ATTACK_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>看板</title></head><body>
<h1>Grafana?</h1>
<iframe name="sink" id="sink" width="300" height="100"></iframe>
<form id="rotate" method="POST" action="{service}/api/devices/{device}/credentials" enctype="text/plain" target="sink">
  <input name="x" value="y">
</form>
<iframe id="framed" src="{service}/ops/login.html" width="300" height="200"></iframe>
<script>
(async () => {{
  try {{
    await fetch("{service}/api/devices/import", {{
      method: "POST", mode: "no-cors", credentials: "include", headers: {{"content-type": "text/plain"}},
      body: "device_id,kind,building_id,floor,unit\\n{evil},smoke_detector,xq-01,1,0101\\n"}});
  }} catch (e) {{}}
  document.getElementById("rotate").submit();
  document.title = "sent";
}})();
</script>
</body></html>
"""


@pytest.fixture
def attacker_origin(service: WanliService) -> Iterator[str]:
    """The attacker's page, served by a small HTTP server on another loopback port."""
    page = ATTACK_PAGE.format(service=service.http_url, device=DEVICE, evil=EVIL).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="attacker-page", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def refused_csrf(service: WanliService) -> float:
    text = httpx.get(f"{service.http_url}/metrics").text
    line = next((ln for ln in text.splitlines() if ln.startswith('wanli_access_refused_total{reason="csrf"}')), "")
    return float(line.split()[-1]) if line else 0.0


def test_a_page_of_another_origin_cannot_change_anything_or_frame_the_pages(
        chromium: Browser, service: WanliService, building, artifacts: Path, attacker_origin: str) -> None:
    admin = httpx.Client(base_url=service.http_url, timeout=10, headers=auth_headers(service))
    try:
        admin.post(f"/api/devices/{DEVICE}/credentials").raise_for_status()  # the device is on the air
        credentials = CredentialStore(service.services.engine)
        before_hashes = credentials.active_hashes()
        before = refused_csrf(service)
        with watched_page(chromium, WatchedPage, service.http_url, artifacts, DESK,
                          signed_in_session(service)) as victim:
            victim.tolerate(r"ERR_BLOCKED_BY_RESPONSE|Refused to (display|frame)|frame-ancestors|X-Frame-Options|"
                            r"Failed to load resource.*403")
            # The maintainer, signed in, has the devices page open; then visits the other page on this host.
            victim.page.goto(f"{service.http_url}/ops/devices.html")
            # Not wait_for_function: a string predicate is eval'd, which the page's CSP (no 'unsafe-eval') refuses.
            expect(victim.page.locator("body")).to_have_attribute("data-roles", re.compile(r".*"))
            attack = victim.page.context.new_page()
            attack.on("console", lambda _msg: None)
            attack.goto(attacker_origin)
            expect(attack).to_have_title("sent")
            wait_for(lambda: refused_csrf(service) >= before + 2, 10)  # both requests reached the service ...
            assert admin.get(f"/api/devices/{EVIL}").status_code == 404  # ... and nothing was imported
            assert credentials.active_hashes() == before_hashes  # nor rotated: the device stays on the air
            # Framing the pages (clickjacking) is refused too: the frame never shows the login page
            framed = next(f for f in attack.frames if f.name != "sink" and f != attack.main_frame
                          and f.url != "about:blank" and "sink" not in f.url)
            assert framed.url.startswith("chrome-error://") or framed.evaluate("document.body.innerText") == ""
            attack.screenshot(path=artifacts / "csrf-attack-page.png")
            attack.close()

            # The legitimate path: the pages' own requests carry the session's token (session.js) and pass
            status = victim.page.evaluate("""async () => (await fetch('/api/devices', {method: 'POST',
                headers: {'content-type': 'application/json'},
                body: JSON.stringify({device_id: 'SD-XQ01-9901', kind: 'smoke_detector', building_id: 'xq-01',
                                      floor: 1, unit: '0199'})})).status""")
            assert status == 201
            rotated = victim.page.evaluate(f"async () => (await fetch('/api/devices/{DEVICE}/credentials', "
                                           "{method: 'POST'})).status")
            assert rotated == 201 and credentials.active_hashes()[DEVICE] != before_hashes[DEVICE]
        assert admin.get("/api/devices/SD-XQ01-9901").status_code == 200
    finally:
        admin.close()


def test_a_person_told_to_choose_a_new_password_chooses_one_on_the_login_page(
        chromium: Browser, service: WanliService, artifacts: Path) -> None:
    store = accounts(service)
    store.add_user("wangfang", "correct horse battery", ["operator"], 0, display_name="值班员 王芳")
    store.update_user("wangfang", 0, must_change_password=True)
    with watched_page(chromium, WatchedPage, service.http_url, artifacts, DESK) as visitor:
        visitor.tolerate(r"status of 422")  # the weak password's refusal, logged by the browser
        page = visitor.page
        page.goto(f"{service.http_url}/ops/devices.html")
        page.locator("#username").fill("wangfang")
        page.locator("#password").fill("correct horse battery")
        page.locator("#login-submit").click()
        expect(page.locator("#new-password h2")).to_have_text("请设置新密码")
        page.locator("#new-password-1").fill("password1234")
        page.locator("#new-password-2").fill("password1234")
        page.locator("#new-password-submit").click()
        expect(page.locator("#new-password-error")).to_contain_text("常见")
        visitor.screenshot("login-new-password-refused.png")
        page.locator("#new-password-1").fill("Xq-night-shift-47")
        page.locator("#new-password-2").fill("Xq-night-shift-47")
        page.locator("#new-password-submit").click()
        expect(page).to_have_url(re.compile(r"/ops/devices\.html$"))
        expect(page.locator("#whoami .name")).to_have_text("值班员 王芳")
    assert not store.user("wangfang").must_change_password
