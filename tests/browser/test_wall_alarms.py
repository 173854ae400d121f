"""The wall at 1920x1080 with a busy street: no alarm can be missed, and the drawer has what the next step needs.

Twenty-five open smoke alarms in twenty-five buildings of the generated street, then a new one: its row must be
in the first viewport within two seconds, and its tone must play and repeat until someone acknowledges it.
The page's audio calls are counted by wrapping ``AudioContext.prototype.createOscillator`` in an init script
(each tone is made of oscillators; ``window.wanliRings`` names the incident each tone was for).
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from devices.hierarchy import hierarchy_from_dict
from devices.street_generator import generate_street
from simulators.building import BuildingSimulation
from tests.browser.conftest import (
    SCREEN_TIMEOUT_MS,
    WATCH_ROWS,
    OpsScreen,
    act,
    signed_in_session,
    watched_page,
)
from tests.fixtures.service import ServiceFactory, now_ms, publish, wait_for
from wanli.runtime import WanliService

pytestmark = pytest.mark.browser

HD = {"width": 1920, "height": 1080}
BUSY = 25

# Counts the page's oscillators (every tone is made of them) and when each started.
COUNT_AUDIO = """
window.audioStarts = [];
const make = AudioContext.prototype.createOscillator;
AudioContext.prototype.createOscillator = function () {
  const osc = make.call(this);
  const start = osc.start.bind(osc);
  osc.start = (...a) => { window.audioStarts.push(Date.now()); return start(...a); };
  return osc;
};
"""


class Street:
    def __init__(self, service: WanliService, sims: list[BuildingSimulation]) -> None:
        self.service, self.sims = service, sims

    def alarm(self, n: int) -> str:
        """The first detector of building ``n`` alarms; the id of its incident once the service opened it."""
        detector = self.sims[n].smoke_detectors()[0]
        self.send(detector.alarm(now_ms()))
        return self.incident_of(detector.device_id)

    def send(self, *messages: tuple[str, bytes]) -> None:
        assert self.service.broker is not None
        publish(self.service.broker.host, self.service.broker.port, list(messages))

    def incident_of(self, device_id: str) -> str:
        return wait_for(lambda: next((i.id for i in self.service.services.alerts.active()
                                      if i.device_id == device_id and not i.scope), None), timeout_s=10)


@pytest.fixture
def street(service_factory: ServiceFactory, tmp_path: Path) -> Street:
    raw = generate_street(seed=0)
    (tmp_path / "street.json").write_text(json.dumps(raw, ensure_ascii=False), "utf-8")
    service = service_factory(hierarchy_file=tmp_path / "street.json")
    hierarchy = hierarchy_from_dict(raw)
    sims = [BuildingSimulation(b, seed=n) for n, b in enumerate(list(hierarchy.buildings.values())[:BUSY + 12])]
    for sim in sims:
        service.services.registry.register_many(sim.records(), actor="test", now_ms=now_ms())
    return Street(service, sims)


@pytest.fixture
def wall(chromium: Browser, street: Street, artifacts: Path) -> Iterator[OpsScreen]:
    with watched_page(chromium, OpsScreen, street.service.http_url, artifacts, HD,
                      signed_in_session(street.service)) as screen:
        screen.page.add_init_script(COUNT_AUDIO)
        yield screen


def busy_wall(street: Street, wall: OpsScreen) -> list[str]:
    """25 open alarms, the wall loaded and sound enabled by a first click."""
    ids = []
    for n in range(BUSY):
        ids.append(street.alarm(n))
    wall.open()
    expect(wall.rows).to_have_count(BUSY, timeout=SCREEN_TIMEOUT_MS)
    wall.page.locator("h1").click()  # the first interaction: the browser now lets the page play sound
    expect(wall.page.locator("#sound-banner")).to_be_hidden()
    expect(wall.page.locator("#sound")).to_have_text("声音已开")
    return ids


def in_first_viewport(wall: OpsScreen, incident_id: str) -> bool:
    box = wall.row(incident_id).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= HD["height"]


def test_a_new_high_alarm_among_25_is_in_view_at_once_and_rings_until_acknowledged(
    wall: OpsScreen, street: Street, artifacts: Path,
) -> None:
    ids = busy_wall(street, wall)
    page = wall.page
    wall.screenshot("wall-25-before-1920.png", full_page=False)
    visible = page.evaluate("""() => [...document.querySelectorAll('#incidents > tr')].filter(tr => {
        const b = tr.getBoundingClientRect(); return b.top >= 0 && b.bottom <= innerHeight; }).length""")
    assert visible >= 12, f"only {visible} rows fit at 1920x1080"
    smallest = page.evaluate("""() => Math.min(...[...document.querySelectorAll('header *, #kpi *, #incidents *')]
        .filter(n => n.offsetParent !== null && [...n.childNodes].some(c => c.nodeType === 3 && c.textContent.trim()))
        .map(n => parseFloat(getComputedStyle(n).fontSize)))""")
    assert smallest >= 20, f"text of {smallest} px on the wall"
    page.mouse.wheel(0, 2000)  # the operator has scrolled down to the oldest
    page.evaluate(WATCH_ROWS)

    published = now_ms()
    new_id = street.alarm(BUSY)
    expect(wall.row(new_id)).to_be_attached(timeout=2_000)
    expect(page.locator("#new-banner")).to_be_visible()  # scrolled away: the banner says so …
    expect(page.locator("#new-banner")).to_have_text(re.compile(r"^1 条新警情"))
    page.locator("#new-banner").click()  # … and brings it into view
    page.wait_for_function(f"""() => {{ const b = document.getElementById('inc-{new_id}').getBoundingClientRect();
        return b.top >= 0 && b.bottom <= innerHeight; }}""", timeout=2_000)
    expect(page.locator("#new-banner")).to_be_hidden()
    page.evaluate("() => window.scrollTo(0, 0)")
    assert in_first_viewport(wall, new_id)  # pinned: unacknowledged and newest, at the top of its severity
    expect(wall.rows.first).to_have_id(f"inc-{new_id}")

    # Its tone plays, and again, until acknowledged.
    page.wait_for_function(f"() => window.wanliRings.filter(r => r.id === '{new_id}').length >= 2", timeout=20_000)
    wall.screenshot("wall-25-incidents-1920.png", full_page=False)
    for incident_id in [new_id, *ids]:  # everybody's alarm is taken
        act(street.service, incident_id, "acknowledge")
    expect(wall.page.locator("#count-open")).to_have_text("0", timeout=SCREEN_TIMEOUT_MS)
    rings = page.evaluate("() => window.wanliRings.length")
    starts = page.evaluate("() => window.audioStarts.length")
    page.wait_for_timeout(9_000)  # longer than a high alarm's interval: nothing rings any more
    assert page.evaluate("() => window.wanliRings.length") == rings
    assert page.evaluate("() => window.audioStarts.length") == starts and starts >= 4

    row_ms = page.evaluate(f"() => window.rowSeenAt['inc-{new_id}']") - published
    tone_ms = next(r["at"] for r in page.evaluate("() => window.wanliRings") if r["id"] == new_id) - published
    (artifacts / "wall-alarm-timing.txt").write_text(
        f"publish → row on the wall (25 open): {row_ms} ms\npublish → first tone: {tone_ms} ms\n", "utf-8")


def test_silencing_one_incident_stops_its_tone_only_and_the_trail_says_who(
    wall: OpsScreen, street: Street,
) -> None:
    first = street.alarm(0)
    wall.open()
    wall.page.locator("h1").click()
    wall.page.wait_for_function(f"() => window.wanliRings.some(r => r.id === '{first}')", timeout=10_000)
    wall.row(first).locator("button.mute").click()
    expect(wall.row(first)).to_have_class(re.compile(r"\bsilenced\b"))
    expect(wall.row(first).locator("td.state")).to_have_text(re.compile("待响应"))  # still waits for a person
    rings = wall.page.evaluate("() => window.wanliRings.length")
    wall.page.wait_for_timeout(9_000)
    assert wall.page.evaluate("() => window.wanliRings.length") == rings
    trail = street.service.services.incidents.audit(first)
    assert [(a.action, a.actor) for a in trail if a.action == "silence"] == [("silence", "值班员 王芳（wangfang）")]

    wall.page.reload()  # the silence is remembered on this screen
    expect(wall.link).to_have_class("link up")
    expect(wall.row(first)).to_have_class(re.compile(r"\bsilenced\b"))
    wall.page.locator("h1").click()
    second = street.alarm(1)  # another alarm still rings
    wall.page.wait_for_function(f"() => window.wanliRings.some(r => r.id === '{second}')", timeout=10_000)


def test_sound_off_is_remembered_across_a_reload_with_a_banner_and_nothing_rings(
    wall: OpsScreen, street: Street,
) -> None:
    wall.open()
    page = wall.page
    expect(page.locator("#sound-banner")).to_be_visible()  # before any click: the browser holds the sound back
    expect(page.locator("#sound-banner")).to_contain_text("点击页面任意处")
    page.locator("h1").click()
    expect(page.locator("#sound-banner")).to_be_hidden()
    page.locator("#sound").click()  # off
    expect(page.locator("#sound-banner")).to_contain_text("提示音已关闭")
    page.reload()
    expect(wall.link).to_have_class("link up")
    page.locator("h1").click()
    expect(page.locator("#sound-banner")).to_be_visible()
    expect(page.locator("#sound-banner")).to_contain_text("提示音已关闭")
    new_id = street.alarm(0)
    expect(wall.row(new_id)).to_be_visible(timeout=SCREEN_TIMEOUT_MS)
    page.wait_for_timeout(1_500)
    assert page.evaluate("() => window.wanliRings.length") == 0
    page.locator("#sound-banner-on").click()
    expect(page.locator("#sound-banner")).to_be_hidden()
    page.wait_for_function(f"() => window.wanliRings.some(r => r.id === '{new_id}')", timeout=10_000)


def test_publish_to_row_and_tone_figures(wall: OpsScreen, street: Street, artifacts: Path) -> None:
    """Not a timing assertion: the figures go to test-artifacts/wall-alarm-figures.txt (and are printed)."""
    wall.open()
    page = wall.page
    page.locator("h1").click()
    page.evaluate(WATCH_ROWS)
    rows, tones = [], []
    for n in range(12):
        page.wait_for_timeout(2_000)  # the previous tone has ended: each one measured on its own
        published = now_ms()
        incident_id = street.alarm(n)
        page.wait_for_function(f"() => window.wanliRings.some(r => r.id === '{incident_id}')", timeout=10_000)
        rows.append(page.evaluate(f"() => window.rowSeenAt['inc-{incident_id}']") - published)
        tones.append(next(r["at"] for r in page.evaluate("() => window.wanliRings") if r["id"] == incident_id) - published)
        act(street.service, incident_id, "acknowledge")

    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    report = (f"publish → row visible: p50 {statistics.median(rows):.0f} ms, p99 {p(rows, 0.99):.0f} ms (n={len(rows)})\n"
              f"publish → tone: p50 {statistics.median(tones):.0f} ms, p99 {p(tones, 0.99):.0f} ms (n={len(tones)})\n")
    print(report)
    (artifacts / "wall-alarm-figures.txt").write_text(report, "utf-8")
    assert len(rows) == len(tones) == 12


def test_the_drawer_shows_timeline_steps_people_with_phones_and_focuses_the_map(
    wall: OpsScreen, street: Street, artifacts: Path,
) -> None:
    incident_id = street.alarm(0)
    wall.open()
    page = wall.page
    wall.row(incident_id).locator("td.place").click()
    drawer = page.locator("#drawer")
    expect(drawer).to_be_visible()
    expect(drawer).to_have_attribute("data-loaded", incident_id)
    expect(page.locator("#drawer-title")).to_have_text("烟感报警")
    expect(page.locator("#drawer-timeline")).to_contain_text("发现并上报")
    expect(page.locator("#drawer-timeline li.notice-item").first).to_contain_text("通知")
    expect(page.locator("#drawer-steps li.current")).to_contain_text("第1级")
    expect(page.locator("#drawer-steps .deadline")).to_contain_text("后升级")
    phones = page.locator("#drawer-contacts td.phone a")
    expect(phones.first).to_have_attribute("href", re.compile(r"^tel:\d"))
    expect(page.locator("#drawer-contacts")).to_contain_text("微型消防站")

    page.locator("#drawer-note").fill("已电话联系楼组长")
    page.locator("#drawer-note-save").click()
    expect(page.locator("#drawer-timeline")).to_contain_text("已电话联系楼组长", timeout=SCREEN_TIMEOUT_MS)
    page.locator("#drawer-step").click()  # 确认, from the drawer
    expect(page.locator("#drawer-timeline")).to_contain_text("确认", timeout=SCREEN_TIMEOUT_MS)
    expect(page.locator("#drawer-steps li.current")).to_have_count(0)
    wall.screenshot("wall-drawer-1920.png", full_page=False)
    page.locator("#drawer-timeline").scroll_into_view_if_needed()
    wall.screenshot("wall-drawer-timeline-1920.png", full_page=False)

    building = street.sims[0].building.id
    expect(page.locator("#drawer-map")).to_have_attribute("href", f"/ops/map.html?focus={building}")


def test_the_map_pans_and_zooms_labels_never_collide_and_the_drawer_focuses_a_building(
    chromium: Browser, street: Street, artifacts: Path,
) -> None:
    """The generated street (637 buildings) on the Leaflet map: names placed without overlap at every zoom, more
    of them closer in, and ?focus=<building> (the drawer's 在地图上显示) centres and marks that building."""
    target = street.sims[5].building.id
    street.alarm(5)
    with watched_page(chromium, OpsScreen, street.service.http_url, artifacts, HD,
                      signed_in_session(street.service)) as m:
        page = m.page
        page.goto(f"{street.service.http_url}/ops/map.html?focus={target}")
        expect(page.locator("#link")).to_have_class("link up")
        expect(page.locator("#plan g.building")).to_have_count(637)
        expect(page.locator(f"#plan g.building#b-{target}")).to_have_class(re.compile(r"\bfocused\b"))
        expect(page.locator(f".b-label.focused[data-building='{target}']")).to_be_visible()
        overlaps = """() => { const r = [...document.querySelectorAll('.b-label')].map(n => n.getBoundingClientRect());
            let n = 0; for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++)
              if (r[i].left < r[j].right && r[j].left < r[i].right && r[i].top < r[j].bottom && r[j].top < r[i].bottom) n++;
            return [r.length, n]; }"""
        box = page.locator(f"#plan g.building#b-{target} rect").bounding_box()
        mapbox = page.locator("#leaflet-map").bounding_box()
        assert box and mapbox
        centre = (box["x"] + box["width"] / 2 - mapbox["x"], box["y"] + box["height"] / 2 - mapbox["y"])
        assert abs(centre[0] - mapbox["width"] / 2) < 40 and abs(centre[1] - mapbox["height"] / 2) < 40, centre
        shown, overlapping = page.evaluate(overlaps)
        assert shown > 5 and overlapping == 0
        m.screenshot("map-focus-1920.png", full_page=False)

        zoom_out = page.locator(".leaflet-control-zoom-out")
        for _ in range(12):  # out to the whole street, until the button says it can go no further
            if "leaflet-disabled" in (zoom_out.get_attribute("class") or ""):
                break
            zoom_out.click()
            page.wait_for_timeout(300)
        expect(zoom_out).to_have_class(re.compile(r"\bleaflet-disabled\b"))
        far, overlapping = page.evaluate(overlaps)
        assert overlapping == 0 and 0 < far
        far_share = far / page.evaluate("() => window.wanliLabelsInView")
        m.screenshot("map-street-1920.png", full_page=False)
        page.mouse.move(mapbox["x"] + mapbox["width"] / 2, mapbox["y"] + mapbox["height"] / 2)
        page.mouse.wheel(0, -200)  # zoom in with the wheel at the centre: more names fit
        page.wait_for_timeout(800)
        near, overlapping = page.evaluate(overlaps)
        assert overlapping == 0
        assert near / page.evaluate("() => window.wanliLabelsInView") > far_share  # closer in, more of them named
