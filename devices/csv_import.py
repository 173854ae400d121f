"""Bulk registration from CSV: every row is judged on its own, the good ones land.

    device_id,kind,building_id,floor,unit,label
    SD-XQ01-0101,smoke_detector,xq-01,1,0101,香泉1号楼 101 厨房

A bad row is reported with its line number and why, and never stops the others.
Re-importing the same file changes nothing (identical rows are "unchanged"). A row for a
device that was retired leaves it retired and is reported (``retired``), unless the import
asks to reactivate (``reactivate=True``). Rows are written in chunks, one transaction each,
so 50,000 rows take seconds, not minutes.

Encoding: UTF-8 (with or without BOM), else GB18030 — a superset of GBK and GB2312, what
Chinese Excel writes for "CSV (逗号分隔)" — unless the caller names the charset (``decode_csv``).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from devices.registry import DeviceRecord, DeviceRegistry, RegisterOutcome
from foundation.errors import Invalid, WanliError

REQUIRED_COLUMNS = ("device_id", "kind", "building_id")
OPTIONAL_COLUMNS = ("floor", "unit", "label")
MAX_FIELD_CHARS = 1000


# What a CSV may be declared as (a charset= of its content type), and what each is read as
CHARSETS = {"utf-8": "utf-8-sig", "utf8": "utf-8-sig", "gbk": "gb18030", "gb2312": "gb18030", "gb18030": "gb18030",
            "cp936": "gb18030"}


def decode_csv(body: bytes, charset: str = "") -> tuple[str, str]:
    """The text of an uploaded CSV and the encoding it was read as (``utf-8`` or ``gb18030``).

    A declared charset is trusted (and must fit); otherwise UTF-8 is tried first (a GBK file is
    almost never valid UTF-8, while UTF-8 bytes often decode as GBK nonsense), then GB18030."""
    declared = charset.strip().strip('"').lower()
    if declared:
        codec = CHARSETS.get(declared)
        if codec is None:
            raise Invalid(f"CSV charset {charset!r} is not supported; send UTF-8 or GBK/GB18030")
        try:
            return body.decode(codec), "utf-8" if codec == "utf-8-sig" else "gb18030"
        except UnicodeDecodeError as exc:
            raise Invalid(f"the CSV file is not {declared} (byte {exc.start})") from None
    try:
        return body.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as utf8_error:
        try:
            return body.decode("gb18030"), "gb18030"
        except UnicodeDecodeError:
            raise Invalid(f"the CSV file is neither UTF-8 nor GBK/GB18030 (byte {utf8_error.start}); "
                          "save it as CSV UTF-8 or CSV (逗号分隔)") from None


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    device_id: str
    reason: str


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    unchanged: int = 0
    updated: int = 0
    reactivated: int = 0
    rejected: list[RowError] = field(default_factory=list)
    retired: list[RowError] = field(default_factory=list)  # retired devices in the file, left retired


def parse_rows(lines: Iterable[str], street_id: str) -> Iterator[tuple[int, DeviceRecord | RowError]]:
    """(line number, record or error) per data row. Raises ``Invalid`` if the header is unusable."""
    reader = csv.reader(lines)
    try:
        header = [h.strip().lower().lstrip("\ufeff") for h in next(reader)]
    except StopIteration:
        raise Invalid("the CSV file is empty; expected a header: " + ",".join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)) from None
    except csv.Error as exc:
        raise Invalid(f"the CSV header cannot be read: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise Invalid(f"the CSV header lacks {', '.join(missing)}; it has: {', '.join(header)}")
    index = {name: header.index(name) for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if name in header}
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, RowError(reader.line_num, "", f"unreadable CSV: {exc}")
            continue
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        yield line, _record(cells, index, len(header), street_id, line)


def _record(cells: list[str], index: dict[str, int], width: int, street_id: str, line: int) -> DeviceRecord | RowError:
    def cell(name: str) -> str:
        i = index.get(name)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    device_id = cell("device_id")
    if len(cells) != width:
        return RowError(line, device_id, f"expected {width} columns as in the header, got {len(cells)}")
    if any(len(c) > MAX_FIELD_CHARS for c in cells):
        return RowError(line, device_id, f"a field is longer than {MAX_FIELD_CHARS} characters")
    floor_text = cell("floor")
    try:
        floor = int(floor_text) if floor_text else None
    except ValueError:
        return RowError(line, device_id, f"floor {floor_text!r} is not a whole number")
    return DeviceRecord(device_id, cell("kind"), street_id, cell("building_id"), floor, cell("unit"), cell("label"))


def import_csv(
    registry: DeviceRegistry,
    lines: Iterable[str],
    *,
    actor: str,
    now_ms: int,
    chunk_size: int = 2000,
    progress: Callable[[int], None] | None = None,
    reactivate: bool = False,
) -> ImportReport:
    """Register the file's rows. A retired device's row reactivates it only with ``reactivate``; otherwise it is
    listed in ``retired`` and nothing about the device changes."""
    report = ImportReport()
    first_line: dict[str, int] = {}
    chunk: list[DeviceRecord] = []

    def flush() -> None:
        if chunk:
            for outcome in registry.register_many(chunk, actor, now_ms):
                match outcome:
                    case RegisterOutcome.CREATED:
                        report.created += 1
                    case RegisterOutcome.UNCHANGED:
                        report.unchanged += 1
                    case RegisterOutcome.UPDATED:
                        report.updated += 1
                    case RegisterOutcome.REACTIVATED:
                        report.reactivated += 1
            chunk.clear()
        if progress is not None:
            progress(report.rows)

    for line, item in parse_rows(lines, registry.hierarchy.street_id):
        report.rows += 1
        if isinstance(item, RowError):
            report.rejected.append(item)
            continue
        if item.device_id in first_line:
            report.rejected.append(RowError(line, item.device_id, f"duplicate of line {first_line[item.device_id]}"))
            continue
        try:
            registry.validate(item)
        except WanliError as exc:  # whatever the registry refuses is this row's problem only
            report.rejected.append(RowError(line, item.device_id, str(exc)))
            continue
        first_line[item.device_id] = line
        if not reactivate and registry.is_retired(item.device_id):
            report.retired.append(RowError(line, item.device_id, "retired: left retired (import with "
                                                                "reactivate to bring it back)"))
            continue
        chunk.append(item)
        if len(chunk) >= chunk_size:
            flush()
    flush()
    return report
