"""InfluxDB line protocol, built as strings (6x faster than influxdb-client ``Point`` objects).

One line per point: ``measurement,tag=v,... field=v,... timestamp_ms``, tags in a fixed
order (street, device, type, class, then extra tags sorted) so the same point always
renders the same line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from devices.messages import Message, Scalar
from devices.reading import Reading
from ingest.points import TelemetryPoint

_TAG_ESCAPE = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
_MEASUREMENT_ESCAPE = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
_FIRST_TAGS = ("street", "device", "type", "class")
_FIRST_TAGS_SET = frozenset(_FIRST_TAGS)


def _field_value(value: object) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


_SERIES: dict[tuple[str, ...], str] = {}  # a series' escaped "measurement,tags" prefix (devices repeat all day)
_KEYS: dict[str, str] = {}  # escaped field names
_MAX_SERIES = 1 << 20


def _series(point: TelemetryPoint) -> str:
    tags = point.tags
    key = (point.measurement, *tags.values(), *tags)
    prefix = _SERIES.get(key)
    if prefix is None:
        ordered = [k for k in _FIRST_TAGS if k in tags] + sorted(k for k in tags if k not in _FIRST_TAGS)
        tag_text = "".join(f",{k.translate(_TAG_ESCAPE)}={tags[k].translate(_TAG_ESCAPE)}" for k in ordered)
        prefix = f"{point.measurement.translate(_MEASUREMENT_ESCAPE)}{tag_text}"
        if len(_SERIES) >= _MAX_SERIES:
            _SERIES.clear()
        _SERIES[key] = prefix
    return prefix


def _key(name: str) -> str:
    escaped = _KEYS.get(name)
    if escaped is None:
        escaped = _KEYS[name] = name.translate(_TAG_ESCAPE)
    return escaped


def line(point: TelemetryPoint) -> str:
    return f"{_series(point)} {_fields_text(point.fields)} {point.ts_ms}"


def encode(points: Iterable[TelemetryPoint]) -> list[str]:
    return [line(p) for p in points]


def encode_bytes(points: Sequence[TelemetryPoint]) -> bytes:
    """The points' lines as one request body (``\\n``-joined, UTF-8): the lines of ``encode`` (what the spool keeps
    for a store that takes line protocol, and what a store's ``write_points`` sends)."""
    return "\n".join([line(p) for p in points]).encode()


# -- straight from the readings: the lines ``encode_bytes(points_of_all(readings))`` makes, without the points ----

_READING_SERIES: dict[tuple[str, str, str, str, str], str] = {}  # (kind, street, device, type, class) → prefix
_DEFAULT_POINTS = Message.points
_ENVELOPE = frozenset({"v", "ts"})  # what ``scalar_fields`` leaves out
# A message type that keeps ``Message.points`` (one point of its scalar fields, no extra tag): its field names and
# their escaped ``key=``, in order; () for a type with its own ``points`` (a station snapshot, a port's event).
_ONE_POINT_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {}


def _one_point_fields(cls: type) -> tuple[tuple[str, str], ...]:
    names: tuple[tuple[str, str], ...] = ()
    if getattr(cls, "points", None) is _DEFAULT_POINTS:
        names = tuple((n, f"{_key(n)}=") for n in cls.__struct_fields__ if n not in _ENVELOPE)  # type: ignore[attr-defined]
    _ONE_POINT_FIELDS[cls] = names
    return names


def _reading_series(r: Reading) -> str:
    key = (r.kind, r.street, r.device_id, r.type, r.msg_class.value)
    prefix = _READING_SERIES.get(key)
    if prefix is None:
        tags = {"street": r.street, "device": r.device_id, "type": r.type, "class": r.msg_class.value}
        prefix = _series(TelemetryPoint(r.kind, tags, {}, 0))
        if len(_READING_SERIES) >= _MAX_SERIES:
            _READING_SERIES.clear()
        _READING_SERIES[key] = prefix
    return prefix


def _fields_text(fields: dict[str, Scalar]) -> str:
    keys, parts = _KEYS, []
    for k, v in fields.items():
        kind = type(v)
        if kind is float:
            text = repr(v)
        elif kind is int:
            text = f"{v}i"
        else:
            text = _field_value(v)
        parts.append(f"{keys.get(k) or _key(k)}={text}")
    return ",".join(parts)


