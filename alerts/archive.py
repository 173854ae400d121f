"""The street's record on paper: a monthly archive of incidents and their audit, readable without the service.

``export_month`` writes, for one street and one calendar month (Shanghai time, the street's own),

    {archive_dir}/{street}/{YYYY-MM}/incidents.csv      one row per incident opened that month
    {archive_dir}/{street}/{YYYY-MM}/audit.csv          every audit entry of those incidents
    {archive_dir}/{street}/{YYYY-MM}/notifications.csv  every notice sent (or still pending) about them
    {archive_dir}/{street}/{YYYY-MM}/incidents.json     the same, nested: each incident with its audit and notices
    {archive_dir}/{street}/{YYYY-MM}/SHA256SUMS         checksums (``sha256sum -c SHA256SUMS`` checks them)

CSV in UTF-8 with a byte-order mark (so a spreadsheet opens the Chinese right), times both as
epoch milliseconds and as ISO 8601 in Asia/Shanghai. Writing is atomic per month (a temporary
directory renamed into place), so a half-written month never looks complete; exporting a month
again replaces it (an incident still open at the first export is complete at the second).

``ArchiveJob`` exports the month just ended once it has ended (and the current month so far,
every run), and, when ``retention_days`` is set, deletes closed incidents older than that with
their audit and notices, only once their month's archive is on disk.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import Engine, delete, select

from alerts.outbox import notifications_table
from alerts.store import incident_audit_table, incidents_table
from devices.drill import DRILL_ZH, is_drill

log = logging.getLogger(__name__)

SHANGHAI = timezone(timedelta(hours=8))
DAY_MS = 86_400_000
INCIDENT_COLUMNS = [c.name for c in incidents_table.columns] + ["drill"]  # drill: 演练 for a drill's (devices/drill.py)
AUDIT_COLUMNS = [c.name for c in incident_audit_table.columns]
NOTICE_COLUMNS = [c.name for c in notifications_table.columns]
_TIME_COLUMNS = {"opened_ms", "first_event_ms", "last_event_ms", "updated_ms", "acknowledged_ms", "closed_ms",
                 "next_deadline_ms", "at_ms", "created_ms", "sent_ms"}


def month_bounds(month: str) -> tuple[int, int]:
    """[start, end) in epoch ms of a ``YYYY-MM`` month in Shanghai time. ValueError for anything else."""
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=SHANGHAI)
    end = (start + timedelta(days=32)).replace(day=1)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def month_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(SHANGHAI).strftime("%Y-%m")


def previous_month(month: str) -> str:
    start, _end = month_bounds(month)
    return month_of(start - 1)


def _iso(ms: object) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).astimezone(SHANGHAI).isoformat() if ms is not None else ""  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class MonthArchive:
    directory: Path
    incidents: int
    audit_entries: int
    notifications: int


def export_month(engine: Engine, street: str, month: str, archive_dir: Path) -> MonthArchive:
    """Write one street's month (see the module docstring) and return where and how much."""
    start, end = month_bounds(month)
    i, a, n = incidents_table, incident_audit_table, notifications_table
    with engine.connect() as conn:
        incidents = [{**r, "drill": DRILL_ZH if is_drill(str(r["device_id"])) else ""} for r in conn.execute(
            select(i).where(i.c.street_id == street, i.c.opened_ms >= start, i.c.opened_ms < end)
            .order_by(i.c.opened_ms, i.c.id)).mappings()]
        ids = [r["id"] for r in incidents]
        audit: list[dict[str, object]] = []
        notices: list[dict[str, object]] = []
        for chunk in (ids[k:k + 500] for k in range(0, len(ids), 500)):
            audit += [dict(r) for r in conn.execute(select(a).where(a.c.incident_id.in_(chunk))).mappings()]
            notices += [dict(r) for r in conn.execute(select(n).where(n.c.incident_id.in_(chunk))).mappings()]
    audit.sort(key=lambda r: (r["incident_id"], r["id"]))  # type: ignore[arg-type, return-value]
    notices.sort(key=lambda r: (r["incident_id"], r["id"]))  # type: ignore[arg-type, return-value]

    final = archive_dir / street / month
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{month}-", dir=final.parent))
    try:
        _write_csv(work / "incidents.csv", INCIDENT_COLUMNS, incidents)
        _write_csv(work / "audit.csv", AUDIT_COLUMNS, audit)
        _write_csv(work / "notifications.csv", NOTICE_COLUMNS, notices)
        by_incident: dict[str, dict[str, list[dict[str, object]]]] = {str(x): {"audit": [], "notifications": []}
                                                                     for x in ids}
        for row in audit:
            by_incident[str(row["incident_id"])]["audit"].append(row)
        for row in notices:
            by_incident[str(row["incident_id"])]["notifications"].append(row)
        document = {"street": street, "month": month, "timezone": "Asia/Shanghai",
                    "incidents": [{**r, **by_incident[str(r["id"])]} for r in incidents]}
        (work / "incidents.json").write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
        sums = "".join(f"{hashlib.sha256((work / f).read_bytes()).hexdigest()}  {f}\n"
                       for f in ("incidents.csv", "audit.csv", "notifications.csv", "incidents.json"))
        (work / "SHA256SUMS").write_text(sums, encoding="utf-8")
        os.chmod(work, 0o755)
        if final.exists():
            old = final.with_name(f".{month}-replaced")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            work.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("archived %s %s: %d incidents, %d audit entries", street, month, len(incidents), len(audit),
             extra={"street": street, "month": month})
    return MonthArchive(final, len(incidents), len(audit), len(notices))


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, object]]) -> None:
    times = [c for c in columns if c in _TIME_COLUMNS]
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns + [f"{c.removesuffix('_ms')}_at" for c in times])
        for row in rows:
            writer.writerow([("" if row[c] is None else row[c]) for c in columns] + [_iso(row[c]) for c in times])


