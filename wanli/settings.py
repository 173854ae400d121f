"""All configuration in one place.

Every setting can be given as an environment variable with the ``WANLI_`` prefix
(``WANLI_MQTT_URL=mqtt://127.0.0.1:1883``) or as a ``wanli run`` flag. Core logic never
imports this module: the runtime reads one ``Settings`` object and passes the pieces
each constructor needs.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from devices.reserved import MQTT_CONNECTION_SUFFIXES
from devices.topics import subscription
from ingest.dead_letters import DeadLetterBounds
from ingest.rate_limit import RateLimitPolicy


class TelemetryBackend(StrEnum):
    SQLITE = "sqlite"
    INFLUXDB1 = "influxdb1"
    INFLUXDB2 = "influxdb2"


class Mode(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


# Public, so refused outside development mode (see _check_auth).
DEVELOPMENT_SECRET_KEY = "wanli-development-only-secret-key-not-for-production"


class Settings(BaseSettings):
    # hide_input_in_errors: a bad configuration must not print the passwords given with it
    model_config = SettingsConfigDict(env_prefix="WANLI_", extra="forbid", hide_input_in_errors=True)

    mode: Mode = Mode.DEVELOPMENT
    street: str = Field(default="wanli", pattern=r"^[a-z0-9_-]{1,32}$")
    data_dir: Path = Path("var")
    hierarchy_file: Path | None = None  # the street's hierarchy; None: the built-in sample of Wanli
    thresholds_file: Path | None = None  # alert thresholds overridden per building and device (alerts/thresholds.py)
    # the escalation policy document that seeds an empty database (alerts/policy_store.py); None: alerts/policies.json
    policy_file: Path | None = None
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
    # A change to a few devices goes to the broker's dynamic-security plugin (no reload; config/mosquitto/
    # auth.conf loads it) instead of a rewritten password file; off: every change rewrites the file and reloads.
    broker_dynamic_security: bool = True
    # The plugin's clients are folded into the password file (one reload) past this many; a generation of more
    # devices than broker_dynamic_security_batch (bulk credentials) goes through the file at once.
    broker_dynamic_security_limit: int = Field(default=5000, ge=1)
    broker_dynamic_security_batch: int = Field(default=250, ge=1)
    embedded_broker_host: str = "127.0.0.1"
    embedded_broker_port: int = 1883
    # The broker address devices are given with their credentials (the page's files, the credentials API):
    # mqtt://host:1883 or mqtts://host:8883 as installers reach it; empty: the broker the service itself uses.
    device_broker_url: str = Field(default="", pattern=r"^$|^mqtts?://[^\s/]+(:\d+)?/?$")

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
    # The main lane's MQTT receiver: paho (MQTT 3.1.1), or bulk (MQTT 5: large reads parsed by the mqtt5 codec,
    # ingest/bulk_receiver.py). The alarm lane's is always paho.
    ingest_receiver: str = Field(default="paho", pattern=r"^(paho|bulk)$")
    max_payload_bytes: int = Field(default=16_384, ge=256)
    # Points waiting on local disk while the telemetry store is away (about 100 bytes each).
    spool_max_points: int = Field(default=20_000_000, ge=1000)
    # Points per write when the spool drains (a replay after an outage goes in requests this large; InfluxDB 1.6
    # took them fastest at about 5,000 here: wanli bench spool). At about 180 bytes a line, 100,000 stays under
    # InfluxDB 1.x's default max-body-size of 25 MB.
    spool_drain_batch_points: int = Field(default=5_000, ge=100, le=100_000)
    # What telemetry does while the spool cannot take it (at its bound, its disk at the reserve):
    # hold (not acknowledged; the broker keeps it) or drop (acknowledged, counted). Alarms never wait.
    telemetry_overflow: str = Field(default="hold", pattern=r"^(hold|drop)$")

    # --- The alarm path's own faults (docs/reliability.md, "System incidents").
    # Free space kept on every data directory's disk for incidents and their audit: below it,
    # telemetry, dead letters and device-state flushes stop writing (counted, not stored).
    disk_reserve_mb: int = Field(default=256, ge=1)
    disk_alert_fill: float = Field(default=0.90, gt=0, le=1)  # a disk fuller than this is a system incident
    fault_telemetry_down_s: float = Field(default=60.0, ge=0)  # telemetry store unreachable this long: incident
    fault_notices_stuck_s: float = Field(default=120.0, ge=0)  # a notice unsent this long (dispatcher, webhook)
    fault_broker_down_s: float = Field(default=30.0, ge=0)  # ingest not subscribed to the broker this long
    fault_receiver_restarts: int = Field(default=3, ge=1)  # receiver restarts within 5 minutes: incident
    fault_dead_letters_per_min: int = Field(default=120, ge=1)  # one device's dead letters a minute: incident
    fault_clock_skew_s: float = Field(default=120.0, gt=0)  # the devices' median clock this far from the server's
    fault_role_unheld_s: float = Field(default=15.0, ge=0)  # a role (ingest, escalation, dispatch) held by nobody

    # Several instances as one service (foundation/leases.py, docs/scaling.md "High availability"): on one
    # PostgreSQL, each role is held by one instance under a lease; the others stand by and take over.
    instance_name: str = Field(default="", max_length=120, pattern=r"^[A-Za-z0-9_.:@-]*$")  # "": host-pid-random
    roles: str = Field(default="ingest,escalation,dispatch", pattern=r"^[a-z,]*$")  # the roles this one may take
    lease_ttl_s: float = Field(default=5.0, ge=1, le=120)  # a role not renewed this long passes to another
    lease_renew_s: float = Field(default=1.0, gt=0, le=30)  # how often a holder renews (at most ttl/2)

    # The simulated building started by `wanli run` (0 disables it).
    simulate_building: bool = True
    simulate_heartbeat_seconds: float = Field(default=30.0, gt=0)
    simulate_alarm_every_seconds: float = Field(default=0.0, ge=0)

    # Bounded bad input (docs/mqtt-contract.md "Rate limits and dead-letter retention"). Per device:
    # telemetry and status messages past the rate are refused and counted (events never are);
    # dead letters past theirs are counted and one in SAMPLE_EVERY kept.
    ingest_device_messages_per_s: float = Field(default=10.0, gt=0)
    ingest_device_message_burst: int = Field(default=200, ge=1)
    ingest_device_dead_letters_per_s: float = Field(default=0.2, gt=0)
    ingest_device_dead_letter_burst: int = Field(default=20, ge=1)
    ingest_dead_letter_sample_every: int = Field(default=1000, ge=1)
    # The dead-letter store: pruned past this size or age (counts per reason are kept).
    dead_letters_max_mb: float = Field(default=256.0, gt=0)
    dead_letters_max_age_days: float = Field(default=30.0, gt=0)
    # A repeated log line (same device and reason) is written once, then summarised once per interval.
    log_repeat_interval_s: float = Field(default=60.0, gt=0)

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
    # Wrong passwords slow their source, and their username for sources that failed too, by a delay doubling
    # from 1 s up to this cap; never a lockout (dashboards/login_throttle.py, docs/access.md).
    auth_login_free_failures_per_source: int = Field(default=10, ge=1, le=1000)
    auth_login_free_failures_per_account: int = Field(default=5, ge=1, le=1000)
    auth_login_max_delay_s: float = Field(default=60.0, ge=1, le=3600)

    @model_validator(mode="after")
    def _check_auth(self) -> "Settings":
        key = self.auth_secret_key.get_secret_value()
        if not key and self.mode is Mode.DEVELOPMENT:  # e.g. WANLI_AUTH_SECRET_KEY= passed through empty by compose
            self.auth_secret_key = SecretStr(DEVELOPMENT_SECRET_KEY)
        elif self.mode is Mode.PRODUCTION and (len(key) < 32 or "development-only" in key):
            raise ValueError("WANLI_AUTH_SECRET_KEY must be set to a secret of at least 32 characters in production "
                             "mode (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return self

    # --- Retention by data class (docs/configuration.md, ingest/retention.py). Raw telemetry is pruned
    # after retention_raw_days; hourly aggregates (mean/min/max/count per device, field and hour) are kept
    # retention_aggregate_days and serve charts over long ranges. Incidents with their audit and notices are
    # the street's record: 0 keeps them forever (the default); a number of days drops closed incidents older
    # than that, after the monthly archive has written them out.
    retention_raw_days: int = Field(default=30, ge=1, le=36_500)
    retention_aggregate_days: int = Field(default=730, ge=1, le=36_500)
    retention_incidents_days: int = Field(default=0, ge=0, le=36_500)
    retention_every_s: float = Field(default=600.0, ge=1, le=86_400)  # how often the pruning/roll-up job runs
    retention_batch_rows: int = Field(default=5_000, ge=100, le=1_000_000)  # rows per short pruning transaction
    archive_dir: Path | None = None  # monthly archive of incidents and audit; None: {data_dir}/archive
    @model_validator(mode="after")
    def _check_broker(self) -> "Settings":
        """Production talks only to a broker that asks who is connecting: dispatches name residents' homes.

        (A broker that lets anyone in although the service logs in is caught at start by
        wanli.broker_check, which tries to connect without credentials.)"""
        if self.mode is not Mode.PRODUCTION:
            return self
        if self.uses_embedded_broker:
            raise ValueError("production mode refuses the embedded MQTT broker (anyone on its port may read the "
                             "dispatches): set WANLI_MQTT_URL to an authenticated Mosquitto, with "
                             "WANLI_BROKER_AUTH_DIR for its generated password and ACL files (docs/access.md)")
        if not self.mqtt_login() or not self.mqtt_password:
            raise ValueError("production mode refuses an anonymous MQTT connection: set WANLI_MQTT_USERNAME (or "
                             "WANLI_BROKER_AUTH_DIR for a broker the service manages) and WANLI_MQTT_PASSWORD_FILE "
                             "(or WANLI_MQTT_PASSWORD); docs/access.md")
        return self

    @property
    def auth_cookie_is_secure(self) -> bool:
        return self.mode is Mode.PRODUCTION if self.auth_cookie_secure is None else self.auth_cookie_secure

    # --- Reaching people (alerts/notify, docs/incidents.md "Dispatch"). A channel is on when its settings are given.
    notify_enabled: bool = True  # plan and send attempts to people's phones (MQTT and the webhook go regardless)
    notify_tick_s: float = Field(default=1.0, gt=0, le=60)  # how often the notifier looks for due attempts, receipts, replies
    notify_answer_base_url: str = ""  # where people's phones reach the answer page (empty: http://{http_host}:{http_port})
    notify_link_secret: SecretStr = SecretStr("")  # signs answer links (empty: derived from WANLI_AUTH_SECRET_KEY)
    notify_link_ttl_s: int = Field(default=24 * 3600, ge=60, le=7 * 24 * 3600)
    notify_rate_limit: int = Field(default=6, ge=1, le=1000)  # messages per person and channel …
    notify_rate_window_s: int = Field(default=600, ge=1, le=86_400)  # … in this window (more wait, never dropped)
    notify_max_tries: int = Field(default=3, ge=1, le=20)  # transient failures retried, then the next contact point
    notify_retry_after_s: int = Field(default=5, ge=1, le=600)
    notify_channel_failing_after_s: int = Field(default=300, ge=1)  # then notify_channel_failing:<channel> is a fault
    notify_drill_only: bool = False  # every notice goes only to drill contacts (a test or training installation)
    # Drill contacts: "name=kind:address" separated by ";", e.g. "演练 张三=mobile:13900009999;演练群=wecom:KEY"
    notify_drill_contacts: str = ""
    notify_callback_token: SecretStr = SecretStr("")  # in the URL Aliyun's receipts are pushed to (empty: no callbacks)
    # E-mail (SMTP). Secrets only here or in the environment, never on a command line.
    notify_smtp_host: str = ""
    notify_smtp_port: int = Field(default=587, ge=1, le=65535)
    notify_smtp_security: str = Field(default="starttls", pattern=r"^(none|starttls|tls)$")
    notify_smtp_username: str = ""
    notify_smtp_password: SecretStr = SecretStr("")
    notify_smtp_sender: str = "wanli-safety@localhost"
    # WeCom and DingTalk group robots (a person's contact point holds the robot's key / access token).
    notify_wecom_enabled: bool = False
    notify_wecom_url: str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    notify_dingtalk_enabled: bool = False
    notify_dingtalk_url: str = "https://oapi.dingtalk.com/robot/send"
    notify_dingtalk_secrets: dict[str, SecretStr] = {}  # access token → its "加签" secret ("*": for every robot)
    notify_feishu_enabled: bool = False
    notify_feishu_url: str = "https://open.feishu.cn/open-apis/bot/v2/hook"
    notify_feishu_secrets: dict[str, SecretStr] = {}  # hook token → its "签名校验" secret ("*": for every robot)
    # Aliyun SMS and voice notification (RPC API, signature 1.0).
    notify_aliyun_access_key_id: str = ""
    notify_aliyun_access_key_secret: SecretStr = SecretStr("")
    notify_aliyun_region: str = "cn-hangzhou"
    notify_aliyun_sms_url: str = "https://dysmsapi.aliyuncs.com/"
    notify_aliyun_sms_sign_name: str = ""  # empty: no Aliyun SMS
    notify_aliyun_sms_template: str = ""  # variables ${title} and ${location}
    notify_aliyun_voice_url: str = "https://dyvmsapi.aliyuncs.com/"
    notify_aliyun_voice_show_number: str = ""  # empty: no Aliyun voice
    notify_aliyun_voice_tts_code: str = ""  # TTS template read on the call (${title} ${location}), ending 按1确认
    notify_aliyun_voice_confirm_tts_code: str = ""  # TTS template played after key 1
    # Gammu's SMS daemon (files backend): its outbox, sent, error and inbox folders under this directory.
    notify_gammu_dir: Path | None = None

    @model_validator(mode="after")
    def _check_notify(self) -> "Settings":
        token = self.notify_callback_token.get_secret_value()
        if token and (len(token) < 16 or not token.replace("-", "").replace("_", "").isalnum()):
            raise ValueError("WANLI_NOTIFY_CALLBACK_TOKEN must be at least 16 letters, digits, - or _ (it is a URL segment)")
        if self.mode is Mode.PRODUCTION and 0 < len(self.notify_link_secret.get_secret_value()) < 32:
            raise ValueError("WANLI_NOTIFY_LINK_SECRET must be at least 32 characters in production mode")
        return self

    @property
    def notify_link_key(self) -> str:
        explicit = self.notify_link_secret.get_secret_value()
        if explicit:
            return explicit
        import hashlib  # derived, so that the session key itself never signs a link
        return hashlib.sha256(b"wanli-notify-link\0" + self.auth_secret_key.get_secret_value().encode()).hexdigest()

    @model_validator(mode="after")
    def _check_leases(self) -> "Settings":
        from foundation.leases import ROLES  # the role names live with the leases
        unknown = [r for r in self.role_list if r not in ROLES]
        if unknown:
            raise ValueError(f"WANLI_ROLES: unknown role {', '.join(unknown)} (known: {', '.join(ROLES)})")
        if self.lease_renew_s * 2 > self.lease_ttl_s:
            raise ValueError("WANLI_LEASE_RENEW_S must be at most half of WANLI_LEASE_TTL_S")
        return self

    @property
    def role_list(self) -> list[str]:
        return [r.strip() for r in self.roles.split(",") if r.strip()]

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

    def rate_limit_policy(self) -> RateLimitPolicy:
        return RateLimitPolicy(messages_per_s=self.ingest_device_messages_per_s,
                               message_burst=self.ingest_device_message_burst,
                               dead_letters_per_s=self.ingest_device_dead_letters_per_s,
                               dead_letter_burst=self.ingest_device_dead_letter_burst,
                               dead_letter_sample_every=self.ingest_dead_letter_sample_every)

    def dead_letter_bounds(self) -> DeadLetterBounds:
        return DeadLetterBounds(max_bytes=int(self.dead_letters_max_mb * 1024 * 1024),
                                max_age_ms=int(self.dead_letters_max_age_days * 86_400_000))

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
    def resolved_device_broker_url(self) -> str:
        """Where devices connect: ``WANLI_DEVICE_BROKER_URL``, else the service's own broker."""
        if self.device_broker_url:
            return self.device_broker_url.rstrip("/")
        host, port = self.mqtt_host_port
        return f"mqtt://{host}:{port}"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'wanli.db'}"

    @property
    def telemetry_sqlite_path(self) -> Path:
        return self.data_dir / "telemetry.db"

    @property
    def resolved_archive_dir(self) -> Path:
        return self.archive_dir or self.data_dir / "archive"

    # --- A tester's clock (docs/configuration.md, "A tester's clock"). Never in production: the street's alarms
    # and their deadlines run on the real time there.
    clock_speed: float = Field(default=1.0, gt=0, le=100_000)  # the service's clock runs this many times real time
    clock_start: datetime | None = None  # the service's clock starts at this moment (ISO 8601 with a zone)

    @model_validator(mode="after")
    def _check_clock(self) -> "Settings":
        if self.clock_start is not None and self.clock_start.tzinfo is None:
            raise ValueError("WANLI_CLOCK_START needs a time zone, e.g. 2026-12-07T09:00:00+08:00")
        if self.mode is Mode.PRODUCTION and (self.clock_speed != 1 or self.clock_start is not None):
            raise ValueError("production mode runs on the real clock: WANLI_CLOCK_SPEED and WANLI_CLOCK_START are "
                             "for a tester's own service (development mode)")
        return self

    @property
    def test_clock(self) -> bool:
        """The service runs on a tester's clock (accelerated or started elsewhere), not the wall clock."""
        return self.clock_speed != 1 or self.clock_start is not None
