"""The project's exception tree. Every error carries what it concerns.

    WanliError
    ├── RejectedMessage            an MQTT message we keep in the dead-letter store
    │   ├── TopicError             topic does not follow the contract
    │   ├── PayloadError           JSON, schema, size or time is wrong
    │   └── UnregisteredDevice     well-formed, but the device is not in the registry
    ├── NotFound                   an incident, device or place that does not exist
    ├── Invalid                    a request whose values cannot be right (unknown building, bad floor)
    │   └── TooLarge               a request body past its limit
    ├── Conflict                   the request contradicts the current state
    │   └── IllegalTransition      an incident cannot move from its state by that action
    └── StoreUnavailable           a backing server (InfluxDB, database) did not answer

The HTTP API maps these to status codes in one place (``dashboards/api.py``); domain code
never raises HTTP errors.
"""

from __future__ import annotations


class WanliError(Exception):
    """Base of every error the project raises on purpose."""


class RejectedMessage(WanliError):
    """A message that cannot be accepted. ``reason`` is a short stable code counted per reason."""

    reason: str = "rejected"

    def __init__(self, detail: str, *, topic: str = "", device_id: str = "", reason: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.topic = topic
        self.device_id = device_id
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        where = f" (topic {self.topic!r})" if self.topic else ""
        return f"{self.reason}: {self.detail}{where}"


class TopicError(RejectedMessage):
    reason = "bad_topic"


class PayloadError(RejectedMessage):
    reason = "bad_payload"


class UnregisteredDevice(RejectedMessage):
    reason = "unregistered_device"


class NotFound(WanliError):
    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"{what} {key!r} not found")
        self.what = what
        self.key = key


class Invalid(WanliError):
    pass


class TooLarge(Invalid):
    pass


class Conflict(WanliError):
    pass


class IllegalTransition(Conflict):
    def __init__(self, incident_id: str, state: str, action: str) -> None:
        super().__init__(f"incident {incident_id}: cannot {action} when {state}")
        self.incident_id = incident_id
        self.state = state
        self.action = action


class StoreUnavailable(WanliError):
    def __init__(self, store: str, detail: str) -> None:
        super().__init__(f"{store} unavailable: {detail}")
        self.store = store
        self.detail = detail


class StaleIncident(StoreUnavailable):
    """Another instance changed these incidents since this one read them: nothing was written; the caller's
    transaction is rolled back and tried again on the rows as they are now (a transient error)."""

    def __init__(self, incident_ids: list[str]) -> None:
        super().__init__("incidents", f"changed meanwhile by another instance: {', '.join(incident_ids[:10])}")
        self.incident_ids = incident_ids
