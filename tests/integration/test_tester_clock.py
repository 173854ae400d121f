"""A tester's accelerated clock (issue 16): `wanli run` on WANLI_CLOCK_SPEED, a day-long scenario against it.

The tester starts the service themselves (`wanli run`, its own process, on a real Mosquitto) with a
clock at 3,600 times real time from 08:59 Shanghai time, then plays `elderly_inactivity_day` against
it with `wanli scenario run … --api`: 26 hours and more without activity in 1201 pass in about half a
minute, as a drill, and the welfare incidents come within 25 simulated hours while the neighbours'
homes raise nothing. Production refuses the clock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from simulators.clock import SHANGHAI
from tests.fixtures.servers import MosquittoServer, free_port
from tests.fixtures.service import wait_for
from wanli.settings import Settings

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

SPEED = 3600


def test_a_day_long_scenario_runs_against_wanli_run_on_an_accelerated_clock(mosquitto: MosquittoServer,
                                                                            tmp_path: Path) -> None:
    start = (datetime.now(SHANGHAI) + timedelta(days=1)).replace(hour=8, minute=59, second=0, microsecond=0)
    port = free_port()
    env = {**os.environ, "WANLI_DATA_DIR": str(tmp_path / "var"), "WANLI_MQTT_URL": mosquitto.url,
           "WANLI_HTTP_PORT": str(port), "WANLI_MQTT_CLIENT_ID": f"wanli-clock-{port}", "WANLI_ALERT_TICK_S": "0.1",
           "WANLI_CLOCK_SPEED": str(SPEED), "WANLI_CLOCK_START": start.isoformat()}
    service = subprocess.Popen([sys.executable, "-m", "wanli.cli", "run", "--no-simulate"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        found = wait_for(lambda: (tmp_path / "var" / "service.json").is_file()
                         and json.loads((tmp_path / "var" / "service.json").read_text()), timeout_s=60)
        api = found["http_url"]
        assert httpx.get(f"{api}/api/clock").status_code == 401  # read signed in, like everything else
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "wanli.cli", "scenario", "run", "elderly_inactivity_day",
                               "--api", api, "--mqtt-url", mosquitto.url, "--json"],
                              env={**env, "WANLI_TOKEN": ""}, capture_output=True, text=True, timeout=240, check=False)
        real_s = time.monotonic() - started
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout)
        assert result["ok"], result["outcomes"]
        assert result["sim_seconds"] >= 26 * 3600 and real_s < 120, (result["sim_seconds"], real_s)
        met = {o["expectation"].split(" ")[0]: o["met"] for o in result["outcomes"]}
        assert met and all(met.values())
        assert "\x1b[" not in done.stderr  # the progress went to a pipe: no escape codes

        with httpx.Client(base_url=api, timeout=10) as c:  # signed in as development mode's account, as the CLI did
            signed = c.post("/api/auth/login", json={"username": "dev", "password": "wanli-dev"})
            assert signed.status_code == 200
            c.headers["X-CSRF-Token"] = signed.json()["csrf_token"]  # a session's changes carry it
            now = c.get("/api/clock").json()
            assert now["speed"] == SPEED and now["test_clock"] is True
            assert now["now_ms"] > start.timestamp() * 1000 + 26 * 3600 * 1000  # the service's day went by too
            # a stepped clock: a night skipped at once
            stepped = c.post("/api/clock/advance", json={"seconds": 8 * 3600})
            assert stepped.status_code == 200, stepped.text
            assert stepped.json()["now_ms"] >= now["now_ms"] + 8 * 3600 * 1000
            assert c.post("/api/clock/advance", json={"seconds": -1}).status_code == 422
            welfare = [i for i in c.get("/api/incidents").json() if i["condition"] in ("no_activity", "low_water_use")]
            assert {i["device_id"] for i in welfare} == {"DRILL-EA-XQ01-1201", "DRILL-WM-XQ01-1201"}
            assert all(i["drill"] for i in welfare)
            assert c.get("/api/drills/devices").json()["count"] == 0  # the drill's devices archived
    finally:
        service.terminate()
        out, err = service.communicate(timeout=30)
    assert "a tester's" in out, out  # `wanli run` says which clock it runs on
    assert not (tmp_path / "var" / "service.json").exists()  # gone with the service


def test_production_refuses_a_testers_clock() -> None:
    secure = {"mode": "production", "mqtt_url": "mqtt://127.0.0.1:1883", "mqtt_username": "wanli-ingest",
              "mqtt_password": "x" * 16, "auth_secret_key": "k" * 40}
    Settings(**secure)  # the real clock: fine
    for clock in ({"clock_speed": 60}, {"clock_start": "2026-12-07T09:00:00+08:00"}):
        with pytest.raises(ValidationError, match="real clock"):
            Settings(**secure, **clock)
    with pytest.raises(ValidationError, match="time zone"):
        Settings(clock_start="2026-12-07T09:00:00")
