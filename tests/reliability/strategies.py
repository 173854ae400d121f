"""Hypothesis strategies for what devices send, built from the payload schemas themselves.

``payloads(message_class)`` draws JSON-ready dicts that the message type's own schema
(msgspec ``Struct`` with its constraints, read through ``msgspec.inspect``) accepts, so every
type of every kind in devices/catalog.py is covered without a hand-written example each:
a new field or a new kind is picked up as it is added. ``mutated`` turns valid bytes into
hostile ones.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

from devices.catalog import KINDS
from devices.messages import STATUS_MESSAGES, Message

# Every (kind, message type) the catalog knows, status messages included.
MESSAGE_TYPES: list[tuple[str, type[Message]]] = [
    (kind.name, m) for kind in KINDS.values() for m in (*kind.messages, *STATUS_MESSAGES)
]


def _number_bounds(t: mi.IntType | mi.FloatType) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    if t.ge is not None:
        bounds["min_value"] = t.ge
    if t.gt is not None:
        bounds["min_value"] = t.gt
        if isinstance(t, mi.FloatType):
            bounds["exclude_min"] = True
        else:
            bounds["min_value"] = t.gt + 1
    if t.le is not None:
        bounds["max_value"] = t.le
    if t.lt is not None:
        bounds["max_value"] = t.lt
        if isinstance(t, mi.FloatType):
            bounds["exclude_max"] = True
        else:
            bounds["max_value"] = t.lt - 1
    return bounds


def _within(t: mi.IntType | mi.FloatType, x: float) -> bool:
    return ((t.ge is None or x >= t.ge) and (t.gt is None or x > t.gt)
            and (t.le is None or x <= t.le) and (t.lt is None or x < t.lt))


def value_of(t: mi.Type) -> st.SearchStrategy[Any]:
    """Values that type ``t`` accepts, as JSON would carry them."""
    match t:
        case mi.IntType():
            return st.integers(**_number_bounds(t))
        case mi.FloatType():
            # JSON has no NaN or infinity; an integral number is a valid float too.
            floats = st.floats(allow_nan=False, allow_infinity=False, **_number_bounds(t))
            return floats | floats.map(round).filter(lambda i: _within(t, i))
        case mi.StrType():
            if t.pattern:
                text = st.from_regex(t.pattern)
            else:
                text = st.text(min_size=t.min_length or 0, max_size=min(t.max_length or 64, 300))
            return text.filter(lambda s: (t.min_length or 0) <= len(s) <= (t.max_length or 1 << 30))
        case mi.BoolType():
            return st.booleans()
        case mi.NoneType():
            return st.none()
        case mi.LiteralType():
            return st.sampled_from(t.values)
        case mi.UnionType():
            return st.one_of([value_of(x) for x in t.types])
        case mi.ListType():
            return st.lists(value_of(t.item_type), min_size=t.min_length or 0, max_size=min(t.max_length or 5, 5))
        case mi.StructType():
            return _struct(t)
    raise NotImplementedError(f"no strategy for {t!r}: teach tests/reliability/strategies.py")


def _struct(t: mi.StructType) -> st.SearchStrategy[dict[str, Any]]:
    required = {f.encode_name: value_of(f.type) for f in t.fields if f.required}
    optional = {f.encode_name: value_of(f.type) for f in t.fields if not f.required}
    body = st.fixed_dictionaries(required, optional=optional)
    if t.tag_field is not None:
        return body.map(lambda d: {t.tag_field: t.tag, **d})
    return body


def payloads(message: type[Message], ts: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects ``message``'s schema accepts (``ts`` drawn from ``ts`` when given)."""
    body = _struct(mi.type_info(message))  # type: ignore[arg-type]
    if ts is None:
        return body
    return st.tuples(body, ts).map(lambda pair: {**pair[0], "ts": pair[1]})


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """Valid bytes made hostile: truncated, bytes flipped or inserted, spliced, padded, or re-typed."""
    how = draw(st.sampled_from(["truncate", "flip", "insert", "splice", "retype", "drop", "deep", "pad"]))
    data = bytearray(valid)
    match how:
        case "truncate":
            return bytes(data[: draw(st.integers(0, max(0, len(data) - 1)))])
        case "flip":
            for _ in range(draw(st.integers(1, 4))):
                i = draw(st.integers(0, len(data) - 1))
                data[i] = draw(st.integers(0, 255))
            return bytes(data)
        case "insert":
            i = draw(st.integers(0, len(data)))
            return bytes(data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:])
        case "splice":
            return bytes(data) + draw(st.binary(max_size=64))
        case "retype" | "drop":
            body = json.loads(valid)
            key = draw(st.sampled_from(sorted(body)))
            if how == "drop":
                del body[key]
            else:
                body[key] = draw(st.one_of(st.none(), st.booleans(), st.integers(), st.integers(2**63, 2**80),
                                           st.floats(), st.text(max_size=20), st.lists(st.integers(), max_size=3),
                                           st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)))
            return json.dumps(body, allow_nan=True).encode()
        case "deep":
            depth = draw(st.integers(10, 5000))
            return b"[" * depth + b"]" * draw(st.sampled_from([0, depth]))
        case _:
            return bytes(data) + b" " * draw(st.integers(1, 20_000))


def round_trip(message: Message) -> Message:
    """A decoded message encoded and decoded again."""
    return msgspec.json.decode(msgspec.json.encode(message), type=type(message))
