"""``wanli scenario run NAME --api URL``: a scenario played from the command line against a service already running.

The service runs on the wall clock (``service_factory``) and reads a real Mosquitto; the CLI
is a separate process that signs in with an API token, registers the scenario's devices
through the API, publishes through the broker at real speed and judges the outcomes from
the API. Its exit status says whether every expectation was met.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.fixtures.servers import free_port
from tests.fixtures.service import auth_headers, new_token

pytestmark = pytest.mark.mosquitto


def scenario_run(name: str, service, mosquitto, *extra: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "wanli.cli", "scenario", "run", name, "--api", service.http_url,
         "--mqtt-url", mosquitto.url, *extra],
        capture_output=True, text=True, timeout=240, check=False)


@pytest.mark.slow
def test_hostile_messages_from_the_cli_against_a_running_service(service_factory, mosquitto):
    """~45 s: the scenario's own pace at real speed."""
    service = service_factory(mqtt_url=mosquitto.url)
    run = scenario_run("hostile_messages", service, mosquitto, "--token", new_token(service, "tester", "maintainer"),
                       "--json")
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["ok"] and result["scenario"] == "hostile_messages" and result["sent"] > 0
    assert all(o["met"] for o in result["outcomes"]) and len(result["outcomes"]) >= 4
    # What the CLI judged is what the service holds: a drill's devices (DRILL-… twins) registered and archived
    # after, the genuine alarm one incident, a drill's.
    api = httpx.Client(base_url=service.http_url, headers=auth_headers(service), timeout=10)
    with api:
        archived = api.get("/api/devices", params={"building_id": "xq-01", "limit": 10_000, "lifecycle": "retired"})
        assert len(archived.json()) > 50 and all(d["device_id"].startswith("DRILL-") for d in archived.json())
        assert api.get("/api/devices", params={"building_id": "xq-01"}).json() == []  # none left active
        assert api.get("/api/drills/devices").json()["count"] == 0
        incidents = api.get("/api/incidents").json()
        assert [(i["device_id"], i["drill"]) for i in incidents] == [("DRILL-SD-XQ01-0803", True)]


def test_a_scenario_that_jumps_ahead_is_refused_against_a_running_service(service_factory, mosquitto):
    """A service on the wall clock cannot follow a day's jump: the CLI says so (exit 2) and publishes nothing."""
    service = service_factory(mqtt_url=mosquitto.url)
    run = scenario_run("elderly_inactivity_day", service, mosquitto, "--token", new_token(service))
    assert run.returncode == 2, run.stdout + run.stderr[-3000:]
    assert "needs a service on its own simulated clock" in run.stderr
    with httpx.Client(base_url=service.http_url, headers=auth_headers(service), timeout=10) as api:
        assert api.get("/api/stats").json()["received"] == 0
        assert api.get("/api/devices").json() == []


def test_a_wrong_token_or_no_service_is_a_clear_error(service_factory, mosquitto):
    service = service_factory(mqtt_url=mosquitto.url)
    run = scenario_run("kitchen_false_alarm", service, mosquitto, "--token", "not-a-token")
    assert run.returncode == 2, run.stderr[-2000:]
    assert "registering the drill's devices failed: 401" in run.stderr

    gone = type("Gone", (), {"http_url": f"http://127.0.0.1:{free_port()}"})()
    run = scenario_run("kitchen_false_alarm", gone, mosquitto, "--token", "whatever")
    assert run.returncode == 1, run.stderr[-2000:]
    assert f"wanli: the service at {gone.http_url} did not answer" in run.stderr and "Traceback" not in run.stderr
