import pytest
from pydantic import ValidationError

from wanli.settings import Settings


def test_embedded_defaults_need_nothing_installed(tmp_path):
    s = Settings(data_dir=tmp_path)
    assert s.uses_embedded_broker and s.mqtt_host_port == ("127.0.0.1", 1883)
    assert s.telemetry_backend == "sqlite" and s.resolved_database_url == f"sqlite:///{tmp_path / 'wanli.db'}"


def test_an_external_broker_url_is_parsed(monkeypatch):
    monkeypatch.setenv("WANLI_MQTT_URL", "mqtt://broker.local:11883")
    s = Settings()
    assert not s.uses_embedded_broker and s.mqtt_host_port == ("broker.local", 11883)


@pytest.mark.parametrize("url", ["http://x:1", "broker:1883", "mqtt://"])
def test_a_bad_broker_url_is_refused_with_the_setting_named(url):
    with pytest.raises(ValidationError, match="WANLI_MQTT_URL"):
        Settings(mqtt_url=url)


@pytest.mark.parametrize("token", ["", "wanli-dev-token-development-only"])
def test_production_refuses_a_missing_or_development_influx_token(token):
    with pytest.raises(ValidationError, match="WANLI_INFLUX_TOKEN"):
        Settings(mode="production", telemetry_backend="influxdb2", influx_token=token)
    Settings(mode="development", telemetry_backend="influxdb2", influx_token=token)  # fine on a laptop


def test_notify_secrets_come_from_the_environment_and_never_show(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WANLI_NOTIFY_DINGTALK_SECRETS", '{"*": "SEC-dingtalk-secret"}')
    monkeypatch.setenv("WANLI_NOTIFY_SMTP_PASSWORD", "smtp-password-1")
    monkeypatch.setenv("WANLI_NOTIFY_ALIYUN_ACCESS_KEY_SECRET", "aliyun-secret-1")
    s = Settings()
    assert s.notify_dingtalk_secrets["*"].get_secret_value() == "SEC-dingtalk-secret"
    shown = repr(s) + str(s.model_dump())
    assert not any(secret in shown for secret in ("SEC-dingtalk", "smtp-password-1", "aliyun-secret-1"))
    # the answer links are signed with a key derived from the session key, never with the session key itself
    assert s.notify_link_key != s.auth_secret_key.get_secret_value() and len(s.notify_link_key) == 64
    assert Settings(notify_link_secret="x" * 40).notify_link_key == "x" * 40


def test_a_short_callback_token_or_link_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="CALLBACK_TOKEN"):
        Settings(notify_callback_token="short")
    with pytest.raises(ValueError, match="LINK_SECRET"):
        Settings(mode="production", auth_secret_key="k" * 40, notify_link_secret="short",
                 mqtt_url="mqtt://broker:1883", mqtt_username="wanli", mqtt_password="p" * 20)
    Settings(notify_callback_token="a-long-enough-token-123")
def test_production_refuses_an_anonymous_external_broker(tmp_path):
    with pytest.raises(ValidationError, match="refuses an anonymous MQTT connection"):
        Settings(mode="production", mqtt_url="mqtt://mosquitto:1883", auth_secret_key="k" * 40)
    Settings(mode="production", mqtt_url="mqtt://mosquitto:1883", auth_secret_key="k" * 40, mqtt_username="wanli",
             mqtt_password="s3cret")
    Settings(mode="development", mqtt_url="mqtt://mosquitto:1883")  # fine on a laptop


def test_the_broker_password_comes_from_a_secrets_file(tmp_path, monkeypatch):
    secret = tmp_path / "mqtt_password"
    secret.write_text("from-the-file\n")
    monkeypatch.setenv("WANLI_MQTT_PASSWORD_FILE", str(secret))
    assert Settings(mqtt_password="from-the-environment").mqtt_password == "from-the-file"
    secret.write_text("\n")
    with pytest.raises(ValidationError, match="WANLI_MQTT_PASSWORD_FILE.*empty"):
        Settings()
    with pytest.raises(ValidationError, match="WANLI_MQTT_PASSWORD_FILE: cannot read") as refused:
        Settings(mqtt_password_file=tmp_path / "missing")
    assert "from-the" not in str(refused.value)


def test_broker_access_limits_are_checked():
    with pytest.raises(ValidationError, match="broker_access_resend_ms"):
        Settings(broker_access_resend_ms=5)
    with pytest.raises(ValidationError, match="broker_access_unconfirmed_s"):
        Settings(broker_access_unconfirmed_s=0)
