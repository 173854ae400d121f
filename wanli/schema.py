"""The service's whole schema, as the running service has it.

Tables register themselves: a module that keeps rows declares its tables on
``foundation.db.METADATA``, and importing it registers them. Nothing lists them: the runtime,
the composition root, imports every part of the service, so once it is imported ``METADATA``
holds every table. The migrations' command line (``python -m wanli.migrations``) and the test that
checks the revisions build exactly these tables (``tests/integration/test_migrations.py``) ask
for it here.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from foundation.db import METADATA


def whole_schema() -> MetaData:
    """``METADATA`` with every table of the service registered."""
    import wanli.runtime  # noqa: F401 - the composition root imports every module that declares tables

    return METADATA
