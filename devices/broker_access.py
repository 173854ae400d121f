"""Who may talk to the broker: per-device credentials kept in step with the registry.

Registering a device gives it a place; ``issue`` gives it credentials (a password shown
once, only its hash kept). Retiring a device revokes them. When the service manages an
external Mosquitto (``WANLI_BROKER_AUTH_DIR`` and ``WANLI_BROKER_PID_FILE``), every change
rewrites Mosquitto's password and ACL files and makes it reload them, so a device can
publish only under its own topics and a retired one not at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devices.credentials import (
    BrokerAuthFiles,
    CredentialStore,
    DeviceTopicOwner,
    ServiceAccount,
    sync_broker_auth,
)
from devices.registry import DeviceRecord, DeviceRegistry, Lifecycle
from wanli.errors import Conflict, StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IssuedCredentials:
    device_id: str
    username: str
    password: str
    publish_filter: str


class BrokerAccess:
    def __init__(self, registry: DeviceRegistry, store: CredentialStore, clock_ms: Callable[[], int], *,
                 files: BrokerAuthFiles | None = None, pid_file: Path | None = None,
                 service_accounts: Mapping[ServiceAccount, str] | None = None) -> None:
        self._registry, self._store, self._clock_ms = registry, store, clock_ms
        self._files, self._pid_file = files, pid_file
        self._accounts = dict(service_accounts or {})
        self._lock = threading.Lock()
        registry.subscribe(self._on_registry_change)

    @property
    def manages_broker(self) -> bool:
        return self._files is not None and self._pid_file is not None

    def issue(self, device_id: str) -> IssuedCredentials:
        """New credentials for an active device (rotating any it had); the password is shown this once."""
        rec = self._registry.get(device_id)
        if rec.lifecycle is not Lifecycle.ACTIVE:
            raise Conflict(f"device {device_id} is retired; register it again before giving it credentials")
        password = self._store.issue(device_id, self._clock_ms())
        self.sync()
        owner = DeviceTopicOwner(rec.street_id, rec.kind, device_id)
        return IssuedCredentials(device_id, device_id, password, owner.publish_filter)

    def _on_registry_change(self, records: Sequence[DeviceRecord]) -> None:
        retired = {r.device_id for r in records if r.lifecycle is Lifecycle.RETIRED}
        holding = retired & self._store.active_hashes().keys()
        for device_id in sorted(holding):
            self._store.revoke(device_id, self._clock_ms())
        if holding:
            self.sync()

    def sync(self) -> None:
        """Rewrite the broker's files from the registry and make it reload (when the service manages a broker)."""
        if not self.manages_broker:
            return
        assert self._files is not None and self._pid_file is not None
        with self._lock:
            try:
                pid = int(self._pid_file.read_text().strip())
            except (OSError, ValueError) as exc:
                raise StoreUnavailable("mosquitto", f"cannot read its pid from {self._pid_file}: {exc}") from exc
            owners = [DeviceTopicOwner(r.street_id, r.kind, r.device_id) for r in self._registry.active()]
            sync_broker_auth(owners, self._store, self._files, pid, self._accounts)
