"""Shared fixtures: real servers (tests/fixtures/servers.py) and the running service."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from tests.fixtures.postgres import database_url, postgres, postgres_url, sql_engine  # noqa: F401 - fixtures
from tests.fixtures.servers import free_port, influxdb_v1, mosquitto, victoria_metrics  # noqa: F401 - fixtures
from tests.fixtures.service import service_factory  # noqa: F401 - fixture

# Time-based health checks flake on a loaded two-core CI machine running the real servers too;
# what the property tests assert does not depend on timing.
settings.register_profile("wanli", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", parent=settings.get_profile("wanli"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "wanli"))