def encode_readings(readings: Sequence[Reading]) -> tuple[bytes, list[int]]:
    """The readings' points as one body of line protocol, and each point's device time: byte for byte
    ``encode_bytes(points_of_all(readings))``, built without the points (the hot path's spool append)."""
    out: list[str] = []
    times: list[int] = []
    add, add_time = out.append, times.append
    for r in readings:
        msg = r.message
        prefix = _reading_series(r)
        ts = msg.ts
        names = _ONE_POINT_FIELDS.get(type(msg))
        if names is None:
            names = _one_point_fields(type(msg))
        if names:  # most messages (heartbeats, alarms): one point of the scalar fields, as ``scalar_fields`` picks
            parts = []
            for name, key in names:
                v = getattr(msg, name)
                kind = type(v)
                if kind is float:
                    parts.append(key + repr(v))
                elif kind is int:
                    parts.append(f"{key}{v}i")
                elif kind is bool or kind is str:
                    parts.append(key + _field_value(v))
            if parts:
                add(f"{prefix} {','.join(parts)} {ts}")
                add_time(ts)
            continue
        for extra, fields in msg.points():
            if not fields:
                continue
            if not extra:
                add(f"{prefix} {_fields_text(fields)} {ts}")
            elif extra.keys() & _FIRST_TAGS_SET:  # an extra tag replacing a base one: as the point would have it
                tags = {"street": r.street, "device": r.device_id, "type": r.type, "class": r.msg_class.value, **extra}
                add(line(TelemetryPoint(r.kind, tags, fields, ts)))
            else:
                tag_text = "".join(f",{k.translate(_TAG_ESCAPE)}={extra[k].translate(_TAG_ESCAPE)}" for k in sorted(extra))
                add(f"{prefix}{tag_text} {_fields_text(fields)} {ts}")
            add_time(ts)
    return "\n".join(out).encode(), times


# -- reading our own lines back (a spool kept as line protocol, drained into a store that takes points) ----------

_UNESCAPE_TAG = re.compile(r"\\([,= n])")
_UNESCAPE_STRING = re.compile(r'\\([\\"n])')
_SPACE = re.compile(r"(?<!\\) ")
_COMMA = re.compile(r"(?<!\\),")
_EQUALS = re.compile(r"(?<!\\)=")
_FIELD = re.compile(r'((?:\\.|[^=\\])+)=("(?:[^"\\]|\\.)*"|[^,]*)(?:,|$)')


def _tag_text(escaped: str) -> str:
    return _UNESCAPE_TAG.sub(lambda m: "\n" if m[1] == "n" else m[1], escaped)


def _field_of(text: str) -> Scalar:
    if text.startswith('"'):
        return _UNESCAPE_STRING.sub(lambda m: "\n" if m[1] == "n" else m[1], text[1:-1])
    if text == "true" or text == "false":
        return text == "true"
    if text.endswith("i"):
        return int(text[:-1])
    return float(text)


def parse(line: str) -> TelemetryPoint:
    """A line ``line`` wrote, as its point again (tags whose text holds a backslash before ``,= n`` excepted:
    line protocol does not escape a tag's backslash, so such a tag cannot be told apart)."""
    rest, _, ts = line.rpartition(" ")
    split = _SPACE.search(rest)
    if split is None or not ts:
        raise ValueError(f"not a line of line protocol: {line[:200]!r}")
    head, body = rest[:split.start()], rest[split.end():]
    measurement, *pairs = _COMMA.split(head)
    tags = {}
    for pair in pairs:
        key, value = _EQUALS.split(pair, maxsplit=1)
        tags[_tag_text(key)] = _tag_text(value)
    fields = {_tag_text(m[1]): _field_of(m[2]) for m in _FIELD.finditer(body) if m[0]}
    return TelemetryPoint(_tag_text(measurement), tags, fields, int(ts))


def parse_bytes(body: bytes) -> list[TelemetryPoint]:
    return [parse(line) for line in body.decode().split("\n") if line]
