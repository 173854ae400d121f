"""Fixtures for the browser tests: headless Chromium on the pages of an in-process service.

Each test gets a fresh service (``service_factory`` from tests/fixtures/service.py; it starts in a
fraction of a second) and, through ``building``, the 香泉 1号楼 devices registered. One Chromium
serves the whole session (Playwright's sync API runs one instance per thread); each test gets its
own browser context and page, and fails if that page logged an error, threw, or opened a native
dialog (``alert()``/``confirm()`` would block a wall screen nobody is sitting at).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Locator, Page, ViewportSize, expect, sync_playwright

from simulators.building import BuildingSimulation
from tests.fixtures.service import ServiceFactory, register_building
from wanli.runtime import WanliService

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # git-ignored

# Debian's Chromium: Playwright cannot download its own browser here.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
WALL = ViewportSize(width=1600, height=900)  # a wall screen in the ops centre
DESK = ViewportSize(width=1600, height=1000)  # a maintainer's desk monitor


class WatchedPage:
    """One browser page, and everything it complained about: console errors, uncaught exceptions,
    native dialogs. The fixture that made it fails the test if any are left at the end."""

    def __init__(self, page: Page, base_url: str, artifacts: Path) -> None:
        self.page = page
        self.base_url = base_url
        self.artifacts = artifacts
        self.problems: list[str] = []
        self._tolerated: list[re.Pattern[str]] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self._problem(f"page error: {exc}"))
        page.on("dialog", self._on_dialog)

    def screenshot(self, name: str, full_page: bool = True) -> Path:
        path = self.artifacts / name
        self.page.screenshot(path=path, full_page=full_page, animations="disabled")
        return path

    def tolerate(self, pattern: str) -> None:
        """A problem the test provokes on purpose (e.g. the stream failing while the server is down)."""
        self._tolerated.append(re.compile(pattern))

    def take_problems(self) -> list[str]:
        """The problems so far, which the test now answers for (so teardown does not report them again)."""
        taken, self.problems = self.problems, []
        return taken

    def _problem(self, text: str) -> None:
        if not any(p.search(text) for p in self._tolerated):
            self.problems.append(text)

    def _on_console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self._problem(f"console error: {msg.text} ({msg.location.get('url', '')})")

    def _on_dialog(self, dialog: Dialog) -> None:
        self._problem(f"dialog: {dialog.message}")  # the pages have their own; a native one is a bug
        dialog.dismiss()


class OpsScreen(WatchedPage):
    """The operations screen (the wall)."""

    def __init__(self, page: Page, base_url: str, artifacts: Path) -> None:
        super().__init__(page, base_url, artifacts)
        self.url = base_url + "/ops/"
        self.rows = page.locator("#incidents > tr")
        self.link = page.locator("#link")

    def open(self) -> None:
        """Load the screen and wait until its live stream is connected."""
        self.page.goto(self.url)
        expect(self.link).to_have_class("link up")

    def row(self, incident_id: str) -> Locator:
        return self.page.locator(f"#incidents > tr#inc-{incident_id}")


W = TypeVar("W", bound=WatchedPage)


@contextmanager
def watched_page(browser: Browser, kind: Callable[[Page, str, Path], W], base_url: str, artifacts: Path,
                 viewport: ViewportSize = WALL) -> Iterator[W]:
    """A page in its own browser context; on exit, asserts the page reported no problem."""
    context = browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai")
    try:
        watched = kind(context.new_page(), base_url, artifacts)
        yield watched
    finally:
        # Closed before the service stops, so an open event stream does not hold up the server's shutdown.
        context.close()
    assert watched.problems == [], f"the page reported problems: {watched.problems}"


def ops_screen(browser: Browser, base_url: str, artifacts: Path) -> AbstractContextManager[OpsScreen]:
    """A wall-sized page on the operations screen of the service at ``base_url``."""
    return watched_page(browser, OpsScreen, base_url, artifacts, WALL)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def artifacts() -> Path:
    """``test-artifacts/`` at the repository root: screenshots and measurements."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def service(service_factory: ServiceFactory) -> WanliService:
    return service_factory()


@pytest.fixture
def building(service: WanliService) -> BuildingSimulation:
    """香泉居民区 香泉 1号楼, every device registered."""
    return register_building(service)


@pytest.fixture
def ops(chromium: Browser, service: WanliService, artifacts: Path) -> Iterator[OpsScreen]:
    with ops_screen(chromium, service.http_url, artifacts) as screen:
        yield screen
