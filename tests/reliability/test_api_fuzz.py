"""API fuzzing from the service's own OpenAPI document (schemathesis): no request gets a 5xx.

Every operation in ``/openapi.json`` is called with inputs schemathesis generates from its
schema, valid and invalid, as an admin (the role that may call every route; the access
rules themselves are tests/integration/test_access*.py's business). A 4xx is the right
answer to a bad request; a 500 is a bug. ``HYPOTHESIS_PROFILE=thorough`` for more examples.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation

from tests.fixtures.servers import free_port
from tests.fixtures.service import new_token, register_building
from wanli.runtime import WanliService, running_in_thread
from wanli.settings import Settings

pytestmark = pytest.mark.slow

def credentials(service: WanliService) -> dict[str, str]:
    """A fresh admin token: a fuzzed DELETE /api/tokens/{id} may revoke any earlier one."""
    return {"Authorization": f"Bearer {new_token(service)}"}


# Streams never end; a fuzzer would wait on them until its timeout.
ENDLESS = r"^/api/stream$"
EXAMPLES = 10
# Operations left out of the sweep, with why (none now: GET /api/devices.csv broke off mid-body when a filter named an
# unknown community, raised inside the streamed rows after the 200; tests/integration/test_exports.py holds it).
UNSTABLE: dict[str, str] = {}


@pytest.fixture(scope="module")
def fuzzed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WanliService]:
    """One service for the whole module, with a building registered so ids in paths can hit something real."""
    data = Path(tmp_path_factory.mktemp("fuzzed"))
    settings = Settings(data_dir=data, embedded_broker_port=free_port(), http_port=0, simulate_building=False,
                        mqtt_client_id=f"wanli-fuzz-{free_port()}")
    with running_in_thread(settings) as service:
        register_building(service)
        yield service


@pytest.fixture(scope="module")
def operations(fuzzed_service: WanliService) -> list[APIOperation]:
    document = httpx.get(f"{fuzzed_service.http_url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document).exclude(path_regex=ENDLESS)
    return [result.ok() for result in schema.get_all_operations()]


# schemathesis's own pytest plugin (from_fixture) fails under pytest 9 ("'Function' object has no
# attribute '_nodeid'"), so each operation's strategy is driven by hypothesis here.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_request_the_schema_allows_or_not_gets_a_server_error(operations, fuzzed_service, mode):
    failures: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    for operation in operations:
        if operation.label in UNSTABLE:
            continue
        headers = credentials(fuzzed_service)  # one line: the credentials every call carries

        @settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case) -> None:
            response = case.call_and_validate(base_url=fuzzed_service.http_url, headers=headers,
                                              checks=[not_a_server_error], timeout=30)
            statuses[response.status_code] += 1

        try:
            call()
        except Unsatisfiable:  # nothing in the operation can be made invalid (no parameters, or any string goes)
            assert mode is GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # noqa: BLE001 - collected: every operation is tried, all failures reported
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:1500]}"
    print(f"\n{mode.value}: {sum(statuses.values())} calls, statuses {dict(sorted(statuses.items()))}")
    assert statuses[401] + statuses[403] < sum(statuses.values()) / 10  # the calls got past the door
    assert operations and not failures, "\n\n".join(f"{label}\n{why}" for label, why in failures.items())


# --- integers past 64 bits, in every integer parameter the document declares ---------------------

HUGE = (2**63, 10**30, -(2**63) - 1)  # one past SQLite's and PostgreSQL's BIGINT, far past, and below
KNOWN_SERVER_ERRORS: dict[tuple[str, str, str], str] = {
    # (method, path, parameter): a bug reported and not yet fixed. before_id of /api/dead-letters and
    # token_id of DELETE /api/tokens/{token_id} answered 500 past 64 bits; both are bounded now.
}


def integer_parameters(document: dict) -> list[tuple[str, str, dict, dict]]:
    """(method, path, operation, parameter) for every integer parameter of every operation."""
    out = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if "integer" in [schema.get("type"), *(s.get("type") for s in schema.get("anyOf", []))]:
                    out.append((method.upper(), path, operation, parameter))
    return out


def call_with(service: WanliService, method: str, path: str, operation: dict, parameter: dict, value: int) -> int:
    url, params = path, {}
    for p in operation.get("parameters", []):
        if p["in"] == "path":
            url = url.replace("{%s}" % p["name"], str(value) if p is parameter else "xq-01")
    if parameter["in"] == "query":
        params[parameter["name"]] = value
    body = {} if "requestBody" in operation else None
    status = httpx.request(method, f"{service.http_url}{url}", params=params, json=body,
                           headers=credentials(service), timeout=30).status_code
    assert status not in (401, 403), (method, path, status)
    return status


def test_integers_past_64_bits_in_any_integer_parameter_get_a_4xx_not_a_500(fuzzed_service):
    document = httpx.get(f"{fuzzed_service.http_url}/openapi.json", timeout=10).json()
    swept = [(m, p, op, par) for m, p, op, par in integer_parameters(document)
             if (m, p, par["name"]) not in KNOWN_SERVER_ERRORS and not re.match(ENDLESS, p)]
    assert len(swept) >= 5  # the sweep sees the document's integer parameters (limits, offsets, ids)
    server_errors = [(m, p, par["name"], v) for m, p, op, par in swept for v in HUGE
                     if call_with(fuzzed_service, m, p, op, par, v) >= 500]
    assert server_errors == []
