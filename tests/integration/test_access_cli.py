"""``wanli users`` and ``wanli tokens``: the first admin before the first start, and machines' tokens."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from tests.fixtures.service import ServiceFactory
from wanli.cli import main


def test_the_first_admin_is_made_before_the_first_start_and_tokens_work_until_revoked(
    service_factory: ServiceFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("WANLI_DATA_DIR", str(data))
    monkeypatch.setattr("sys.stdin", io.StringIO("first-admin-password\n"))
    assert main(["users", "add", "chief", "--role", "admin", "--name", "街道城运中心 主任", "--password-stdin"]) == 0
    assert main(["tokens", "create", "city-platform", "--role", "viewer"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith("wlt_")

    service = service_factory(data_dir=data)
    assert "sign in as dev" not in capsys.readouterr().out  # an account exists: no development account is made
    signed = httpx.post(f"{service.http_url}/api/auth/login", json={"username": "chief", "password": "first-admin-password"})
    assert signed.status_code == 200 and signed.json()["actor"] == "街道城运中心 主任（chief）"
    reader = service_factory.client(service, token=token)
    assert reader.get("/api/incidents").status_code == 200
    assert reader.post("/api/devices", json={}).status_code == 403

    assert main(["users", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == ["chief\tadmin\t街道城运中心 主任\t"]
    assert main(["tokens", "revoke", "1"]) == 0
    assert reader.get("/api/incidents").status_code == 401  # the running service sees it on the next request
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    with pytest.raises(SystemExit, match="at least 12 characters"):
        main(["users", "add", "weak", "--role", "viewer", "--password-stdin"])
    monkeypatch.setattr("sys.stdin", io.StringIO("password1234\n"))
    with pytest.raises(SystemExit, match="common password"):
        main(["users", "add", "weak", "--role", "viewer", "--password-stdin"])
