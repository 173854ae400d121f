"""The attacks of issue 15, each against a running service and a real Mosquitto, refused; the legitimate path beside it works.

| attack | expected |
|---|---|
| a responder token acknowledges an incident another station was dispatched to, or an elderly press | 403, counted, audited; the incident keeps escalating |
| a responder token claims another station, or writes another name into the audit | 403; the audit names the credential |
| a page of another origin on this host makes the signed-in browser import devices / rotate credentials | 403 (tests/browser/test_attacks_in_the_browser.py does it in Chromium) |
| guessing one account's password to lock its owner out | the guesser waits; the owner, from elsewhere, signs in at once |
| weak passwords: 12345678, password, the username | 422 |
| tester, maintainer, viewer or another station's responder reading households | the building without its households |
| production with the embedded broker, an anonymous login, or a broker with allow_anonymous true | refused at start |
| framing the pages, inline script | CSP script-src 'self', frame-ancestors 'none', X-Frame-Options DENY |
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import httpx
import pytest

from dashboards.accounts import Role
from dashboards.auth import SESSION_COOKIE
from simulators.building import BuildingSimulation
from devices.kinds.elderly_alarm.simulator import ElderlyAlarmSim
from tooling.local_servers import SecuredBroker, secured_mosquitto
from tests.fixtures.servers import MosquittoServer, free_port
from tests.fixtures.service import ServiceFactory, accounts, add_person, now_ms, register_building, wait_for
from tests.integration.test_broker_acl import logged_in, refusal
from wanli.broker_check import OpenBroker
from wanli.runtime import WanliService, running_in_thread
from wanli.settings import Settings

pytestmark = pytest.mark.mosquitto

XQ, YH = "MFS-XQ", "MFS-YH"  # 香泉's micro fire station covers xq-01; 银河's does not


_OPEN: list[httpx.Client] = []


def client(service: WanliService, **options: object) -> httpx.Client:
    """An HTTP client to the service, closed at the end of the test."""
    made = httpx.Client(base_url=service.http_url, timeout=10, **options)  # type: ignore[arg-type]
    _OPEN.append(made)
    return made


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[SecuredBroker]:
    with secured_mosquitto(tmp_path / "secured") as secured:
        yield secured


@pytest.fixture
def street(broker: SecuredBroker, service_factory: ServiceFactory) -> WanliService:
    """The service on the secured Mosquitto, as production runs it (development mode: plain-HTTP cookies)."""
    return service_factory(**broker.service_settings())


def token(service: WanliService, role: str, *stations: str, name: str = "") -> httpx.Client:
    _t, raw = accounts(service).create_token(name or f"{role}-{'-'.join(stations) or 'any'}", [role], "test", now_ms(),
                                             stations=stations)
    return client(service, headers={"Authorization": f"Bearer {raw}"})


def admin(service: WanliService) -> httpx.Client:
    return token(service, Role.ADMIN, name="admin")


def alarms(service: WanliService, broker: SecuredBroker) -> tuple[dict, dict]:
    """A smoke alarm and an elderly press in 香泉 1号楼, each published with the device's own credentials;
    returns the two incidents (the smoke alarm is dispatched to MFS-XQ, the press to no station)."""
    sim: BuildingSimulation = register_building(service)
    detector = sim.smoke_detectors()[0]
    elderly = next(p.device for p in sim.placed if isinstance(p.device, ElderlyAlarmSim))
    maintainer = token(service, Role.MAINTAINER)
    for device, publication in ((detector, detector.alarm(now_ms())), (elderly, elderly.press(now_ms()))):
        creds = maintainer.post(f"/api/devices/{device.device_id}/credentials").raise_for_status().json()
        applied(maintainer, device.device_id)
        with logged_in(broker.server, creds["username"], creds["password"]) as login:
            login.publish(*publication)
    reader = admin(service)

    def both() -> dict[str, dict] | None:
        active = {i["device_id"]: i for i in reader.get("/api/incidents", params={"active": True}).json()}
        return active if {detector.device_id, elderly.device_id} <= set(active) else None

    found = wait_for(both)
    return found[detector.device_id], found[elderly.device_id]


def metric(service: WanliService, name: str, **labels: str) -> float:
    text = httpx.get(f"{service.http_url}/metrics").text
    for found_labels, value in re.findall(rf"^{name}{{([^}}]*)}} (\S+)$", text, re.MULTILINE):
        if dict(re.findall(r'(\w+)="([^"]*)"', found_labels)) == labels:
            return float(value)
    return 0.0


def events(service: WanliService, event: str) -> list[dict]:
    return admin(service).get("/api/access-events", params={"event": event}).raise_for_status().json()


# -- 1. responders bound to their stations ------------------------------------------------------------------------


def test_a_responder_sees_and_answers_only_what_was_dispatched_to_its_station(street: WanliService,
                                                                                broker: SecuredBroker) -> None:
    smoke, press = alarms(street, broker)
    assert press["severity"] == "critical"
    xq, yh, unbound = token(street, "responder", XQ), token(street, "responder", YH), token(street, "responder")

    # The attack: any responder token acknowledging anything street-wide
    for who, incident, why in ((yh, smoke, "未派给本站"), (yh, press, "未派给本站"), (xq, press, "未派给本站"),
                               (unbound, smoke, "bound to no station")):
        refused = who.post(f"/api/incidents/{incident['id']}/actions", json={"action": "acknowledge"})
        assert refused.status_code == 403 and why in refused.json()["detail"], refused.text
    posing = yh.post(f"/api/incidents/{smoke['id']}/actions",
                     json={"action": "acknowledge", "station_id": XQ, "dispatch_id": f"{smoke['id']}-0"})
    assert posing.status_code == 403 and YH in posing.json()["detail"]
    reader = admin(street)
    for incident in (smoke, press):  # nothing moved: both keep escalating
        assert reader.get(f"/api/incidents/{incident['id']}").json()["state"] == "open"
    assert metric(street, "wanli_access_refused_total", reason="station") >= 5
    refusals = events(street, "station_refused")
    assert {e["subject"] for e in refusals} == {smoke["id"], press["id"]}
    assert {e["actor"] for e in refusals} >= {"token:responder-MFS-YH", "token:responder-any"}

    # What each station sees: its own dispatches only
    assert yh.get("/api/incidents").json() == [] and yh.get("/api/incidents", params={"active": True}).json() == []
    assert yh.get(f"/api/incidents/{smoke['id']}").status_code == 404
    assert [i["id"] for i in xq.get("/api/incidents").json()] == [smoke["id"]]

    # The legitimate path: MFS-XQ acknowledges its dispatch; the audit names the token, not the body's claim
    own = xq.post(f"/api/incidents/{smoke['id']}/actions", json={"action": "acknowledge", "actor": "区长本人"})
    assert own.status_code == 200 and own.json()["state"] == "acknowledged"
    trail = reader.get(f"/api/incidents/{smoke['id']}").json()["audit"]
    assert trail[-1]["actor"] == "token:responder-MFS-XQ" and "区长" not in json.dumps(trail, ensure_ascii=False)
    operator = token(street, "operator")  # the ops centre acts street-wide, the press included
    assert operator.post(f"/api/incidents/{press['id']}/actions", json={"action": "acknowledge"}).status_code == 200


def test_a_responder_credential_must_name_real_stations(street: WanliService) -> None:
    boss = admin(street)
    assert boss.post("/api/tokens", json={"name": "app", "roles": ["responder"]}).status_code == 422
    unknown = boss.post("/api/tokens", json={"name": "app", "roles": ["responder"], "stations": ["MFS-NOPE"]})
    assert unknown.status_code == 422 and "MFS-NOPE" in unknown.json()["detail"]
    made = boss.post("/api/tokens", json={"name": "app", "roles": ["responder"], "stations": [XQ]})
    assert made.status_code == 201 and made.json()["stations"] == [XQ]
    assert boss.post("/api/users", json={"username": "zhangwei", "roles": ["responder"], "password": "Xq-duty-2026-zw",
                                         "stations": [XQ]}).json()["stations"] == [XQ]


# -- 2. CSRF (over HTTP here; in Chromium in tests/browser/test_attacks_in_the_browser.py) -------------------------


def issue(service: WanliService, broker: SecuredBroker, client: httpx.Client, device: str,
          **headers: str) -> httpx.Response:
    """POST the device's credentials route; when it issued new ones, wait until the broker has applied them."""
    resp = client.post(f"/api/devices/{device}/credentials", headers=headers)
    if resp.status_code == 201:
        applied(client, device)
    return resp


