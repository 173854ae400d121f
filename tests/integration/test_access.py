"""Who may call what, over HTTP on a running service: every route, every role, the refusals.

``RULES`` is the access decision for every route of the API. The matrix test asks each route
as nobody (401 unless open), as each role (403 where the role does not permit it, anything but
401/403 where it does), and the completeness test fails when the app has a route that
``RULES`` does not decide, or ``RULES`` names one the app lost. A new route gets a decision
here, in docs/access.md, and in its router.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dashboards.accounts import Role
from dashboards.auth import DEVELOPMENT_PASSWORD, DEVELOPMENT_USERNAME, SESSION_COOKIE, STATION_BOUND_READS
from tooling.local_servers import secured_mosquitto
from tests.fixtures.servers import free_port
from tests.fixtures.service import accounts, add_person, auth_headers, new_token, now_ms, publish, register_building, wait_for
from wanli.runtime import WanliService, running_in_thread
from wanli.settings import Settings

OPEN = None
ANY = "viewer"  # any account, whatever its roles

RULES: dict[tuple[str, str], str | None] = {
    # probes, Prometheus and the counters behind them: open, as a load balancer and a scraper need
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/metrics"): OPEN,
    ("GET", "/api/stats"): OPEN,
    ("GET", "/"): OPEN,  # a redirect to the pages (which send a visitor to login themselves)
    # signing in and out
    ("POST", "/api/auth/login"): OPEN,
    ("POST", "/api/auth/logout"): OPEN,
    ("GET", "/api/auth/status"): OPEN,
    # reaching people: the signed link and Aliyun's receipts carry keys of their own (docs/access.md)
    ("POST", "/api/answer"): OPEN,
    ("POST", "/api/answer/facts"): OPEN,
    ("POST", "/api/notify/callbacks/aliyun/voice/{token}"): OPEN,
    ("POST", "/api/notify/callbacks/aliyun/sms/{token}"): OPEN,
    ("GET", "/api/notify/people"): "operator",
    ("PUT", "/api/notify/people/{person}/contact-points"): "operator",
    ("GET", "/api/notify/rules"): ANY,
    ("PUT", "/api/notify/rules/{role}/{urgency}"): "operator",
    ("GET", "/api/notify/changes"): "operator",
    ("GET", "/api/notify/faults"): ANY,
    ("POST", "/api/notify/test"): "operator",
    ("GET", "/api/auth/me"): ANY,
    ("POST", "/api/auth/password"): ANY,
    # reads: any account (the wall runs as a viewer)
    ("GET", "/api/incidents"): ANY,
    ("GET", "/api/incidents.csv"): ANY,
    ("GET", "/api/incidents/{incident_id}"): ANY,
    ("GET", "/api/incidents/{incident_id}/notifications"): ANY,
    ("GET", "/api/incidents/{incident_id}/escalation"): ANY,
    ("GET", "/api/incidents/{incident_id}/contacts"): ANY,  # phone numbers only for operators (in the answer)
    ("GET", "/api/incidents/history"): ANY,
    ("GET", "/api/incidents/history.csv"): ANY,
    ("GET", "/api/stream"): ANY,
    ("GET", "/api/kpi"): ANY,
    ("GET", "/api/devices"): ANY,
    ("GET", "/api/devices.csv"): ANY,
    ("GET", "/api/devices/counts"): ANY,
    ("GET", "/api/devices/{device_id}"): ANY,
    ("GET", "/api/devices/{device_id}/history"): ANY,
    ("GET", "/api/device-kinds"): ANY,
    ("GET", "/api/broker-access"): ANY,
    ("GET", "/api/dead-letters"): ANY,
    ("GET", "/api/dead-letters/counts"): ANY,
    ("GET", "/api/quarantine"): ANY,
    ("GET", "/api/hierarchy"): ANY,
    ("GET", "/api/map"): ANY,
    ("GET", "/api/buildings/{building_id}"): ANY,
    ("GET", "/api/buildings/{building_id}/profile"): ANY,
    ("GET", "/api/buildings/{building_id}/telemetry"): ANY,
    # incidents: operators; responders' apps acknowledge, arrive and add notes (checked per action below)
    ("POST", "/api/incidents/{incident_id}/actions"): "operator|responder",
    ("POST", "/api/incidents/{incident_id}/split"): "operator",
    # devices: maintainers
    ("POST", "/api/devices"): "maintainer",
    ("POST", "/api/devices/import"): "maintainer",
    ("POST", "/api/devices/{device_id}/move"): "maintainer",
    ("POST", "/api/devices/{device_id}/retire"): "maintainer",
    ("POST", "/api/devices/{device_id}/credentials"): "maintainer",
    ("POST", "/api/devices/credentials"): "maintainer",
    # simulations: anyone may follow a drill; testers start and stop them
    ("GET", "/api/simulations/scenarios"): ANY,
    ("GET", "/api/simulations"): ANY,
    ("GET", "/api/simulations/{sim_id}"): ANY,
    ("POST", "/api/simulations"): "tester",
    ("POST", "/api/simulations/{sim_id}/stop"): "tester",
    # drills: their own devices (DRILL-…) registered and archived by testers; the service's clock is a read
    ("GET", "/api/drills/devices"): ANY,
    ("POST", "/api/drills/devices"): "tester",
    ("POST", "/api/drills/end"): "tester",
    ("GET", "/api/clock"): ANY,
    ("POST", "/api/clock/advance"): "tester",
    # accounts and tokens: admins
    ("GET", "/api/policies"): "admin",
    ("GET", "/api/policies/versions"): "admin",
    ("GET", "/api/policies/versions/{version}"): "admin",
    ("POST", "/api/policies/check"): "admin",
    ("POST", "/api/policies/dry-run"): "admin",
    ("POST", "/api/policies/apply"): "admin",
    ("GET", "/api/users"): "admin",
    ("POST", "/api/users"): "admin",
    ("PATCH", "/api/users/{username}"): "admin",
    ("GET", "/api/tokens"): "admin",
    ("POST", "/api/tokens"): "admin",
    ("DELETE", "/api/tokens/{token_id}"): "admin",
    ("GET", "/api/access-events"): "admin",  # who read personal data, slowed logins, station refusals
}
HIDDEN = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/")}  # not in the OpenAPI document
CALLERS = [r.value for r in Role]


def permitted(rule: str | None, role: str, path: str = "") -> bool:
    if rule == ANY and role == "responder":  # bound to its station: its own incidents and places only
        return path in STATION_BOUND_READS
    if rule is None or role == "admin" or rule == ANY:
        return True
    return role in rule.split("|")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WanliService]:
    """One service for the whole matrix (the requests it gets change nothing but refusals)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("access"), embedded_broker_port=free_port(), http_port=0,
                        simulate_building=False, mqtt_client_id=f"wanli-access-{free_port()}")
    with running_in_thread(settings) as running:
        yield running


