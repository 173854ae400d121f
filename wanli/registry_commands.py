"""``wanli devices …`` and ``wanli street …``: the maintainers' command line.

Device commands speak to the running service's HTTP API (``--api``), never to its database
behind its back: the service holds the registry in memory and must be the only writer.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from devices.csv_import import decode_csv
from devices.street_generator import device_rows, generate_street
from foundation.errors import WanliError

IMPORT_CHUNK_ROWS = 5000


def _client(args: argparse.Namespace) -> httpx.Client:
    token = os.environ.get("WANLI_TOKEN", "")  # an API token with the maintainer role (docs/access.md)
    return httpx.Client(base_url=args.api, timeout=120, headers={"Authorization": f"Bearer {token}"} if token else None)


def _fail_on_error(resp: httpx.Response) -> Any:
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text
        raise SystemExit(f"wanli: {resp.request.method} {resp.request.url.path} refused ({resp.status_code}): {detail}")
    return resp.json()


def cmd_street_generate(args: argparse.Namespace) -> int:
    street = generate_street(seed=args.seed, high_rise=args.high_rise, low_rise=args.low_rise)
    text = json.dumps(street, ensure_ascii=False, indent=1)
    if args.out:
        Path(args.out).write_text(text, "utf-8")
        buildings = sum(len(c["buildings"]) for a in street["areas"] for c in a["communities"])
        print(f"wrote {args.out}: {buildings} buildings, {len(street['fire_stations'])} micro fire stations, "
              f"{len(street['households'])} elderly households", file=sys.stderr)
    else:
        print(text)
    return 0


def cmd_devices_csv(args: argparse.Namespace) -> int:
    """Every device of a street as an import CSV (for drills, simulators and the import benchmark)."""
    street = json.loads(Path(args.street).read_text("utf-8")) if args.street else generate_street(seed=args.seed)
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    try:
        writer = csv.writer(out)
        writer.writerow(["device_id", "kind", "building_id", "floor", "unit", "label"])
        writer.writerows(device_rows(street))
    finally:
        if args.out:
            out.close()
    return 0


def cmd_devices_import(args: argparse.Namespace) -> int:
    """Upload a CSV in chunks, showing progress; print every rejected row with its line and reason."""
    path = Path(args.file)
    try:
        text, encoding = decode_csv(path.read_bytes())  # UTF-8, or GBK/GB18030 as Chinese Excel saves it
    except WanliError as exc:
        raise SystemExit(f"wanli: {path}: {exc}") from None
    if encoding != "utf-8":
        print(f"{path}: read as {encoding.upper()} (GBK)", file=sys.stderr)
    lines = text.splitlines()
    if not lines:
        raise SystemExit(f"wanli: {path} is empty")
    header, rows = lines[0], lines[1:]
    totals = {"rows": 0, "created": 0, "unchanged": 0, "reactivated": 0}
    rejected: list[dict[str, Any]] = []
    retired: list[dict[str, Any]] = []
    started = time.monotonic()
    with _client(args) as client:
        for start in range(0, len(rows), IMPORT_CHUNK_ROWS):
            chunk = "\n".join([header, *rows[start:start + IMPORT_CHUNK_ROWS]])
            params = {"actor": args.actor, **({"reactivate": "true"} if args.reactivate else {})}
            report = _fail_on_error(client.post("/api/devices/import", content=chunk.encode(), params=params,
                                                headers={"content-type": "text/csv; charset=utf-8"}))
            for key in totals:
                totals[key] += report[key]
            rejected += [{**r, "line": r["line"] + start} for r in report["rejected"]]
            retired += [{**r, "line": r["line"] + start} for r in report.get("retired", [])]
            done = min(start + IMPORT_CHUNK_ROWS, len(rows))
            rate = done / max(time.monotonic() - started, 1e-9)
            print(f"\r{done}/{len(rows)} rows ({100 * done / len(rows):.0f}%, {rate:,.0f} rows/s)", end="", file=sys.stderr)
    elapsed = time.monotonic() - started
    print(file=sys.stderr)
    for r in rejected:
        print(f"line {r['line']}: {r['device_id'] or '-'}: {r['reason']}")
    for r in retired:
        print(f"line {r['line']}: {r['device_id']}: retired, left retired (--reactivate brings it back)")
    print(f"{totals['rows']} rows in {elapsed:.1f} s ({totals['rows'] / max(elapsed, 1e-9):,.0f} rows/s): "
          f"{totals['created']} created, {totals['unchanged']} unchanged, {totals['reactivated']} reactivated, "
          f"{len(retired)} left retired, {len(rejected)} rejected", file=sys.stderr)
    return 1 if rejected else 0


def cmd_devices_register(args: argparse.Namespace) -> int:
    body = {"device_id": args.device_id, "kind": args.kind, "building_id": args.building, "floor": args.floor,
            "unit": args.unit or "", "label": args.label or "", "actor": args.actor}
    with _client(args) as client:
        print(json.dumps(_fail_on_error(client.post("/api/devices", json=body)), ensure_ascii=False, indent=1))
    return 0


def cmd_devices_move(args: argparse.Namespace) -> int:
    body = {"building_id": args.building, "floor": args.floor, "unit": args.unit or "", "actor": args.actor}
    with _client(args) as client:
        moved = _fail_on_error(client.post(f"/api/devices/{args.device_id}/move", json=body))
    print(f"{args.device_id} now at {moved['location']['label']}")
    return 0


def cmd_devices_retire(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _fail_on_error(client.post(f"/api/devices/{args.device_id}/retire", json={"reason": args.reason, "actor": args.actor}))
    print(f"{args.device_id} retired")
    return 0


def cmd_devices_credentials(args: argparse.Namespace) -> int:
    with _client(args) as client:
        issued = _fail_on_error(client.post(f"/api/devices/{args.device_id}/credentials"))
    print(f"username: {issued['username']}\npassword: {issued['password']}\npublish under: {issued['publish_filter']}")
    if not issued["broker_updated"]:
        print("note: this service does not manage the broker's password file; install them there", file=sys.stderr)
    return 0


def cmd_devices_credentials_bulk(args: argparse.Namespace) -> int:
    """Credentials for many devices in one request; the CSV of passwords goes to ``--out`` (made 0600), never to the
    terminal: it is the only copy."""
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"wanli: {out} exists; the passwords go into a new file (choose another --out)")
    if args.ids_file:
        ids_text = Path(args.ids_file).read_text("utf-8-sig")
        if args.building or args.kind:
            raise SystemExit("wanli: give either --ids-file or --building/--kind, not both")
        request = {"content": ids_text.encode(), "headers": {"content-type": "text/csv"}}
    elif args.building or args.kind:
        request = {"json": {"building_id": args.building or "", "kind": args.kind or ""}}
    else:
        raise SystemExit("wanli: say which devices: --building, --kind or --ids-file")
    with _client(args) as client:
        resp = client.post("/api/devices/credentials", **request)  # type: ignore[arg-type]
    if resp.status_code >= 400:
        _fail_on_error(resp)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(resp.text)
    count = resp.headers.get("x-credentials-issued", "?")
    print(f"{count} devices: credentials written to {out} (mode 0600; the only copy, shown once). "
          f"The broker applies them within a second (generation {resp.headers.get('x-broker-generation', '?')}).")
    return 0


def cmd_devices_list(args: argparse.Namespace) -> int:
    params = {k: v for k, v in {"kind": args.kind, "building_id": args.building, "community_id": args.community,
                                "health": args.health, "limit": args.limit}.items() if v}
    with _client(args) as client:
        found = _fail_on_error(client.get("/api/devices", params=params))
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(["device_id", "kind", "health", "battery", "last_seen", "location"])
    for d in found:
        writer.writerow([d["device_id"], d["kind"], ",".join(d["health"]), d["battery_pct"] if d["battery_pct"] is not None else "",
                         d["last_seen_at"] or "never", d["location"]["label"]])
    print(out.getvalue(), end="")
    return 0


def add_commands(sub: Any, default_api: str) -> None:
    street = sub.add_parser("street", help="the street's hierarchy").add_subparsers(dest="what", required=True)
    gen = street.add_parser("generate", help="generate the full street (477 high-rise buildings and neighbours) as JSON")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--high-rise", type=int, default=477)
    gen.add_argument("--low-rise", type=int, default=160)
    gen.add_argument("--out", help="write here instead of standard output")
    gen.set_defaults(func=cmd_street_generate)

    dev = sub.add_parser("devices", help="register, import, move, retire and list devices").add_subparsers(dest="what", required=True)

    def with_api(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--api", default=default_api, help=f"the running service (default {default_api}; `wanli run` "
                       "prints its address). Signs in with the WANLI_TOKEN environment variable: an API token with "
                       "the maintainer role (`wanli tokens create`, docs/access.md)")
        p.add_argument("--actor", default="maintainer", help="who does this (kept in the device's history)")
        return p

    c = dev.add_parser("csv", help="every device of a street as an import CSV")
    c.add_argument("--street", help="a street JSON from 'wanli street generate' (default: generate with --seed)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out")
    c.set_defaults(func=cmd_devices_csv)

    imp = with_api(dev.add_parser("import", help="bulk-register devices from a CSV file"))
    imp.add_argument("file", help="UTF-8 or GBK/GB18030 (Chinese Excel's CSV), detected")
    imp.add_argument("--reactivate", action="store_true",
                     help="bring back retired devices the file lists (default: they stay retired, reported)")
    imp.set_defaults(func=cmd_devices_import)

    reg = with_api(dev.add_parser("register", help="register one device"))
    reg.add_argument("device_id")
    reg.add_argument("--kind", required=True)
    reg.add_argument("--building", default="")
    reg.add_argument("--floor", type=int)
    reg.add_argument("--unit")
    reg.add_argument("--label")
    reg.set_defaults(func=cmd_devices_register)

    mv = with_api(dev.add_parser("move", help="install a device somewhere else"))
    mv.add_argument("device_id")
    mv.add_argument("--building", required=True)
    mv.add_argument("--floor", type=int)
    mv.add_argument("--unit")
    mv.set_defaults(func=cmd_devices_move)

    rt = with_api(dev.add_parser("retire", help="retire a device"))
    rt.add_argument("device_id")
    rt.add_argument("--reason", default="")
    rt.set_defaults(func=cmd_devices_retire)

    cr = with_api(dev.add_parser("credentials", help="issue (or rotate) a device's MQTT credentials; shown once"))
    cr.add_argument("device_id")
    cr.set_defaults(func=cmd_devices_credentials)

    bulk = with_api(dev.add_parser("credentials-bulk", help="issue (or rotate) credentials for many devices at once: "
                                                            "a building, a kind, or a file of ids; a CSV of passwords"))
    bulk.add_argument("--building", help="every active device of this building")
    bulk.add_argument("--kind", help="every active device of this kind (with --building: of both)")
    bulk.add_argument("--ids-file", help="a CSV or text file of device ids, one a line (header 'device_id' optional)")
    bulk.add_argument("--out", required=True, help="a new file for device_id,username,password,publish_filter")
    bulk.set_defaults(func=cmd_devices_credentials_bulk)

    ls = with_api(dev.add_parser("list", help="list devices (tab-separated)"))
    ls.add_argument("--kind")
    ls.add_argument("--building")
    ls.add_argument("--community")
    ls.add_argument("--health", choices=["online", "offline", "low_battery", "tampered", "never_seen"])
    ls.add_argument("--limit", type=int, default=1000)
    ls.set_defaults(func=cmd_devices_list)
