"""A failure while planning the attempts to reach people never holds up the alarm's commit (alerts/outbox.py).

On PostgreSQL a failed statement aborts the whole transaction: without a savepoint around the
plan, the incident and its notices could not commit, and the batch would be retried for ever.
"""

import json

from sqlalchemy import Engine, select, text

from alerts.escalation import Notice
from alerts.outbox import Outbox, notifications_table


def notice(incident_id: str) -> Notice:
    return Notice(incident_id, 0, "building", "xq-01", "building_leader", "楼组长 李阿姨", "13700000001",
                  "dispatch/v1/wanli/building/xq-01/building_leader", json.dumps({"v": 1}))


def test_a_plan_that_fails_in_sql_leaves_the_notices_and_the_transaction_whole(sql_engine: Engine) -> None:
    def broken_plan(_notices, _now_ms, conn) -> None:
        conn.execute(text("SELECT * FROM no_such_table_of_contact_points"))

    outbox = Outbox(sql_engine, plan=broken_plan)
    with sql_engine.begin() as conn:
        outbox.add([notice("inc_plan_fails")], 1_000, conn)
        conn.execute(text("SELECT 1"))  # the alarm's transaction goes on after the failed plan
    with sql_engine.connect() as conn:
        rows = conn.execute(select(notifications_table.c.incident_id)).scalars().all()
    assert rows == ["inc_plan_fails"]
