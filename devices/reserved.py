"""Device ids the service keeps for itself: its own MQTT logins can never be a device's.

A device id is also its MQTT username (the broker's password and ACL files list both side
by side). A device registered as ``wanli-ingest-dispatch`` would take the dispatcher's
account: the broker files could no longer be written (one name twice), credentials calls
failed, a retired device kept its login, and the service refused to start. So the
registry refuses, at registration, import and move:

- every id starting with ``wanli-`` (any case): the service's logins, the client ids of its
  tools and any account it may add later;
- every login the running service uses (``Settings.mqtt_logins()``: ingest, its alarm lane,
  the dispatcher), whatever WANLI_MQTT_USERNAME makes them.

Compared case-insensitively: ids that differ only in case are too easily confused.
"""

from __future__ import annotations

from collections.abc import Iterable

from foundation.errors import Invalid

RESERVED_PREFIX = "wanli-"
# The service's MQTT connections by client-id (and login) suffix: ingest's main lane, its alarm lane, the dispatcher.
ALARM_LANE_SUFFIX, DISPATCH_SUFFIX = "-alarms", "-dispatch"
MQTT_CONNECTION_SUFFIXES = ("", ALARM_LANE_SUFFIX, DISPATCH_SUFFIX)


def normalised_logins(logins: Iterable[str]) -> frozenset[str]:
    return frozenset(login.casefold() for login in logins if login)


def refuse_reserved(device_id: str, reserved_logins: frozenset[str] = frozenset()) -> None:
    """Raise ``Invalid`` if ``device_id`` is one of the service's own accounts (``reserved_logins`` normalised)."""
    folded = device_id.casefold()
    if folded.startswith(RESERVED_PREFIX):
        raise Invalid(f"device id {device_id!r} is reserved: ids starting with {RESERVED_PREFIX!r} are the service's "
                      "own MQTT accounts; choose another id")
    if folded in reserved_logins:
        raise Invalid(f"device id {device_id!r} is reserved: the service logs in to the MQTT broker under that name; "
                      "choose another id")
