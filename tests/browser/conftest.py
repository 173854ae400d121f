"""Fixtures for the browser tests: headless Chromium on the pages of an in-process service.

Each test gets a fresh service (``service_factory`` from tests/fixtures/service.py; it starts in a
fraction of a second) and, through ``building``, the 香泉 1号楼 devices registered. One Chromium
serves the whole session (Playwright's sync API runs one instance per thread); each test gets its
own browser context and page, and fails if that page logged an error, threw, or opened a native
dialog (``alert()``/``confirm()`` would block a wall screen nobody is sitting at). The helpers
below drive the service as devices and other operators would (``send``, ``act``) and read
what it did (``active_incident_id``, ``audit_actions``, ``api_json``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Locator,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from dashboards.auth import SESSION_COOKIE
from devices.kinds.charging_station.simulator import ChargingStationSim
from devices.kinds.elderly_alarm.simulator import ElderlyAlarmSim
from devices.kinds.smoke_detector.simulator import SmokeDetectorSim
from simulators.building import BuildingSimulation
from simulators.devices.base import Publication
from tests.fixtures.service import (
    ServiceFactory,
    accounts,
    auth_headers,
    now_ms,
    publish,
    register_building,
    wait_for,
)
from wanli.runtime import WanliService

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # git-ignored

# Debian's Chromium: Playwright cannot download its own browser here.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
WALL = ViewportSize(width=1600, height=900)  # a wall screen in the ops centre
DESK = ViewportSize(width=1600, height=1000)  # a maintainer's desk monitor

# The person signed in on the pages (an operator who also looks after devices), and how the trail names them.
PERSON, PERSON_NAME = "wangfang", "值班员 王芳"
PERSON_ACTOR = f"{PERSON_NAME}（{PERSON}）"


def signed_in_session(service: WanliService) -> str:
    """A session of the pages' person on this service (their account is made the first time): the cookie's value."""
    store = accounts(service)
    if not any(u.username == PERSON for u in store.users()):
        store.add_user(PERSON, "browser-test-password", ["operator", "maintainer", "tester"], now_ms(),
                       display_name=PERSON_NAME)
    return store.open_session(store.user(PERSON), now_ms())


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

    def sign_in(self, session_id: str) -> None:
        """Give this page's browser context the session cookie, as signing in on the login page would."""
        self.page.context.add_cookies([{"name": SESSION_COOKIE, "value": session_id, "url": self.base_url,
                                        "httpOnly": True, "sameSite": "Strict"}])

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


# Records, in the page's own clock, when each incident row first enters the table: the moment
# the operator could see it, however often the test happens to poll.
WATCH_ROWS = """() => {
  window.rowSeenAt = {};
  new MutationObserver(() => {
    for (const tr of document.querySelectorAll("#incidents > tr")) window.rowSeenAt[tr.id] ??= Date.now();
  }).observe(document.getElementById("incidents"), { childList: true });
}"""

SCREEN_TIMEOUT_MS = 5_000  # an alarm slower than this to reach the wall is a failure in itself


def step_button(row: Locator) -> Locator:
    """A wall row's button for the next step of the closed loop (确认, 派单, 到场 …)."""
    return row.locator("button.step")


# --- the service, as the devices and other operators drive it -------------------------------------------


def send(service: WanliService, *messages: Publication) -> None:
    """Publish as the devices would (QoS 1); returns once the broker has acknowledged."""
    assert service.broker is not None, "the browser tests run against the embedded broker"
    publish(service.broker.host, service.broker.port, list(messages))


def active_incident_id(service: WanliService, device_id: str) -> str:
    """The device's own active incident (not a building's it belongs to), once the service has opened it."""
    def find() -> str | None:
        found = [i.id for i in service.services.alerts.active() if i.device_id == device_id and not i.scope]
        assert len(found) <= 1, found
        return found[0] if found else None
    return wait_for(find, timeout_s=SCREEN_TIMEOUT_MS / 1000)


def first_alarm(service: WanliService, building: BuildingSimulation) -> tuple[SmokeDetectorSim, str]:
    """The building's first detector (1层 0101室) alarming, and its incident's id once the service has opened it."""
    detector = building.smoke_detectors()[0]
    send(service, detector.alarm(now_ms()))
    return detector, active_incident_id(service, detector.device_id)


def alarm_on_the_wall(ops: OpsScreen, service: WanliService, building: BuildingSimulation) -> tuple[str, Locator]:
    """The wall opened, then the first detector alarming: its incident's id, and its row on the wall."""
    ops.open()
    _, incident_id = first_alarm(service, building)
    return incident_id, ops.row(incident_id)


def elderly_alarm(building: BuildingSimulation) -> ElderlyAlarmSim:
    return next(p.device for p in building.placed if isinstance(p.device, ElderlyAlarmSim))


def charging_station(building: BuildingSimulation) -> ChargingStationSim:
    return next(p.device for p in building.placed if isinstance(p.device, ChargingStationSim))


def api_json(service: WanliService, path: str) -> Any:
    """What the API answers to a GET (as an admin token)."""
    with httpx.Client(base_url=service.http_url, timeout=5, headers=auth_headers(service)) as client:
        return client.get(path).raise_for_status().json()


def act(service: WanliService, incident_id: str, *actions: str, actor: str = "测试") -> None:
    """Act on an incident through the API, as another operator would."""
    with httpx.Client(base_url=service.http_url, timeout=5, headers=auth_headers(service, "operator")) as client:
        for action in actions:
            client.post(f"/api/incidents/{incident_id}/actions",
                        json={"action": action, "actor": actor}).raise_for_status()


def audit_actions(service: WanliService, incident_id: str) -> list[tuple[str, str, str | None, str]]:
    """The incident's trail as (action, actor, from, to)."""
    audit = api_json(service, f"/api/incidents/{incident_id}")["audit"]
    return [(a["action"], a["actor"], a["from_state"], a["to_state"]) for a in audit]


W = TypeVar("W", bound=WatchedPage)


@contextmanager
def watched_page(browser: Browser, kind: Callable[[Page, str, Path], W], base_url: str, artifacts: Path,
                 viewport: ViewportSize = WALL, session: str = "") -> Iterator[W]:
    """A page in its own browser context (signed in with ``session`` if given); on exit, asserts the
    page reported no problem."""
    context = browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai")
    try:
        watched = kind(context.new_page(), base_url, artifacts)
        if session:
            watched.sign_in(session)
        yield watched
    finally:
        # Closed before the service stops, so an open event stream does not hold up the server's shutdown.
        context.close()
    assert watched.problems == [], f"the page reported problems: {watched.problems}"


def ops_screen(browser: Browser, base_url: str, artifacts: Path, session: str = "") -> AbstractContextManager[OpsScreen]:
    """A wall-sized page on the operations screen of the service at ``base_url``."""
    return watched_page(browser, OpsScreen, base_url, artifacts, WALL, session)


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
    with ops_screen(chromium, service.http_url, artifacts, signed_in_session(service)) as screen:
        yield screen
