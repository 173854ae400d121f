"""A whole service in this process for a scenario to play against, on the scenario's clock.

``simulators.scenario`` plays a scenario against any running service through its API and broker;
this module starts one for it (``wanli scenario run``, the integration tests): the runtime with an
embedded broker (or a given one) and a tester's API token. It belongs to the shell, above both the
simulators and the API, so neither imports the runtime.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dashboards.accounts import AccountStore, Role
from devices.registry import DeviceRecord
from devices.street_generator import generate_street
from simulators.clock import SimClock
from simulators.publisher import BrokerAddress
from simulators.scenario import ApiClient, Progress, Scenario, ScenarioResult, run_scenario, start_ms_for
from foundation.ports import free_port
from wanli.runtime import running_in_thread
from wanli.settings import Settings


@contextlib.contextmanager
def embedded_service(scenario: Scenario, clock: SimClock, *, mqtt_url: str = "", data_dir: Path | None = None,
                     alert_tick_s: float = 0.02, **settings: Any) -> Iterator[tuple[Any, ApiClient, BrokerAddress]]:
    """A whole service for the scenario, in this process, reading the scenario's clock.

    With ``mqtt_url`` it uses that broker (a real Mosquitto), else an embedded one on a free port.
    Yields (service, api client, broker address).
    """
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"wanli-{scenario.name}-")))
        values: dict[str, Any] = {"data_dir": data_dir, "http_port": 0, "simulate_building": False,
                                  "alert_tick_s": alert_tick_s, "embedded_broker_port": free_port(),
                                  "mqtt_client_id": f"wanli-scenario-{free_port()}", "mqtt_url": mqtt_url}
        if scenario.hierarchy == "street":
            street_file = data_dir / "street.json"
            data_dir.mkdir(parents=True, exist_ok=True)
            street_file.write_text(json.dumps(generate_street(), ensure_ascii=False), "utf-8")
            values["hierarchy_file"] = street_file
        values.update(settings)
        service = stack.enter_context(running_in_thread(Settings(**values), clock.now_ms))
        host, port = service.settings.mqtt_host_port
        api = ApiClient(service.http_url, {"Authorization": f"Bearer {tester_token(service, scenario.name, clock)}"})
        stack.callback(api.close)
        yield service, api, BrokerAddress(host, port)


def tester_token(service: Any, name: str, clock: SimClock) -> str:
    """An API token with the tester role on a service this process runs (the scenario reads through the API)."""
    store = AccountStore(service.services.engine, service.settings.auth_secret_key.get_secret_value())
    _token, raw = store.create_token(f"scenario {name}", [Role.TESTER], "simulator", clock.now_ms())
    return raw


def run_embedded(scenario: Scenario, *, mqtt_url: str = "", progress: Progress | None = None,
                 stop: threading.Event | None = None, seed: int = 0, **settings: Any) -> ScenarioResult:
    """Start a service on the scenario's clock (embedded broker, or ``mqtt_url``), play the scenario, stop it."""
    clock = SimClock(start_ms_for(scenario), speed=1.0, shared=True)
    with embedded_service(scenario, clock, mqtt_url=mqtt_url, **settings) as (service, api, broker):
        def register(records: list[DeviceRecord]) -> None:
            service.services.registry.register_many(records, actor="simulator", now_ms=clock.now_ms())

        return run_scenario(scenario, api=api, broker=broker, clock=clock, register=register,
                            hierarchy=service.services.hierarchy, progress=progress, stop=stop, seed=seed)
