"""How fast the screens are with the whole street registered: page load to first useful render, and a
device's message to the screen. Measured in real headless Chromium against the whole service; the
figures are printed and written to test-artifacts/screens-timing.txt (docs/screens.md quotes them).

A measurement, not a speed test: it asserts only that every page rendered what it should, never a
time (speed targets live in benchmarks, which print figures).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page

from devices.hierarchy import hierarchy_from_dict
from devices.street_generator import generate_street
from simulators.building import BuildingSimulation
from tests.browser.conftest import (
    DESK,
    SCREEN_TIMEOUT_MS,
    WALL,
    WatchedPage,
    send,
    signed_in_session,
    watched_page,
)
from tests.fixtures.service import ServiceFactory, auth_headers, now_ms
from wanli.runtime import WanliService

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUNS = 5
UPDATES = 10
# Null-safe: they are asked from the first frame on, before the page has been parsed.
WALL_READY = ("() => document.querySelector('#link')?.classList.contains('up')"
              " && ['—', undefined].indexOf(document.getElementById('kpi-online-value')?.textContent) === -1"
              " && document.querySelectorAll('#incidents > tr').length >= window.expectedRows")
MAP_READY = ("() => document.querySelector('#link')?.classList.contains('up')"
             " && document.querySelectorAll('#plan g.building[data-state]').length === window.expectedBuildings")
PROFILE_READY = ("() => document.getElementById('content')?.hidden === false"
                 " && document.querySelector('#chart-battery svg, #chart-battery .chart-empty') !== null")
WATCH = """() => {
  window.seenAt = {};
  const note = () => {
    for (const tr of document.querySelectorAll('#incidents > tr')) window.seenAt[tr.id] ??= Date.now();
    for (const g of document.querySelectorAll('#plan g.building[data-state=incident], #plan g.building[data-state=critical]'))
      window.seenAt[g.id] ??= Date.now();
  };
  new MutationObserver(note).observe(document.body, { childList: true, subtree: true, attributes: true,
                                                      attributeFilter: ['data-state'] });
}"""


def load_ms(page: Page, url: str, ready: str, setup: str = "") -> float:
    """Milliseconds from the navigation's start to the first frame where ``ready`` holds (the page's own clock)."""
    if setup:
        page.add_init_script(setup)
    page.goto(url, wait_until="commit")
    page.wait_for_function(ready, polling="raf", timeout=60_000)
    return float(page.evaluate("() => performance.now()"))


def figures(values: list[float]) -> str:
    return f"median {statistics.median(values):.0f} ms, min {min(values):.0f} ms, max {max(values):.0f} ms (n={len(values)})"


def timed(call: Callable[[], object], runs: int = RUNS) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        out.append((time.perf_counter() - t) * 1000)
    return out


def test_screen_load_and_update_times_with_the_whole_street(
    chromium: Browser, service_factory: ServiceFactory, tmp_path: Path, artifacts: Path,
) -> None:
    street = generate_street(seed=0)
    (tmp_path / "street.json").write_text(json.dumps(street, ensure_ascii=False), "utf-8")
    service: WanliService = service_factory(hierarchy_file=tmp_path / "street.json")
    hierarchy = hierarchy_from_dict(street)
    sims = [BuildingSimulation(b, seed=n) for n, b in enumerate(hierarchy.buildings.values())]
    started = time.perf_counter()
    for sim in sims:
        service.services.registry.register_many(sim.records(), actor="timing", now_ms=now_ms())
    registering_s = time.perf_counter() - started
    devices = service.services.registry.count()
    # Ten open incidents on the wall, in ten buildings; heartbeats from the first buildings' devices.
    send(service, *(sim.smoke_detectors()[0].alarm(now_ms()) for sim in sims[:10]))
    send(service, *(d.heartbeat(now_ms()) for sim in sims[:40] for d in sim.smoke_detectors()))
    deadline = time.monotonic() + 30
    while len(service.services.alerts.active()) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    open_rows = len([i for i in service.services.alerts.active()])
    assert open_rows >= 10

    lines = [(f"street: {len(hierarchy.buildings)} buildings, {devices} devices registered "
              f"(registration took {registering_s:.1f} s), {open_rows} open incidents")]
    with httpx.Client(base_url=service.http_url, headers=auth_headers(service), timeout=30) as client:
        tall = max(hierarchy.buildings.values(), key=lambda b: b.floors * b.units_per_floor)
        for name, path in (("GET /api/map", "/api/map"), ("GET /api/kpi", "/api/kpi"),
                           (f"GET /api/buildings/{tall.id}/profile", f"/api/buildings/{tall.id}/profile"),
                           (f"GET /api/buildings/{tall.id}/telemetry", f"/api/buildings/{tall.id}/telemetry")):
            client.get(path).raise_for_status()  # warm
            lines.append(f"{name}: {figures(timed(lambda p=path: client.get(p).raise_for_status()))}")

    session = signed_in_session(service)
    base = service.http_url
    loads: dict[str, list[float]] = {"wall (/ops/)": [], "map (/ops/map.html)": [], "profile": []}
    for _ in range(RUNS):  # a fresh browser context each time: nothing cached
        with watched_page(chromium, WatchedPage, base, artifacts, WALL, session) as w:
            loads["wall (/ops/)"].append(load_ms(w.page, base + "/ops/", WALL_READY, f"window.expectedRows = {open_rows};"))
        with watched_page(chromium, WatchedPage, base, artifacts, WALL, session) as m:
            loads["map (/ops/map.html)"].append(load_ms(m.page, base + "/ops/map.html", MAP_READY,
                                                        f"window.expectedBuildings = {len(hierarchy.buildings)};"))
        with watched_page(chromium, WatchedPage, base, artifacts, DESK, session) as p:
            loads["profile"].append(load_ms(p.page, f"{base}/ops/profile.html?b={tall.id}", PROFILE_READY))
    for name, values in loads.items():
        lines.append(f"page load → first full render, {name}: {figures(values)}")

    # Publish → on screen: the wall's row and the map's building, both open at once.
    wall_ms, map_ms = [], []
    with watched_page(chromium, WatchedPage, base, artifacts, WALL, session) as w, \
            watched_page(chromium, WatchedPage, base, artifacts, WALL, session) as m:
        load_ms(w.page, base + "/ops/", WALL_READY, f"window.expectedRows = {open_rows};")
        load_ms(m.page, base + "/ops/map.html", MAP_READY, f"window.expectedBuildings = {len(hierarchy.buildings)};")
        m.screenshot("map-street.png", full_page=False)
        w.page.evaluate(WATCH)
        m.page.evaluate(WATCH)
        for sim in sims[100:100 + UPDATES]:
            detector = sim.smoke_detectors()[0]
            published = now_ms()
            send(service, detector.alarm(published))
            incident = None
            while incident is None:
                incident = next((i for i in service.services.alerts.active() if i.device_id == detector.device_id), None)
                time.sleep(0.01)
            w.page.wait_for_function(f"() => window.seenAt['inc-{incident.id}']", timeout=SCREEN_TIMEOUT_MS)
            m.page.wait_for_function(f"() => window.seenAt['b-{sim.building.id}']", timeout=SCREEN_TIMEOUT_MS)
            wall_ms.append(w.page.evaluate(f"() => window.seenAt['inc-{incident.id}']") - published)
            map_ms.append(m.page.evaluate(f"() => window.seenAt['b-{sim.building.id}']") - published)
        w.screenshot("wall-street.png", full_page=False)
    lines.append(f"publish → row on the wall: {figures(wall_ms)}")
    lines.append(f"publish → building recoloured on the map: {figures(map_ms)}")

    report = "\n".join(lines)
    print(report)
    (artifacts / "screens-timing.txt").write_text(report + "\n", encoding="utf-8")
