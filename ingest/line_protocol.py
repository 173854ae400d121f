"""InfluxDB line protocol, built as strings (6x faster than influxdb-client ``Point`` objects).

One line per point: ``measurement,tag=v,... field=v,... timestamp_ms``, tags in a fixed
order (street, device, type, class, then extra tags sorted) so the same point always
renders the same line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import msgspec

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

_READING_SERIES: dict[tuple[object, ...], str] = {}  # (kind, street, device, message type, class) → prefix
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
    key = (r.kind, r.street, r.device_id, type(r.message), r.msg_class)
    prefix = _READING_SERIES.get(key)
    if prefix is None:
        # what ``_series`` makes of the point's four tags, all of them first tags (street, device, type, class)
        prefix = (f"{r.kind.translate(_MEASUREMENT_ESCAPE)},street={r.street.translate(_TAG_ESCAPE)},"
                  f"device={r.device_id.translate(_TAG_ESCAPE)},type={r.type.translate(_TAG_ESCAPE)},"
                  f"class={r.msg_class.value.translate(_TAG_ESCAPE)}")
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
    ``encode_bytes(points_of_all(readings))``, built without the points (the hot path's spool append).

    A message type that keeps ``Message.points`` becomes its line through a formatter made once per type and
    per the types its fields hold (``_formatter``): one f-string in place of a loop over its fields."""
    out: list[str] = []
    times: list[int] = []
    add, add_time = out.append, times.append
    series, formatters, astuple = _READING_SERIES, _FORMATTERS, _astuple
    field_formatters, extra_tags = _FIELD_FORMATTERS, _EXTRA_TAGS
    for r in readings:
        msg = r.message
        cls = type(msg)
        prefix = series.get((r.kind, r.street, r.device_id, cls, r.msg_class))
        if prefix is None:
            prefix = _reading_series(r)
        values = astuple(msg)
        formatter = formatters.get((cls, *map(type, values)))
        if formatter is None:
            formatter = _formatter(cls, values)
        if formatter is not _OWN_POINTS:  # most messages (heartbeats, alarms): one point of the scalar fields
            if formatter is not _NO_FIELDS:
                ts = msg.ts
                add(formatter(prefix, values))  # type: ignore[operator]
                add_time(ts)
            continue
        ts = msg.ts
        for extra, fields in msg.points():
            if not fields:
                continue
            values = tuple(fields.values())
            fields_formatter = field_formatters.get((*fields, *map(type, values)))
            if fields_formatter is None:
                fields_formatter = _fields_formatter(fields, values)
            if not extra:
                add(f"{prefix} {fields_formatter(values)} {ts}")
            elif (tag_text := extra_tags.get(tuple(extra.items()))) is not None:
                add(f"{prefix}{tag_text} {fields_formatter(values)} {ts}")
            elif extra.keys() & _FIRST_TAGS_SET:  # an extra tag replacing a base one: as the point would have it
                tags = {"street": r.street, "device": r.device_id, "type": r.type, "class": r.msg_class.value, **extra}
                add(line(TelemetryPoint(r.kind, tags, fields, ts)))
            else:
                add(f"{prefix}{_extra_tags(extra)} {fields_formatter(values)} {ts}")
            add_time(ts)
    return "\n".join(out).encode(), times


# A message type's line, by the exact types its fields hold now: (type, type of each field in ``astuple`` order) →
# a function of (series prefix, the fields' values) → its line; _OWN_POINTS for a type with its own ``points``,
# _NO_FIELDS when no field is a scalar (no point). A field's text depends only on its value's type and value
# (float: repr; int: ``5i``; bool, str: ``_field_value``; anything else, None included, left out), so a formatter
# made for a signature is right for every message of that signature.
_FORMATTERS: dict[tuple[type, ...], object] = {}
_MAX_FORMATTERS = 1 << 14
_astuple = msgspec.structs.astuple


_OWN_POINTS = object()  # the type has its own ``points``: its lines are built from them
_NO_FIELDS = object()  # no field holds a scalar now: no point


def _formatter(cls: type, values: tuple[object, ...]) -> object:
    names = _ONE_POINT_FIELDS.get(cls)
    if names is None:
        names = _one_point_fields(cls)
    formatter: object
    if not names:
        formatter = _OWN_POINTS
    else:
        fields: tuple[str, ...] = cls.__struct_fields__  # type: ignore[attr-defined]
        where = {name: i for i, name in enumerate(fields)}
        keys, parts = [], []
        for name, key in names:
            i, kind = where[name], type(values[where[name]])
            if kind is float:
                parts.append(f"{{k[{len(keys)}]}}{{repr(v[{i}])}}")
            elif kind is int:
                parts.append(f"{{k[{len(keys)}]}}{{v[{i}]}}i")
            elif kind is bool or kind is str:
                parts.append(f"{{k[{len(keys)}]}}{{fv(v[{i}])}}")
            else:
                continue
            keys.append(key)
        if not parts:
            formatter = _NO_FIELDS
        else:
            formatter = _compiled(f"lambda p, v, k=k: f\"{{p}} {','.join(parts)} {{v[{where['ts']}]}}\"", tuple(keys))
    if len(_FORMATTERS) >= _MAX_FORMATTERS:
        _FORMATTERS.clear()
    _FORMATTERS[(cls, *map(type, values))] = formatter
    return formatter


def _compiled(source: str, keys: tuple[str, ...]) -> Callable[..., str]:
    """A formatter from its source: made of indices and our own names only (the fields' names are in ``keys``)."""
    return eval(source, {"repr": repr, "fv": _field_value, "k": keys})  # type: ignore[no-any-return]  # noqa: S307


# A point's fields as ``_fields_text`` writes them, by the fields' names and their values' types: (names…, types…) →
# a function of the values; and a point's extra tags' text (``,port=3``) by its items.
_FIELD_FORMATTERS: dict[tuple[object, ...], Callable[[tuple[object, ...]], str]] = {}
_EXTRA_TAGS: dict[tuple[tuple[str, str], ...], str] = {}


def _fields_formatter(fields: dict[str, Scalar], values: tuple[object, ...]) -> Callable[[tuple[object, ...]], str]:
    parts = []
    for i, v in enumerate(values):
        kind = type(v)
        if kind is float:
            parts.append(f"{{k[{i}]}}={{repr(v[{i}])}}")
        elif kind is int:
            parts.append(f"{{k[{i}]}}={{v[{i}]}}i")
        else:
            parts.append(f"{{k[{i}]}}={{fv(v[{i}])}}")
    formatter = _compiled(f"lambda v, k=k: f\"{','.join(parts)}\"", tuple(_key(name) for name in fields))
    if len(_FIELD_FORMATTERS) >= _MAX_FORMATTERS:
        _FIELD_FORMATTERS.clear()
    _FIELD_FORMATTERS[(*fields, *map(type, values))] = formatter
    return formatter


def _extra_tags(extra: dict[str, str]) -> str:
    text = "".join(f",{k.translate(_TAG_ESCAPE)}={extra[k].translate(_TAG_ESCAPE)}" for k in sorted(extra))
    if len(_EXTRA_TAGS) >= _MAX_FORMATTERS:
        _EXTRA_TAGS.clear()
    _EXTRA_TAGS[tuple(extra.items())] = text
    return text


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
