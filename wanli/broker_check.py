"""Does the MQTT broker let anyone in? Asked once at start in production mode.

The settings already refuse the embedded broker and a connection without a username in
production; this catches the rest: a Mosquitto left with ``allow_anonymous true`` although
the service logs in, where anyone on the network could read the dispatches (residents'
homes, 18层 1801室) and publish alarms. The probe connects with no username and no password:
accepted means the broker is open, and the service refuses to start, saying so.
A broker that cannot be reached is no answer either way: the service starts (ingest keeps
trying to connect, as it always does) and logs that the probe could not run.
"""

from __future__ import annotations

import logging
import secrets
import threading

from foundation.mqtt import new_client

log = logging.getLogger(__name__)


class OpenBroker(RuntimeError):
    """The broker accepted a connection without credentials."""


def accepts_anonymous(host: str, port: int, timeout_s: float = 5.0) -> bool | None:
    """True: it accepted a connection with no credentials; False: it refused; None: no answer (unreachable)."""
    answered = threading.Event()
    outcome: list[bool] = []
    client = new_client(f"wanli-anonymous-probe-{secrets.token_hex(4)}")

    def on_connect(_c, _u, _flags, reason_code, _props) -> None:  # type: ignore[no-untyped-def]
        outcome.append(not reason_code.is_failure)
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=10)
    except OSError as exc:
        log.warning("anonymous-broker probe could not reach %s:%d: %s", host, port, exc)
        return None
    client.loop_start()
    try:
        if not answered.wait(timeout_s):
            return None
    finally:
        client.disconnect()
        client.loop_stop()
    return outcome[0]


def refuse_open_broker(host: str, port: int) -> None:
    """Raise OpenBroker when the broker at host:port lets a client in without credentials."""
    verdict = accepts_anonymous(host, port)
    if verdict is None:
        log.warning("could not ask the broker at %s:%d whether it admits anonymous clients; starting anyway", host, port)
    elif verdict:
        raise OpenBroker(
            f"production mode refuses the MQTT broker at {host}:{port}: it accepts clients without a username "
            "(allow_anonymous true), so anyone could read the dispatches and publish alarms. Run it with "
            "allow_anonymous false and the password and ACL files the service writes to WANLI_BROKER_AUTH_DIR "
            "(config/mosquitto/auth.conf; docs/access.md)")
