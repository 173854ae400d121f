"""``wanli backup``, ``wanli restore`` and ``wanli archive``: the data's safety commands (docs/reliability.md).

Settings come from the environment (WANLI_DATA_DIR, WANLI_DATABASE_URL, WANLI_BROKER_AUTH_DIR …)
as for ``wanli run``; the flags override the paths. Secrets are never taken as flags.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wanli.settings import Settings


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {"data_dir": getattr(args, "data_dir", None), "broker_auth_dir": getattr(args, "broker_auth_dir", None),
                 **extra}
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise SystemExit(f"wanli: bad configuration:\n{exc}") from None


def _cmd_backup(args: argparse.Namespace) -> int:
    from wanli.backup import BackupError, backup

    settings = _settings(args)
    try:
        summary = backup(settings, Path(args.destination))
    except BackupError as exc:
        print(f"wanli backup: {exc}", file=sys.stderr)
        return 1
    total = sum(f["bytes"] for f in summary.files)
    print(f"backup written and checked: {summary.directory} ({len(summary.files)} files, {total:,} bytes,"
          f" {summary.manifest['database']} database)")
    for f in summary.files:
        print(f"  {f['sha256'][:16]}  {f['bytes']:>14,}  {f['path']}")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from wanli.backup import BackupError, restore, verify

    settings = _settings(args)
    try:
        if args.check_only:
            summary = verify(Path(args.source))
            print(f"backup {args.source} is intact ({len(summary.files)} files)")
            return 0
        summary = restore(Path(args.source), settings, force=args.force)
    except BackupError as exc:
        print(f"wanli restore: {exc}", file=sys.stderr)
        return 1
    where = settings.database_url and "WANLI_DATABASE_URL" or str(settings.data_dir)
    print(f"restored {args.source} into {where}"
          + (f" and {settings.broker_auth_dir}" if any(f["path"].startswith("broker/") for f in summary.files) else ""))
    print("start the service with the same WANLI_AUTH_SECRET_KEY and WANLI_MQTT_PASSWORD as before "
          f"(the backup's settings, secrets left out: {Path(args.source) / 'settings.json'})")
    return 0


def _cmd_archive(args: argparse.Namespace) -> int:
    from alerts.archive import export_month, month_bounds
    from devices.hierarchy import load_hierarchy
    from foundation.db import make_engine

    settings = _settings(args)
    try:
        month_bounds(args.month)
    except ValueError:
        print(f"wanli archive: --month must look like 2026-11, got {args.month!r}", file=sys.stderr)
        return 2
    street = args.street or load_hierarchy(settings.hierarchy_file).street_id
    out = Path(args.out) if args.out else settings.resolved_archive_dir
    url = settings.resolved_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        print(f"wanli archive: no database at {url.removeprefix('sqlite:///')} (WANLI_DATA_DIR, WANLI_DATABASE_URL)",
              file=sys.stderr)
        return 1
    engine = make_engine(url)
    try:
        done = export_month(engine, street, args.month, out)
    finally:
        engine.dispose()
    print(f"{done.directory}: {done.incidents} incidents, {done.audit_entries} audit entries, "
          f"{done.notifications} notices (check with: cd {done.directory} && sha256sum -c SHA256SUMS)")
    return 0


def add_data_commands(sub: Any) -> None:
    b = sub.add_parser("backup", help="online, checked backup of the database, telemetry, broker access and settings")
    b.add_argument("destination", help="a new (or empty) directory to write the backup into")
    b.add_argument("--data-dir", help="the service's data directory (default WANLI_DATA_DIR)")
    b.add_argument("--broker-auth-dir", help="the broker's access files (default WANLI_BROKER_AUTH_DIR)")
    b.set_defaults(func=_cmd_backup)

    r = sub.add_parser("restore", help="restore a backup into a fresh data directory or database")
    r.add_argument("source", help="a directory written by `wanli backup`")
    r.add_argument("--data-dir", help="where to restore the SQLite files (default WANLI_DATA_DIR)")
    r.add_argument("--broker-auth-dir", help="where to restore the broker's access files (default WANLI_BROKER_AUTH_DIR)")
    r.add_argument("--force", action="store_true", help="overwrite a data directory or database that is not empty")
    r.add_argument("--check-only", action="store_true", help="only check the backup against its manifest")
    r.set_defaults(func=_cmd_restore)

    a = sub.add_parser("archive", help="write one month of the street's incidents and audit as CSV and JSON")
    a.add_argument("--month", required=True, help="YYYY-MM, Shanghai time")
    a.add_argument("--street", help="street id (default: the hierarchy's)")
    a.add_argument("--out", help="archive directory (default WANLI_ARCHIVE_DIR, else {data_dir}/archive)")
    a.add_argument("--data-dir", help="the service's data directory (default WANLI_DATA_DIR)")
    a.set_defaults(func=_cmd_archive)