@pytest.fixture(scope="module")
def tokens(service: WanliService) -> dict[str, str]:
    made = {role: new_token(service, role) for role in CALLERS}
    # A responder's token is bound to its station (without one it may act on nothing at all)
    made["responder"] = accounts(service).create_token("responder-app MFS-XQ", ["responder"], "test", now_ms(),
                                                       stations=["MFS-XQ"])[1]
    return made


def concrete(path: str) -> str:
    """A path with its parameters filled in with things that do not exist (ids are numbers where typed so)."""
    return re.sub(r"\{[^}]+\}", lambda m: "999999" if m.group(0) == "{token_id}" else "nope-none", path)


def ask(service: WanliService, method: str, path: str, token: str | None) -> int:
    """The status only: the body is not read (the live stream would never end)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {} if method in ("POST", "PATCH", "PUT") and not path.endswith("/import") else None
    with httpx.Client(base_url=service.http_url, timeout=10) as client:
        with client.stream(method, concrete(path), json=body, headers=headers) as resp:
            return resp.status_code


def test_every_route_of_the_app_has_an_access_decision(service: WanliService) -> None:
    spec = httpx.get(f"{service.http_url}/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert documented | HIDDEN == set(RULES), "decide these routes' access in RULES (and docs/access.md)"
    for (method, path), rule in RULES.items():  # what the app declares is what RULES decides
        if (method, path) in HIDDEN:
            continue
        declared = spec["paths"][path][method.lower()].get("x-required-roles")
        assert declared == (rule.split("|") if rule else None), (method, path)


@pytest.mark.parametrize(("method", "path"), sorted(RULES), ids=[f"{m} {p}" for m, p in sorted(RULES)])
def test_each_role_is_let_in_or_refused_as_decided(service: WanliService, tokens: dict[str, str],
                                                   method: str, path: str) -> None:
    rule = RULES[(method, path)]
    anonymous = ask(service, method, path, None)
    if rule is None:
        assert anonymous not in (401, 403), f"{method} {path} is open, got {anonymous}"
    else:
        assert anonymous == 401, f"{method} {path} without credentials: {anonymous}"
        assert ask(service, method, path, "wlt_not-a-real-token") == 401
    for role in CALLERS:
        got = ask(service, method, path, tokens[role])
        if permitted(rule, role, path):
            assert got not in (401, 403) and got < 500, f"{role} may {method} {path}, got {got}"
        else:
            assert got == 403, f"{role} may not {method} {path}, got {got}"


def test_a_refusal_says_why_in_chinese_and_english(service: WanliService, tokens: dict[str, str]) -> None:
    nobody = httpx.get(f"{service.http_url}/api/incidents")
    assert nobody.status_code == 401 and nobody.headers["www-authenticate"] == "Bearer"
    assert "请先登录" in nobody.json()["detail"]
    viewer = httpx.post(f"{service.http_url}/api/devices", json={}, headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert viewer.status_code == 403
    assert viewer.json()["detail"] == "权限不足：需要「设备运维」角色（needs role maintainer）"


def test_a_person_signs_in_gets_a_strict_httponly_cookie_and_signs_out(service_factory) -> None:
    service = service_factory()
    username, password = add_person(service, "operator")
    client = service_factory.anonymous(service)
    assert client.post("/api/auth/login", json={"username": username, "password": "wrong-password"}).status_code == 401
    assert client.post("/api/auth/login", json={"username": "nobody-at-all", "password": password}).status_code == 401
    signed = client.post("/api/auth/login", json={"username": username, "password": password})
    assert signed.status_code == 200 and signed.json()["roles"] == ["operator"]
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # development mode: plain http on a laptop
    assert client.get("/api/auth/me").json()["name"] == username
    status = client.get("/api/auth/status").json()
    assert status["signed_in"] is True and status["csrf_token"]
    client.headers["X-CSRF-Token"] = status["csrf_token"]  # what session.js adds to the pages' changes
    refused = client.post("/api/devices", json={})
    assert refused.status_code == 403 and "needs role maintainer" in refused.json()["detail"]  # not a maintainer
    assert client.post("/api/auth/logout").status_code == 204
    assert client.get("/api/auth/me").status_code == 401
    assert client.get("/api/auth/status").json() == {"signed_in": False, "me": None, "csrf_token": ""}


def test_wrong_passwords_slow_their_source_down_without_locking_the_account(service_factory) -> None:
    service = service_factory(auth_login_free_failures_per_source=3, auth_login_max_delay_s=30)
    username, password = add_person(service, "viewer")
    client = service_factory.anonymous(service)
    for _ in range(3):
        assert client.post("/api/auth/login", json={"username": username, "password": "guess-guess"}).status_code == 401
    assert client.post("/api/auth/login", json={"username": "nobody", "password": "guess-guess"}).status_code == 401
    blocked = client.post("/api/auth/login", json={"username": username, "password": password})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0  # this source waits a moment
    # (tests/reliability/test_attacks.py: the right password from another source signs in at once)


def test_a_revoked_or_expired_token_and_a_disabled_person_are_refused_at_once(service_factory) -> None:
    service = service_factory()
    admin = service_factory.client(service, "admin")
    made = admin.post("/api/tokens", json={"name": "city-platform", "roles": ["viewer"]})
    assert made.status_code == 201
    issued = made.json()
    assert issued["token"].startswith("wlt_") and issued["hint"] == issued["token"][:8]
    machine = service_factory.client(service, token=issued["token"])
    assert machine.get("/api/incidents").status_code == 200
    listed = admin.get("/api/tokens").json()
    assert "token" not in listed[0] and any(t["name"] == "city-platform" and t["last_used_at"] for t in listed)
    assert admin.delete(f"/api/tokens/{issued['id']}").json()["revoked_at"] is not None
    assert machine.get("/api/incidents").status_code == 401

    store = accounts(service)
    _expiring, raw = store.create_token("short-lived", ["viewer"], "test", now_ms(), expires_ms=now_ms() + 50)
    wait_for(lambda: service_factory.client(service, token=raw).get("/api/incidents").status_code == 401, 5, 0.1)

    username, password = add_person(service, "maintainer")
    person = service_factory.anonymous(service)
    assert person.post("/api/auth/login", json={"username": username, "password": password}).status_code == 200
    assert admin.patch(f"/api/users/{username}", json={"disabled": True}).json()["disabled_at"] is not None
    assert person.get("/api/auth/me").status_code == 401  # the open session ended with the account
    assert person.post("/api/auth/login", json={"username": username, "password": password}).status_code == 401


def test_admins_manage_accounts_and_cannot_lock_everyone_out(service_factory) -> None:
    service = service_factory()
    admin_name, _ = add_person(service, "admin", username="chief")
    admin = service_factory.client(service, "admin")
    created = admin.post("/api/users", json={"username": "wangfang", "display_name": "值班员 王芳",
                                             "roles": ["operator", "maintainer"], "password": "s3cret-enough-42"})
    assert created.status_code == 201 and created.json()["roles"] == ["operator", "maintainer"]
    assert admin.post("/api/users", json={"username": "wangfang", "roles": ["viewer"], "password": "another-one-42"}
                      ).status_code == 409
    assert admin.post("/api/users", json={"username": "x", "roles": ["overlord"], "password": "s3cret-enough-42"}
                      ).status_code == 422
    assert admin.post("/api/users", json={"username": "y", "roles": ["viewer"], "password": "short"}).status_code == 422
    assert admin.patch("/api/users/wangfang", json={"roles": ["viewer"]}).json()["roles"] == ["viewer"]
    # The development account and chief are the admins: chief may go, the last one may not.
    assert admin.patch(f"/api/users/{DEVELOPMENT_USERNAME}", json={"disabled": True}).status_code == 200
    last = admin.patch(f"/api/users/{admin_name}", json={"roles": ["viewer"]})
    assert last.status_code == 409 and "last enabled admin" in last.json()["detail"]
    users = {u["username"]: u for u in admin.get("/api/users").json()}
    assert "password_hash" not in users["wangfang"] and users[DEVELOPMENT_USERNAME]["development_only"] is True


def test_a_person_changes_their_own_password(service_factory) -> None:
    service = service_factory()
    username, password = add_person(service, "viewer")
    person = service_factory.anonymous(service)
    person.post("/api/auth/login", json={"username": username, "password": password}).raise_for_status()
    person.headers["X-CSRF-Token"] = person.get("/api/auth/status").json()["csrf_token"]
    wrong = person.post("/api/auth/password", json={"current_password": "not-it-at-all", "new_password": "brand-new-pass"})
    assert wrong.status_code == 422
    assert person.post("/api/auth/password", json={"current_password": password, "new_password": "brand-new-pass"}
                       ).status_code == 204
    assert person.get("/api/auth/me").status_code == 401  # every session ends with the old password
    assert person.post("/api/auth/login", json={"username": username, "password": "brand-new-pass"}).status_code == 200
    token_holder = service_factory.client(service, "viewer")
    assert token_holder.post("/api/auth/password", json={"current_password": "x", "new_password": "y-long-enough-9"}
                             ).status_code == 403  # a token has no password


def test_the_audit_trail_names_the_caller_not_what_the_request_claims(service_factory) -> None:
    service = service_factory()
    detector = register_building(service).smoke_detectors()[0]
    publish(service.broker.host, service.broker.port, [detector.alarm(now_ms())])
    store = accounts(service)
    store.add_user("wangfang", "s3cret-enough-42", ["operator"], now_ms(), display_name="值班员 王芳")
    person = service_factory.anonymous(service)
    person.post("/api/auth/login", json={"username": "wangfang", "password": "s3cret-enough-42"}).raise_for_status()
    person.headers["X-CSRF-Token"] = person.get("/api/auth/status").json()["csrf_token"]
    (incident,) = wait_for(lambda: person.get("/api/incidents", params={"active": True}).json())
    url = f"/api/incidents/{incident['id']}/actions"

    assert person.post(url, json={"action": "acknowledge", "actor": "区长本人"}).status_code == 200
    # A detector alarm dispatches the building's nearest micro fire station, MFS-XQ
    _t, raw = store.create_token("responder-app MFS-XQ", ["responder"], "test", now_ms(), stations=["MFS-XQ"])
    responder = service_factory.client(service, token=raw)
    assert responder.post(url, json={"action": "note", "actor": "队长 张伟", "note": "已到楼下"}).status_code == 200
    refused = responder.post(url, json={"action": "resolve"})
    assert refused.status_code == 403 and "responder may not resolve" in refused.json()["detail"]

    detail = person.get(f"/api/incidents/{incident['id']}").json()
    assert detail["acknowledged_by"] == "值班员 王芳（wangfang）"
    assert [(a["action"], a["actor"]) for a in detail["audit"][-2:]] == [
        ("acknowledge", "值班员 王芳（wangfang）"), ("note", "token:responder-app MFS-XQ")]  # never the body's name


@pytest.mark.mosquitto
def test_the_development_account_works_in_development_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"

    def settings(**extra: object) -> Settings:
        return Settings(data_dir=data, embedded_broker_port=free_port(), http_port=0, simulate_building=False,
                        mqtt_client_id=f"wanli-dev-{free_port()}", **extra)  # type: ignore[arg-type]

    with running_in_thread(settings()) as service:
        assert f"sign in as {DEVELOPMENT_USERNAME} / {DEVELOPMENT_PASSWORD}" in capsys.readouterr().out
        login = httpx.post(f"{service.http_url}/api/auth/login",
                           json={"username": DEVELOPMENT_USERNAME, "password": DEVELOPMENT_PASSWORD})
        assert login.status_code == 200 and login.json()["roles"] == ["admin"]
        session = login.cookies[SESSION_COOKIE]
        username, password = add_person(service, "operator")

    # The same database in production mode (with a broker that asks who connects, as production must):
    # the development account is refused, session and all.
    with secured_mosquitto(tmp_path / "broker") as broker, running_in_thread(Settings(
            data_dir=data, http_port=0, simulate_building=False, mode="production", auth_secret_key="x" * 40,
            **broker.service_settings())) as service:
        assert "sign in as" not in capsys.readouterr().out
        refused = httpx.post(f"{service.http_url}/api/auth/login",
                             json={"username": DEVELOPMENT_USERNAME, "password": DEVELOPMENT_PASSWORD})
        assert refused.status_code == 401
        assert httpx.get(f"{service.http_url}/api/auth/me", cookies={SESSION_COOKIE: session}).status_code == 401
        # (a new key also voids every session made under the old one; passwords are unaffected)
        ok = httpx.post(f"{service.http_url}/api/auth/login", json={"username": username, "password": password})
        assert ok.status_code == 200 and "Secure" in ok.headers["set-cookie"]


@pytest.mark.parametrize("key", ["", "short-secret", "wanli-development-only-secret-key-not-for-production"])
def test_production_refuses_a_missing_short_or_development_secret_key(key: str) -> None:
    with pytest.raises(ValueError, match="WANLI_AUTH_SECRET_KEY"):
        Settings(mode="production", auth_secret_key=key)
    assert Settings(mode="development", auth_secret_key=key).auth_secret_key.get_secret_value()  # fine on a laptop


def test_the_pages_send_a_visitor_without_a_session_to_login(service: WanliService, tokens: dict[str, str]) -> None:
    for page in ("/ops/", "/ops/devices.html", "/ops/index.html"):
        resp = httpx.get(f"{service.http_url}{page}")
        assert resp.status_code == 303 and resp.headers["location"] == f"/ops/login.html?next={page}"
    assert httpx.get(f"{service.http_url}/ops/login.html").status_code == 200
    assert httpx.get(f"{service.http_url}/ops/login.js").status_code == 200  # assets carry no data
    store = accounts(service)
    username, _ = add_person(service, "viewer")
    session = store.open_session(store.user(username), now_ms())
    assert httpx.get(f"{service.http_url}/ops/devices.html", cookies={SESSION_COOKIE: session}).status_code == 200
    # A Bearer token is for machines: the pages want a person's session.
    assert httpx.get(f"{service.http_url}/ops/", headers=auth_headers(service)).status_code == 303


def test_a_station_moves_only_an_incident_it_was_dispatched_to(service_factory) -> None:
    """The broker's ACL lets a station publish only under its own topics; the engine must then
    also refuse a station answering somebody else's dispatch, over MQTT and over the API."""
    service = service_factory()
    detector = register_building(service).smoke_detectors()[0]
    maintainer = service_factory.client(service, "maintainer")
    for station in ("MFS-XQ", "MFS-YH"):
        assert maintainer.post("/api/devices", json={"device_id": station, "kind": "fire_station",
                                                     "building_id": "xq-01"}).status_code == 201
    publish(service.broker.host, service.broker.port, [detector.alarm(now_ms())])
    reader = service_factory.client(service, "viewer")
    (incident,) = wait_for(lambda: [i for i in reader.get("/api/incidents").json() if i["condition"] == "smoke_alarm"])
    dispatch_id = f"{incident['id']}-0"  # MFS-XQ was dispatched, not MFS-YH
    wrong = json.dumps({"v": 1, "ts": now_ms(), "seq": now_ms(), "type": "dispatch_ack",
                        "dispatch_id": dispatch_id}).encode()
    publish(service.broker.host, service.broker.port, [("safety/v1/wanli/fire_station/MFS-YH/event", wrong)])
    refused = wait_for(lambda: [a for a in reader.get(f"/api/incidents/{incident['id']}").json()["audit"]
                                if a["actor"] == "微型消防站 MFS-YH"])
    assert [(a["action"], a["to_state"]) for a in refused] == [("note", "open")]
    assert "未采纳" in refused[0]["note"] and "MFS-XQ" in refused[0]["note"]  # the trail says why
    assert reader.get(f"/api/incidents/{incident['id']}").json()["state"] == "open"

    # An operator relaying a station's call: the engine's own refusal, as a 409
    relay = service_factory.client(service, "operator")
    actions = f"/api/incidents/{incident['id']}/actions"
    other = relay.post(actions, json={"action": "acknowledge", "station_id": "MFS-YH", "dispatch_id": dispatch_id})
    assert other.status_code == 409 and "MFS-XQ" in other.json()["detail"]
    undispatched = relay.post(actions, json={"action": "acknowledge", "station_id": "MFS-YH"})
    assert undispatched.status_code == 409 and "未被派往" in undispatched.json()["detail"]
    # A station's app is bound to its station: it cannot even claim to be another (403)
    _t, raw = accounts(service).create_token("responder-app MFS-XQ", ["responder"], "test", now_ms(),
                                             stations=["MFS-XQ"])
    app = service_factory.client(service, token=raw)
    posing = app.post(actions, json={"action": "acknowledge", "station_id": "MFS-YH", "dispatch_id": dispatch_id})
    assert posing.status_code == 403 and "MFS-XQ" in posing.json()["detail"]
    assert app.post(actions, json={"action": "acknowledge", "dispatch_id": dispatch_id}).status_code == 422
    assert reader.get(f"/api/incidents/{incident['id']}").json()["state"] == "open"

    own = app.post(actions, json={"action": "acknowledge", "station_id": "MFS-XQ", "actor": "队长 张伟"})
    assert own.status_code == 200 and own.json()["state"] == "acknowledged"
    assert own.json()["acknowledged_by"].startswith("微型消防站 MFS-XQ（token:")
