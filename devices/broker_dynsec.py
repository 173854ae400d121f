"""The broker's dynamic-security plugin as the writer's fast lane: a device's change applied without a reload.

Why: Mosquitto 2.0 reloads its password file as a whole. With the street's 50,615 devices one
reload is about 80 ms of broker CPU, and it re-checks the password of every connected client as
well (5,000 connected: 98 ms, 15,000: 126 ms), with the broker serving nobody meanwhile. The plugin that Debian's (and the eclipse-mosquitto image's) Mosquitto ships,
``mosquitto_dynamic_security.so``, changes one client at a time over MQTT
(``$CONTROL/dynamic-security/v1``) and answers each command: 0.5 ms of broker CPU a command plus
about 2.5 µs for every client it holds (it rewrites its JSON file after each command), measured
in docs/benchmarks.md.

How the two combine in Mosquitto 2.0 (src/security.c, plugins/dynamic-security/auth.c, acl.c):

- the plugin's login check runs first. A username it does not know, or one it holds without a
  password, it *defers* to the password file; one it holds with a password it decides alone
  (a wrong password is refused, the file's older password included); one it holds *disabled* is
  refused, and disabling a client closes its open connections at once;
- its ACL check defers for every client that has no role of its own when every default access
  is false (``defaultACLAccess`` all false: an empty file, as a new broker starts with): the ACL file's
  ``%u`` patterns keep deciding what a device may publish and read, wherever its login lives.

So the password file holds the street (rewritten rarely), and the plugin holds what changed
since: ``createClient``/``modifyClient`` for a credential issued or rotated (its description the
credential's mark, ``credential_mark``), ``createClient`` without a password + ``disableClient``
for a device retired while the file still admits it. ``BrokerAccess`` deletes the clients that
disagree with the table after each file generation, and all of them past a bound (the fold).

``DynamicSecurity`` is the admin connection: ``run(commands, per_message)`` sends them in
messages of a few commands each (the broker handles one message in one go: a few commands keep
each pause to a few milliseconds), each message once the previous is answered; a command the plugin refuses or leaves unanswered
raises ``StoreUnavailable``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from devices.credentials import ServiceAccount
from foundation.errors import StoreUnavailable

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
ADMIN_USERNAME = "wanli-access"  # the writer's own login; its ACL block grants $CONTROL/dynamic-security/# only

# Every default access false: the plugin defers to the ACL file for any client without a role (all of ours).
EMPTY_CONFIG = {"defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                                     "subscribe": False, "unsubscribe": False},
                "clients": [], "groups": [], "roles": []}

Command = dict[str, Any]


def credential_mark(encoded: str) -> str:
    """Which credential a plugin client's password belongs to: a fingerprint of the table's hash (not the hash)."""
    return "wanli " + hashlib.sha256(encoded.encode()).hexdigest()[:20]


def admin_password(*service_secrets: str) -> str:
    """The writer's admin password, derived from the service's own secrets: the same in every process of one service.

    The broker learns it from the password file (its hash). Were it new in every process, each start would have to
    write and reload the street's file only to let the new one in; derived, a restarted service whose broker already
    serves the table needs no reload at all. Changing either secret gives a new one (and one reload).
    """
    key = "\0".join(service_secrets).encode()
    return base64.urlsafe_b64encode(hmac.new(key, b"wanli-access dynamic-security admin v1", "sha256").digest()
                                    ).decode().rstrip("=")


def create_client(username: str, password: str | None = None, description: str = "") -> Command:
    """A client the plugin decides for (with a password), or one it only holds (without: it defers)."""
    command: Command = {"command": "createClient", "username": username}
    if password is not None:
        command["password"] = password
    if description:
        command["textdescription"] = description
    return command


def modify_client(username: str, password: str, description: str) -> Command:
    """A new password (and the description saying which credential it is); the plugin closes its connections."""
    return {"command": "modifyClient", "username": username, "password": password, "textdescription": description}


def enable_client(username: str) -> Command:
    return {"command": "enableClient", "username": username}


def disable_client(username: str) -> Command:
    return {"command": "disableClient", "username": username}


def delete_client(username: str) -> Command:
    return {"command": "deleteClient", "username": username}


class DynamicSecurity:
    """The admin connection to the plugin (paho, MQTT 3.1.1, its own network thread, reconnecting by itself).

    ``epoch`` counts the connections made: a broker restarted (or a connection lost) shows as a
    new epoch, after which the plugin's clients are unknown and ``BrokerAccess`` folds them in
    again. ``on_connected`` is called (from paho's thread) with each new epoch.
    """

    def __init__(self, host: str, port: int, password: str, *, username: str = ADMIN_USERNAME,
                 answer_timeout_s: float = 2.0, commands_per_message: int = 4) -> None:
        self.host, self.port, self.username = host, port, username
        self._password = password
        self.answer_timeout_s = answer_timeout_s
        self.commands_per_message = max(1, commands_per_message)
        self._lock = threading.Condition()
        self._answers: dict[str, dict[str, Any]] = {}
        self._waiting: set[str] = set()  # correlation ids still awaited (a late answer to an abandoned one is dropped)
        self._ids = itertools.count(1)
        self._epoch = 0
        self._connected = False
        self._subscribed = False
        self._client: Any = None
        self.on_connected: Callable[[int], None] | None = None

    def account(self) -> tuple[ServiceAccount, str]:
        """The admin login for the password and ACL files: $CONTROL/dynamic-security/# and nothing else."""
        control = "$CONTROL/dynamic-security/#"
        return ServiceAccount(self.username, read=(control,), write=(control,)), self._password

    # -- the connection

    @property
    def epoch(self) -> int:
        with self._lock:
            return self._epoch

    @property
    def ready(self) -> bool:
        with self._lock:
            return self._connected and self._subscribed

    def connect(self, timeout_s: float) -> bool:
        """Start the connection if it is not started; True once logged in and subscribed to the answers."""
        from foundation.mqtt import new_client

        if self._client is None:
            client = new_client(self.username, username=self.username, password=self._password)
            client.reconnect_delay_set(0.1, 2.0)
            client.on_connect = self._on_connect
            client.on_disconnect = self._on_disconnect
            client.on_subscribe = self._on_subscribe
            client.on_message = self._on_message
            self._client = client
            try:
                client.connect_async(self.host, self.port, keepalive=30)
            except OSError as exc:
                log.warning("dynamic security: cannot reach %s:%d: %s", self.host, self.port, exc)
            client.loop_start()
        with self._lock:
            return self._lock.wait_for(lambda: self._connected and self._subscribed, timeout=timeout_s)

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            # paho closes its wake-up socket pair only when the client is collected; in a reference cycle the
            # sockets may be collected first (a ResourceWarning): close them now, as its __del__ would
            self._client._reset_sockets()  # noqa: SLF001
            self._client = None
        with self._lock:
            self._connected = self._subscribed = False
            self._lock.notify_all()

    def _on_connect(self, client: Any, userdata: object, flags: object, reason: Any, props: object) -> None:
        if getattr(reason, "is_failure", True):
            log.warning("dynamic security: the broker refused the admin login: %s", reason)
            return
        client.subscribe(RESPONSE_TOPIC, qos=0)
        with self._lock:
            self._connected = True
            self._epoch += 1
            epoch = self._epoch
            self._lock.notify_all()
        callback = self.on_connected
        if callback is not None:
            callback(epoch)

    def _on_subscribe(self, client: Any, userdata: object, mid: int, reasons: Any, props: object) -> None:
        with self._lock:
            self._subscribed = all(not getattr(r, "is_failure", False) for r in reasons)
            self._lock.notify_all()

    def _on_disconnect(self, client: Any, userdata: object, flags: object, reason: object, props: object) -> None:
        with self._lock:
            self._connected = self._subscribed = False
            self._lock.notify_all()

    def _on_message(self, client: Any, userdata: object, message: Any) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("dynamic security: an answer that is not the plugin's: %r", message.payload[:200])
            return
        with self._lock:
            for response in responses:
                if isinstance(response, dict) and response.get("correlationData") in self._waiting:
                    self._answers[response["correlationData"]] = response
            self._lock.notify_all()

    # -- commands

    def run(self, commands: Sequence[Command], per_message: int | None = None) -> list[dict[str, Any]]:
        """Send ``commands`` in order, a few to a message, each message once the previous is answered.

        Returns the plugin's answers in order. Raises ``StoreUnavailable`` when the connection is
        not up, an answer does not come within ``answer_timeout_s``, or the plugin refuses one
        (its error in the message; the commands before it are applied).
        """
        answers: list[dict[str, Any]] = []
        step = max(1, per_message or self.commands_per_message)
        for start in range(0, len(commands), step):
            answers += self._send([dict(c) for c in commands[start:start + step]])
        return answers

    def list_clients(self) -> dict[str, tuple[bool, str]]:
        """Every client the plugin holds: username -> (disabled, its text description)."""
        answer = self._send([{"command": "listClients", "verbose": True, "count": -1}])[0]
        clients = answer.get("data", {}).get("clients", [])
        return {c["username"]: (bool(c.get("disabled", False)), str(c.get("textdescription", "")))
                for c in clients if isinstance(c, dict) and isinstance(c.get("username"), str)}

    def _send(self, batch: list[Command]) -> list[dict[str, Any]]:
        client = self._client
        if client is None or not self.ready:
            raise StoreUnavailable("mosquitto", "the dynamic-security admin connection is not up")
        ids = [f"wanli-{next(self._ids)}" for _ in batch]
        for command, cid in zip(batch, ids, strict=True):
            command["correlationData"] = cid
        with self._lock:
            self._waiting.update(ids)
        # QoS 0 both ways: at QoS 1 Mosquitto writes its PUBACK and then the answer as two small writes without
        # TCP_NODELAY (its set_tcp_nodelay is off by default), so the answer waited for our delayed ACK: 44 ms a
        # message instead of 0.8. A command or answer lost with the connection shows as no answer: the writer
        # then goes through the password file, and nothing is lost.
        info = client.publish(CONTROL_TOPIC, json.dumps({"commands": batch}), qos=0)
        if info.rc != 0:
            with self._lock:
                self._waiting.difference_update(ids)
            raise StoreUnavailable("mosquitto", f"the dynamic-security command could not be sent (rc {info.rc})")
        deadline = time.monotonic() + self.answer_timeout_s
        with self._lock:
            answered = self._lock.wait_for(lambda: all(i in self._answers for i in ids),
                                           timeout=max(0.0, deadline - time.monotonic()))
            answers = [self._answers.pop(i, None) for i in ids]
            self._waiting.difference_update(ids)
        if not answered:
            raise StoreUnavailable("mosquitto", f"the dynamic-security plugin did not answer within "
                                   f"{self.answer_timeout_s:g} s (is it loaded?)")
        for command, answer in zip(batch, answers, strict=True):
            assert answer is not None
            if answer.get("error"):
                raise StoreUnavailable("mosquitto", f"the dynamic-security plugin refused {command['command']} "
                                       f"for {command.get('username', '')!r}: {answer['error']}")
        return [a for a in answers if a is not None]