def applied(client: httpx.Client, device: str, timeout_s: float = 10.0) -> None:
    """Wait until the service says the broker applied the device's credentials (its plugin answered or it reloaded)."""
    deadline = time.monotonic() + timeout_s
    while client.get(f"/api/devices/{device}").json().get("access_state") != "active":
        if time.monotonic() > deadline:
            raise AssertionError(f"the broker did not apply {device}'s credentials within {timeout_s} s")
        time.sleep(0.05)


def test_cross_origin_changes_with_the_session_cookie_are_refused(street: WanliService, broker: SecuredBroker) -> None:
    register_building(street)
    device = "SD-XQ01-0101"
    machine = token(street, "maintainer")  # a machine's token: no CSRF token needed, whatever the Origin
    grafana = f"http://127.0.0.1:{free_port()}"
    first = issue(street, broker, machine, device, Origin=grafana)
    assert first.status_code == 201
    username, password = add_person(street, "maintainer")
    person = client(street)
    signed = person.post("/api/auth/login", json={"username": username, "password": password}).raise_for_status()
    csrf = signed.json()["csrf_token"]
    assert csrf and person.get("/api/auth/status").json()["csrf_token"] == csrf
    csv = "device_id,kind,building_id,floor,unit\nSD-EVIL-0001,smoke_detector,xq-01,1,0101\n"
    before = metric(street, "wanli_access_refused_total", reason="csrf")

    attempts = [  # what a page on another port of this host can make the browser send, and what a script may try
        person.post("/api/devices/import", content=csv, headers={"content-type": "text/plain"}),
        person.post("/api/devices/import", content=csv, headers={"content-type": "text/plain", "Origin": grafana,
                                                                 "Sec-Fetch-Site": "same-site"}),
        issue(street, broker, person, device, Origin=grafana),
        issue(street, broker, person, device, **{"X-CSRF-Token": csrf, "Origin": grafana}),
        issue(street, broker, person, device, **{"X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-site"}),
        issue(street, broker, person, device, **{"X-CSRF-Token": "0" * 64}),
        person.post("/api/auth/login", json={"username": username, "password": password},
                    headers={"Origin": grafana, "Sec-Fetch-Site": "same-site"}),  # login CSRF
    ]
    for resp in attempts:
        assert resp.status_code == 403, (resp.request.url, resp.status_code, resp.text)
    assert metric(street, "wanli_access_refused_total", reason="csrf") - before == len(attempts)
    assert admin(street).get("/api/devices/SD-EVIL-0001").status_code == 404  # nothing imported
    with logged_in(broker.server, first.json()["username"], first.json()["password"]):
        pass  # the device's credentials were not rotated: it stays on the air

    # The legitimate path: the pages' own request (same origin, the session's token) rotates them
    own = issue(street, broker, person, device, **{"X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-origin",
                                                   "Origin": street.http_url})
    assert own.status_code == 201
    with logged_in(broker.server, own.json()["username"], own.json()["password"]):
        pass
    assert refusal(broker.server, first.json()["username"], first.json()["password"]).is_failure
    assert person.post("/api/auth/logout").status_code == 204


