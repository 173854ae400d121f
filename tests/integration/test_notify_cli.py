"""``wanli notify test --person NAME``: a test through every contact point, and what came back."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from alerts.notify.base import ContactKind
from alerts.notify.rules import ContactPoint
from alerts.notify.store import NotifyStore
from tests.fixtures.notify_servers import ContractServer, SmtpInbox, contract_server, smtp_server  # noqa: F401
from tests.fixtures.servers import free_port
from wanli.cli import main
from foundation.db import create_schema, make_engine


def test_notify_test_sends_through_every_contact_point_and_prints_each_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture, contract_server: ContractServer, smtp_server: SmtpInbox) -> None:
    env = {"WANLI_DATA_DIR": str(tmp_path), "WANLI_NOTIFY_GAMMU_DIR": str(tmp_path / "gammu"),
           "WANLI_NOTIFY_WECOM_ENABLED": "true", "WANLI_NOTIFY_WECOM_URL": f"{contract_server.url}/cgi-bin/webhook/send",
           "WANLI_NOTIFY_SMTP_HOST": "127.0.0.1", "WANLI_NOTIFY_SMTP_PORT": str(smtp_server.port),
           "WANLI_NOTIFY_SMTP_SECURITY": "none", "WANLI_NOTIFY_SMTP_PASSWORD": "hunter2-secret",
           "WANLI_NOTIFY_DINGTALK_ENABLED": "true", "WANLI_NOTIFY_DINGTALK_URL": f"{contract_server.url}/robot/send",
           "WANLI_NOTIFY_DINGTALK_SECRETS": '{"*": "SEC-wrong-secret"}'}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    engine = make_engine(f"sqlite:///{tmp_path / 'wanli.db'}")
    create_schema(engine)
    person = "楼组长 李阿姨"
    NotifyStore(engine).replace_contact_points(person, [
        ContactPoint(person, ContactKind.WECOM, "wecom-key-building-xq01"),
        ContactPoint(person, ContactKind.DINGTALK, "dingtalk-token-ops"),
        ContactPoint(person, ContactKind.EMAIL, "li@example.org")], "test", 0)
    engine.dispose()
    caplog.set_level(logging.DEBUG)

    assert main(["notify", "test", "--person", person]) == 1  # one contact point failed: say so in the exit code
    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines()}
    assert lines["wecom"].startswith("ok") and len(contract_server.of("wecom")) == 1
    assert lines["email"].startswith("ok") and smtp_server.messages[0]["To"] == "li@example.org"
    assert lines["sms"].startswith("ok") and "gammu" in lines["sms"] and "137****0001" in lines["sms"]
    assert lines["voice"].startswith("FAILED") and "no provider" in lines["voice"]
    assert lines["dingtalk"].startswith("FAILED") and "310000" in lines["dingtalk"]  # the wrong secret, as DingTalk says
    assert list((tmp_path / "gammu" / "outbox").glob("OUTA_13700000001_*.txt"))
    assert "hunter2" not in out + caplog.text and "SEC-wrong" not in out + caplog.text

    assert main(["notify", "test", "--person", "nobody at all"]) == 2
    assert "nobody" in capsys.readouterr().err


def test_notify_test_with_the_smtp_server_down_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WANLI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WANLI_NOTIFY_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("WANLI_NOTIFY_SMTP_PORT", str(free_port()))
    engine = make_engine(f"sqlite:///{tmp_path / 'wanli.db'}")
    create_schema(engine)
    NotifyStore(engine).replace_contact_points("值班 张三", [ContactPoint("值班 张三", ContactKind.EMAIL, "z@example.org")],
                                               "test", 0)
    engine.dispose()
    assert main(["notify", "test", "--person", "值班 张三"]) == 1
    assert "FAILED  email" in capsys.readouterr().out
