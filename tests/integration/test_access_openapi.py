"""The OpenAPI document is good enough for a client generator: every operation named, typed,
tagged, with its errors and its security; and the CSV exports as a generator would see them."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.fixtures.service import ServiceFactory


@pytest.fixture
def spec(service_factory: ServiceFactory) -> dict[str, Any]:
    return httpx.get(f"{service_factory().http_url}/openapi.json").json()  # type: ignore[no-any-return]


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def test_every_operation_has_a_unique_name_a_tag_and_a_summary(spec: dict[str, Any]) -> None:
    ids = [op.get("operationId") for _m, _p, op in operations(spec)]
    assert all(i and re.fullmatch(r"[a-z][a-z0-9_]*", i) for i in ids), ids
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for method, path, op in operations(spec):
        assert op.get("tags") and op.get("summary"), (method, path)


def test_every_operation_says_what_it_answers(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        ok = {code: r for code, r in op["responses"].items() if code.startswith("2")}
        assert ok, (method, path)
        for code, response in ok.items():
            if code == "204":
                assert "content" not in response, (method, path)
                continue
            media = response.get("content", {})
            assert media and all(m.get("schema") for m in media.values()), (method, path, code)


def test_guarded_operations_declare_their_security_roles_and_refusals(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["token"] == {"type": "http", "scheme": "bearer", "description": schemes["token"]["description"]}
    assert (schemes["session"]["type"], schemes["session"]["in"], schemes["session"]["name"]) == (
        "apiKey", "cookie", "wanli_session")
    error = {"$ref": "#/components/schemas/ErrorPublic"}
    guarded = 0
    for method, path, op in operations(spec):
        roles = op.get("x-required-roles")
        if roles is None:
            assert "security" not in op, (method, path)  # open: nothing to send
            continue
        guarded += 1
        assert set(roles) <= {"admin", "operator", "maintainer", "tester", "responder", "viewer"}
        assert {"token": []} in op["security"] and {"session": []} in op["security"], (method, path)
        for code in ("401", "403"):
            assert op["responses"][code]["content"]["application/json"]["schema"] == error, (method, path, code)
    assert guarded >= 30


def test_the_csv_exports_are_documented_as_csv(spec: dict[str, Any]) -> None:
    for path in ("/api/incidents.csv", "/api/devices.csv"):
        content = spec["paths"][path]["get"]["responses"]["200"]["content"]
        assert list(content) == ["text/csv"], path
    names = {p["name"] for p in spec["paths"]["/api/devices.csv"]["get"]["parameters"]}
    listed = {p["name"] for p in spec["paths"]["/api/devices"]["get"]["parameters"]}
    assert names == listed - {"limit", "offset"}  # the list's filters; the export has no pages
    names = {p["name"] for p in spec["paths"]["/api/incidents.csv"]["get"]["parameters"]}
    assert names == {p["name"] for p in spec["paths"]["/api/incidents"]["get"]["parameters"]}
