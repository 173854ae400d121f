"""The API's docs (/docs, /redoc) work with no internet: with every request outside the service refused, as on
an operations centre's network, both render the service's own API."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route, expect

from tests.browser.conftest import DESK, WatchedPage, watched_page
from wanli.runtime import WanliService

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(("path", "ready"), [("/docs", ".swagger-ui .opblock-tag"), ("/redoc", ".menu-content")])
def test_the_api_docs_render_from_the_service_alone(
    chromium: Browser, service: WanliService, artifacts: Path, path: str, ready: str,
) -> None:
    with watched_page(chromium, WatchedPage, service.http_url, artifacts, DESK) as docs:
        refused: list[str] = []

        def no_internet(route: Route) -> None:
            if route.request.url.startswith((service.http_url, "data:", "blob:")):
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort("internetdisconnected")

        docs.page.context.route("**/*", no_internet)
        docs.tolerate(r"logo-mini\.svg")  # ReDoc's footer logo from its maker's CDN: refused, and nothing else
        response = docs.page.goto(service.http_url + path)
        assert response is not None and "default-src 'self'" in response.headers["content-security-policy"]
        expect(docs.page.locator(ready).first).to_be_visible(timeout=15_000)
        expect(docs.page.get_by_text("incidents").first).to_be_visible()
        assert all("logo-mini.svg" in url for url in refused), refused
        docs.screenshot(f"api{path.replace('/', '-')}.png", full_page=False)
