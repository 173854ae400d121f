"""The generated street for a benchmark: its devices as registry records, and the hierarchy file a service reads."""

from __future__ import annotations

import json
import random
from pathlib import Path

from devices.registry import DeviceRecord
from devices.street_generator import device_rows, generate_street


def street_records(street: dict | None = None) -> list[DeviceRecord]:
    """Every device of the street (``generate_street()`` unless given) as a registry record."""
    street = generate_street() if street is None else street
    return [DeviceRecord(d, k, "wanli", b, f, u, lbl) for d, k, b, f, u, lbl in device_rows(street)]


def street_on_disk(workdir: Path, devices: int = 0) -> tuple[Path, list[DeviceRecord]]:
    """``workdir/street.json`` (the service's ``WANLI_HIERARCHY_FILE``) and the street's devices as records;
    ``devices`` > 0 keeps a seeded sample of that many."""
    street = generate_street()
    street_file = workdir / "street.json"
    street_file.write_text(json.dumps(street, ensure_ascii=False), "utf-8")
    records = street_records(street)
    if devices and devices < len(records):
        records = random.Random(0).sample(records, devices)
    return street_file, records