# -- 3. throttling, never a lockout --------------------------------------------------------------------------------


def from_address(service: WanliService, address: str) -> httpx.Client:
    """A client whose connections come from this loopback address (127.0.0.0/8 all reach the service)."""
    return client(service, transport=httpx.HTTPTransport(local_address=address))


def test_guessing_a_password_slows_the_guesser_and_never_locks_the_owner_out(broker: SecuredBroker,
                                                                             service_factory: ServiceFactory) -> None:
    service = service_factory(**broker.service_settings(), auth_login_free_failures_per_source=3,
                              auth_login_free_failures_per_account=3, auth_login_max_delay_s=30)
    duty, password = add_person(service, "operator", username="duty-officer")
    attacker, desk = from_address(service, "127.0.0.1"), from_address(service, "127.0.0.2")
    for _ in range(4):
        assert attacker.post("/api/auth/login", json={"username": duty, "password": "Guess-0-guess"}).status_code == 401
    slowed = attacker.post("/api/auth/login", json={"username": duty, "password": password})
    assert slowed.status_code == 429 and 1 <= int(slowed.headers["retry-after"]) <= 30  # even the right one, from there
    # The owner, from their own desk, at once: no lockout
    signed = desk.post("/api/auth/login", json={"username": duty, "password": password})
    assert signed.status_code == 200 and signed.json()["name"] == duty
    # Every delay is in the audit and the metrics
    delayed = events(service, "login_delayed")
    assert {e["subject"] for e in delayed} == {"source:127.0.0.1", f"account:{duty}"}
    assert all(e["source"] == "127.0.0.1" and e["actor"] == duty for e in delayed)
    assert metric(service, "wanli_login_throttled_total", scope="account", event="delayed") >= 1
    assert metric(service, "wanli_login_throttled_total", scope="source", event="refused") >= 1
    # (bounded memory that an attacker cannot use to push the owner's entry out: tests/unit/test_login_throttle.py)


