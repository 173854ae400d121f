"""The command line's manners (issue 16): an unreachable service or broker is one line saying what to try, never a
traceback; --api and WANLI_TOKEN in every API command's --help; no library INFO lines; no escape codes in files."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.servers import MosquittoServer, free_port
from tests.fixtures.service import ServiceFactory, new_token, register_building
from wanli.cli import build_parser

pytestmark = pytest.mark.mosquitto


def wanli(*args: str, data_dir: Path, token: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WANLI_DATA_DIR": str(data_dir), "WANLI_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "wanli.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_an_unreachable_service_or_broker_is_one_line_with_what_to_try(
        service_factory: ServiceFactory, mosquitto: MosquittoServer, tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    for args in (("devices", "list", "--api", nowhere), ("simulate", "alarm", "SD-XQ01-0101", "--api", nowhere),
                 ("scenario", "run", "kitchen_false_alarm", "--api", nowhere)):
        done = wanli(*args, data_dir=tmp_path)
        assert done.returncode == 1, (args, done.stderr)
        assert "Traceback" not in done.stderr and nowhere in done.stderr and "--api" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) <= 2, done.stderr

    # The service is there, the broker is not where the command was told: one line, and the drill's devices archived.
    service = service_factory(mqtt_url=mosquitto.url)
    register_building(service)
    no_broker = f"mqtt://127.0.0.1:{free_port()}"
    done = wanli("simulate", "alarm", "SD-XQ01-0101", "--api", service.http_url, "--mqtt-url", no_broker,
                 data_dir=tmp_path, token=new_token(service, "tester"))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"cannot reach the MQTT broker at {no_broker}" in done.stderr and "--mqtt-url" in done.stderr
    assert not [r for r in service.services.registry.active() if r.device_id.startswith("DRILL-")]
    done = wanli("scenario", "run", "press_then_cancel", "--api", service.http_url, "--mqtt-url", no_broker,
                 data_dir=tmp_path, token=new_token(service, "tester"))
    assert done.returncode == 1 and "Traceback" not in done.stderr and no_broker in done.stderr, done.stderr
    assert not [r for r in service.services.registry.active() if r.device_id.startswith("DRILL-")]  # archived
    done = wanli("simulate", "alarm", "SD-XQ01-0101", "--api", service.http_url, data_dir=tmp_path, token="not-a-token")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "(401)" in done.stderr, done.stderr
    assert "WANLI_TOKEN" in done.stderr


def test_help_names_the_api_and_the_token_and_commands_stay_quiet(tmp_path: Path) -> None:
    for args in (("devices", "list"), ("devices", "import"), ("simulate", "alarm"), ("simulate", "building"),
                 ("scenario", "run")):
        shown = io.StringIO()
        with contextlib.redirect_stdout(shown), pytest.raises(SystemExit):
            build_parser().parse_args([*args, "--help"])
        assert "--api" in shown.getvalue() and "WANLI_TOKEN" in shown.getvalue(), (args, shown.getvalue())
    # a command that opens the database migrates it quietly: no Alembic INFO lines, nothing but its answer
    done = wanli("users", "list", data_dir=tmp_path)
    assert done.returncode == 0 and "INFO" not in done.stderr and "alembic" not in done.stderr.lower(), done.stderr
