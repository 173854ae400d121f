"""All configuration in one place.

Every setting can be given as an environment variable with the ``WANLI_`` prefix
(``WANLI_MQTT_URL=mqtt://127.0.0.1:1883``) or as a ``wanli run`` flag. Core logic never
imports this module: the runtime reads one ``Settings`` object and passes the pieces
each constructor needs.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from devices.topics import subscription


class TelemetryBackend(StrEnum):
    SQLITE = "sqlite"
    INFLUXDB1 = "influxdb1"
    INFLUXDB2 = "influxdb2"


class Mode(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


# Public, so refused outside development mode (see _check_auth).
DEVELOPMENT_SECRET_KEY = "wanli-development-only-secret-key-not-for-production"
# The service's MQTT connections by client-id suffix: ingest's main lane, its alarm lane, the dispatcher.
ALARM_LANE_SUFFIX, DISPATCH_SUFFIX = "-alarms", "-dispatch"
MQTT_CONNECTION_SUFFIXES = ("", ALARM_LANE_SUFFIX, DISPATCH_SUFFIX)


class Settings(BaseSettings):
    # hide_input_in_errors: a bad configuration must not print the passwords given with it
    model_config = SettingsConfigDict(env_prefix="WANLI_", extra="forbid", hide_input_in_errors=True)

    mode: Mode = Mode.DEVELOPMENT
    street: str = Field(default="wanli", pattern=r"^[a-z0-9_-]{1,32}$")
    data_dir: Path = Path("var")
    hierarchy_file: Path | None = None  # the street's hierarchy; None: the built-in sample of Wanli
    thresholds_file: Path | None = None  # alert thresholds overridden per building and device (alerts/thresholds.py)
    webhook_url: str = ""  # the city's unified platform: every notice is POSTed here too (empty: none)
    alert_tick_s: float = Field(default=1.0, gt=0, le=60)  # how often rules look at the time and escalations climb

    # MQTT. Empty URL means: start the embedded amqtt broker on embedded_broker_port.
    mqtt_url: str = ""
    mqtt_username: str = ""
    mqtt_password: str = ""
    # A file holding the password instead (a Docker secret, /run/secrets/…): it wins over WANLI_MQTT_PASSWORD.
    mqtt_password_file: Path | None = None
    mqtt_client_id: str = "wanli-ingest"
    # Each of the service's connections (ingest, its alarm lane, the dispatcher) logs in as
    # WANLI_MQTT_USERNAME plus its suffix (mqtt_login): a broker that takes the username as the
    # client id (config/mosquitto/auth.conf) would otherwise close one whenever another connects.
    mqtt_username_per_connection: bool = True
    # When set, the service keeps an external Mosquitto's password and ACL files (in this
    # directory) in step with the registry and signals the process in the pid file to reload.
    broker_auth_dir: Path | None = None
    broker_pid_file: Path | None = None
    # A credential change the managed broker has not confirmed (its canary login) after this
    # long raises the broker_access_unconfirmed condition (devices/broker_access.py).
    broker_access_unconfirmed_s: float = Field(default=10.0, gt=0)
    # While unconfirmed, SIGHUP is sent again this often (Mosquitto drops one that comes mid-reload).
    broker_access_resend_ms: int = Field(default=500, ge=20)
    embedded_broker_host: str = "127.0.0.1"
    embedded_broker_port: int = 1883

    # Registry, incidents, dead letters. Empty URL means SQLite under data_dir.
    database_url: str = ""

    telemetry_backend: TelemetryBackend = TelemetryBackend.SQLITE
    influx_url: str = "http://127.0.0.1:8086"
    influx_database: str = "wanli"  # InfluxDB 1.x database
    influx_username: str = ""
    influx_password: str = ""
    influx_org: str = "wanli"  # InfluxDB 2.x
    influx_bucket: str = "wanli"
    influx_token: str = ""

    http_host: str = "127.0.0.1"
    http_port: int = 8000

    # Scale-out: which topic families this ingest worker takes (comma-separated filters under
    # safety/), and the shared-subscription group they are taken in (empty: plain subscriptions).
    # Partition devices across workers by family (docs/scaling.md): one device, one worker.
    ingest_topics: str = subscription()  # safety/#: everything, so a malformed topic is dead-lettered too
    ingest_share_group: str = Field(default="", pattern=r"^[A-Za-z0-9_-]{0,64}$")

    # Ingest batching: a batch closes at this many messages or after this long.
    ingest_batch_size: int = Field(default=2000, ge=1, le=50_000)
    ingest_batch_wait_ms: int = Field(default=20, ge=1, le=5_000)
    ingest_queue_size: int = Field(default=50_000, ge=100)
    # Events (alarms, presses, faults) on a session of their own, served first (docs/scaling.md).
    ingest_alarm_lane: bool = True
    max_payload_bytes: int = Field(default=16_384, ge=256)
    # Points waiting on local disk while the telemetry store is away (about 100 bytes each).
    spool_max_points: int = Field(default=20_000_000, ge=1000)

    # The simulated building started by `wanli run` (0 disables it).
    simulate_building: bool = True
    simulate_heartbeat_seconds: float = Field(default=30.0, gt=0)
    simulate_alarm_every_seconds: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _check_urls(self) -> "Settings":
        for topic_filter in self.ingest_topic_filters:
            if not topic_filter.startswith("safety/") or "$" in topic_filter:
                raise ValueError(f"WANLI_INGEST_TOPICS: {topic_filter!r} is not a filter under safety/")
        if not self.ingest_topic_filters:
            raise ValueError("WANLI_INGEST_TOPICS names no topic filter")
        if self.mqtt_url:
            parts = urlsplit(self.mqtt_url)
            if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
                raise ValueError(f"WANLI_MQTT_URL must look like mqtt://host:port, got {self.mqtt_url!r}")
        if self.mqtt_password_file is not None:
            try:
                self.mqtt_password = self.mqtt_password_file.read_text("utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"WANLI_MQTT_PASSWORD_FILE: cannot read {self.mqtt_password_file}: "
                                 f"{type(exc).__name__}") from None
            if not self.mqtt_password:
                raise ValueError(f"WANLI_MQTT_PASSWORD_FILE: {self.mqtt_password_file} is empty")
        if self.mode is Mode.PRODUCTION and self.mqtt_url and not self.mqtt_password:
            raise ValueError("production mode refuses an anonymous broker: set WANLI_MQTT_PASSWORD_FILE (or "
                             "WANLI_MQTT_PASSWORD) and let the service manage the broker's accounts "
                             "(WANLI_BROKER_AUTH_DIR, docs/access.md)")
        if self.mode is Mode.PRODUCTION and self.telemetry_backend is TelemetryBackend.INFLUXDB2:
            if not self.influx_token or "development-only" in self.influx_token:
                raise ValueError("WANLI_INFLUX_TOKEN must be set to a real secret for InfluxDB 2.x in production mode")
        return self

    # --- Access (docs/access.md): people sign in for a session cookie, machines send a Bearer token.
    # The key turns session ids and API tokens into the digests the database keeps: someone with a
    # copy of the database alone can neither use nor check one. Changing it signs everybody out and
    # voids every token. Production refuses the development key, an empty one or a short one.
    auth_secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET_KEY)
    auth_session_idle_hours: float = Field(default=12.0, gt=0, le=24 * 30)  # unused this long: signed out
    auth_session_max_days: float = Field(default=30.0, gt=0, le=365)  # signed out this long after login anyway
    auth_cookie_secure: bool | None = None  # None: Secure cookies in production (behind HTTPS), not in development

    @model_validator(mode="after")
    def _check_auth(self) -> "Settings":
        key = self.auth_secret_key.get_secret_value()
        if not key and self.mode is Mode.DEVELOPMENT:  # e.g. WANLI_AUTH_SECRET_KEY= passed through empty by compose
            self.auth_secret_key = SecretStr(DEVELOPMENT_SECRET_KEY)
        elif self.mode is Mode.PRODUCTION and (len(key) < 32 or "development-only" in key):
            raise ValueError("WANLI_AUTH_SECRET_KEY must be set to a secret of at least 32 characters in production "
                             "mode (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return self

    @property
    def auth_cookie_is_secure(self) -> bool:
        return self.mode is Mode.PRODUCTION if self.auth_cookie_secure is None else self.auth_cookie_secure

    @property
    def ingest_topic_filters(self) -> list[str]:
        return [f.strip() for f in self.ingest_topics.split(",") if f.strip()]

    def mqtt_login(self, suffix: str = "") -> str:
        """The username the service's connection with this client-id suffix logs in with ("" for ingest's main one).

        ``{WANLI_MQTT_USERNAME}{suffix}``; under a managed broker with no username set, the client id stands for it
        (the broker's files give that account). Empty: no login.
        """
        base = self.mqtt_username or (self.mqtt_client_id if self.broker_auth_dir else "")
        return f"{base}{suffix}" if base and self.mqtt_username_per_connection else base

    def mqtt_logins(self) -> list[str]:
        """Every username the service logs in with: the managed broker gets an account for each."""
        return list(dict.fromkeys(self.mqtt_login(suffix) for suffix in MQTT_CONNECTION_SUFFIXES))

    @property
    def uses_embedded_broker(self) -> bool:
        return not self.mqtt_url

    @property
    def mqtt_host_port(self) -> tuple[str, int]:
        if self.uses_embedded_broker:
            return self.embedded_broker_host, self.embedded_broker_port
        parts = urlsplit(self.mqtt_url)
        return parts.hostname or "127.0.0.1", parts.port or 1883

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'wanli.db'}"

    @property
    def telemetry_sqlite_path(self) -> Path:
        return self.data_dir / "telemetry.db"