# -- 4. weak passwords; an admin forces a reset --------------------------------------------------------------------


def test_weak_passwords_are_refused_and_an_admin_can_force_a_new_one(street: WanliService) -> None:
    boss = admin(street)
    for weak, why in (("12345678", "at least 12"), ("password", "at least 12"), ("password1234", "common"),
                      ("123456789012", "common"), ("wangfang-2026", "username")):
        refused = boss.post("/api/users", json={"username": "wangfang", "roles": ["operator"], "password": weak})
        assert refused.status_code == 422 and why in json.dumps(refused.json()), (weak, refused.text)
    good = "Xq-night-shift-47"
    assert boss.post("/api/users", json={"username": "wangfang", "roles": ["operator"], "password": good}
                     ).status_code == 201

    person = client(street)
    person.post("/api/auth/login", json={"username": "wangfang", "password": good}).raise_for_status()
    forced = boss.patch("/api/users/wangfang", json={"must_change_password": True})
    assert forced.status_code == 200 and forced.json()["must_change_password"] is True
    assert person.get("/api/incidents").status_code == 401  # signed out everywhere
    signed = person.post("/api/auth/login", json={"username": "wangfang", "password": good}).json()
    assert signed["must_change_password"] is True
    person.headers["X-CSRF-Token"] = signed["csrf_token"]
    blocked = person.get("/api/incidents")
    assert blocked.status_code == 403 and "修改密码" in blocked.json()["detail"]
    assert person.post("/api/auth/password", json={"current_password": good, "new_password": "password1234"}
                       ).status_code == 422
    assert person.post("/api/auth/password", json={"current_password": good, "new_password": "Xq-day-shift-2027"}
                       ).status_code == 204
    person.post("/api/auth/login", json={"username": "wangfang", "password": "Xq-day-shift-2027"}).raise_for_status()
    assert person.get("/api/incidents").status_code == 200
    assert [e["subject"] for e in events(street, "password_reset_forced")] == ["wangfang"]


# -- 5. personal data by role --------------------------------------------------------------------------------------


def households(client: httpx.Client, building: str = "xq-01") -> tuple[list, list | None]:
    """The households in the building's detail and in its profile (None: the profile is refused, as it is to a
    station-bound responder, for it lists every incident of the building)."""
    detail = client.get(f"/api/buildings/{building}").raise_for_status().json()
    profile = client.get(f"/api/buildings/{building}/profile")
    if profile.status_code == 403:
        return detail["households"], None
    return detail["households"], profile.raise_for_status().json()["building"]["households"]


def test_households_only_for_those_who_act_on_them_and_every_read_recorded(street: WanliService,
                                                                          broker: SecuredBroker) -> None:
    tester, maintainer, viewer = token(street, "tester"), token(street, "maintainer"), token(street, "viewer")
    xq, yh, operator = token(street, "responder", XQ), token(street, "responder", YH), token(street, "operator")
    for who in (tester, maintainer, viewer):
        assert households(who) == ([], [])  # the attack: names, ages, living alone, family phones to every role
    for who in (xq, yh):
        assert households(who) == ([], None)
    seen, _ = households(operator)
    assert len(seen) == 3 and all(h["resident"] and h["contacts"] for h in seen)
    assert any(c["phone"] for h in seen for c in h["contacts"])

    alarms(street, broker)  # a smoke alarm in xq-01, dispatched to MFS-XQ
    assert len(households(xq)[0]) == 3  # the responder sent there now sees who lives there
    assert households(yh) == ([], None) and households(tester) == ([], [])

    reads = events(street, "personal_data_read")
    units = {h["unit"] for h in seen}
    assert {e["subject"] for e in reads} == {f"xq-01-{u}" for u in units}
    assert {e["actor"] for e in reads} == {"token:operator-any", "token:responder-MFS-XQ"}
    assert len(reads) == 3 * 3  # each read of each household: the operator's detail and profile, MFS-XQ's detail