def is_archived(street: str, month: str, archive_dir: Path) -> bool:
    return (archive_dir / street / month / "SHA256SUMS").is_file()


def prune_closed_incidents(engine: Engine, before_ms: int, batch: int = 500) -> int:
    """Delete closed incidents opened before ``before_ms``, with their audit and notices, ``batch`` at a time."""
    i, a, n = incidents_table, incident_audit_table, notifications_table
    total = 0
    while True:
        with engine.begin() as conn:
            ids = [r[0] for r in conn.execute(select(i.c.id).where(i.c.closed_ms.is_not(None),
                                                                   i.c.opened_ms < before_ms).limit(batch))]
            if not ids:
                return total
            conn.execute(delete(a).where(a.c.incident_id.in_(ids)))
            conn.execute(delete(n).where(n.c.incident_id.in_(ids)))
            conn.execute(delete(i).where(i.c.id.in_(ids)))
        total += len(ids)


class ArchiveJob:
    """Monthly export (and, if asked, pruning) of the record; ``run_once(now_ms)`` for the retention job."""

    def __init__(self, engine: Engine, street: str, archive_dir: Path, retention_days: int = 0) -> None:
        self._engine, self.street, self.archive_dir, self.retention_days = engine, street, archive_dir, retention_days
        self._complete: set[str] = set()  # months exported after they ended (by this job's clock)

    def run_once(self, now_ms: int) -> dict[str, object]:
        this_month = month_of(now_ms)
        last_month = previous_month(this_month)
        if last_month not in self._complete:  # once after the month ended (a restart writes it once more)
            export_month(self._engine, self.street, last_month, self.archive_dir)
            self._complete.add(last_month)
        export_month(self._engine, self.street, this_month, self.archive_dir)
        pruned = 0
        if self.retention_days:
            cutoff = now_ms - self.retention_days * DAY_MS
            # only whole months already archived: up to the start of the cutoff's month
            month_start, _ = month_bounds(month_of(cutoff))
            if all(is_archived(self.street, m, self.archive_dir) for m in self._months_before(month_start)):
                pruned = prune_closed_incidents(self._engine, month_start)
        return {"month": this_month, "pruned_incidents": pruned}

    def _months_before(self, before_ms: int) -> list[str]:
        i = incidents_table
        with self._engine.connect() as conn:
            opened = [r[0] for r in conn.execute(select(i.c.opened_ms).where(i.c.closed_ms.is_not(None),
                                                                            i.c.opened_ms < before_ms))]
        return sorted({month_of(ms) for ms in opened})