# -- 6. production refuses an open broker ---------------------------------------------------------------------------


PRODUCTION = {"mode": "production", "auth_secret_key": "k" * 40, "http_port": 0, "simulate_building": False}


def test_production_refuses_the_embedded_broker_and_an_anonymous_login() -> None:
    with pytest.raises(ValueError, match="refuses the embedded MQTT broker"):
        Settings(**PRODUCTION)
    with pytest.raises(ValueError, match="refuses an anonymous MQTT connection"):
        Settings(**PRODUCTION, mqtt_url="mqtt://127.0.0.1:1883")
    assert Settings(**PRODUCTION, mqtt_url="mqtt://127.0.0.1:1883", mqtt_username="wanli", mqtt_password="x")


def test_production_refuses_a_broker_that_lets_anyone_in(tmp_path: Path) -> None:
    open_broker = MosquittoServer(tmp_path / "open", port=free_port())  # allow_anonymous true
    open_broker.start()
    try:
        assert not refusal(open_broker, None, None).is_failure  # the attack: anyone reads the dispatches
        with pytest.raises(RuntimeError) as failed:
            with running_in_thread(Settings(**PRODUCTION, data_dir=tmp_path / "data", mqtt_url=open_broker.url,
                                            mqtt_username="wanli-ingest", mqtt_password="whatever-it-is")):
                pass
        assert isinstance(failed.value.__cause__, OpenBroker)
        assert "allow_anonymous" in str(failed.value.__cause__)
    finally:
        open_broker.stop()


def test_production_starts_on_the_secured_broker_which_refuses_anonymous_readers(tmp_path: Path,
                                                                                  broker: SecuredBroker) -> None:
    with running_in_thread(Settings(**PRODUCTION, data_dir=tmp_path / "data", **broker.service_settings())) as service:
        assert httpx.get(f"{service.http_url}/readyz").status_code == 200
        assert refusal(broker.server, None, None).is_failure  # no anonymous reader of 「老人按下一键通 … 1801室」
        assert refusal(broker.server, "wanli-ingest", "a-guess").is_failure


# -- 7. headers: no framing, no inline script ----------------------------------------------------------------------


def test_every_answer_carries_the_security_headers(street: WanliService) -> None:
    username, password = add_person(street, "viewer")
    cookie = httpx.post(f"{street.http_url}/api/auth/login", json={"username": username, "password": password}
                        ).cookies[SESSION_COOKIE]
    for path in ("/ops/login.html", "/ops/", "/ops/index.html", "/ops/session.js", "/api/auth/status", "/api/incidents",
                 "/openapi.json", "/healthz"):
        resp = httpx.get(f"{street.http_url}{path}", cookies={SESSION_COOKIE: cookie})
        csp = resp.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'" and directives["frame-ancestors"] == "'none'", path
        assert directives["style-src"] == "'self'" and directives["object-src"] == "'none'", path
        assert resp.headers["x-frame-options"] == "DENY" and resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["referrer-policy"] == "same-origin"


class _InlineFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {k for k, _v in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("inline <style>")
        self.found += [f"{tag} {k}=" for k in names if k.startswith("on") or k == "style"]
        self.found += [f"{tag} {k}=javascript:" for k, v in attrs if (v or "").strip().lower().startswith("javascript:")]


def test_the_pages_have_nothing_inline_that_the_policy_would_block() -> None:
    static = resources.files("dashboards").joinpath("static")
    pages = [p for p in static.iterdir() if p.name.endswith(".html")]
    assert len(pages) >= 5
    for page in pages:
        finder = _InlineFinder()
        finder.feed(page.read_text("utf-8"))
        assert finder.found == [], (page.name, finder.found)
