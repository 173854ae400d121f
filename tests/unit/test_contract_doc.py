"""docs/mqtt-contract.md is the public interface: it must name every kind and every message type."""

from pathlib import Path

import pytest

from devices.catalog import KINDS
from devices.topics import MessageClass

DOC = (Path(__file__).parents[2] / "docs" / "mqtt-contract.md").read_text("utf-8")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_and_every_message_type_is_documented(kind):
    assert f"### `{kind}`" in DOC
    section = DOC.split(f"### `{kind}`", 1)[1].split("\n### ", 1)[0]
    for cls in MessageClass:
        if cls is MessageClass.STATUS:
            continue  # status messages are common to every kind, documented once
        for msg_type in KINDS[kind].message_types(cls):
            assert f"`{msg_type}`" in section, f"{kind}: {cls.value} message {msg_type!r} missing from the contract"


def test_status_messages_are_documented():
    for msg_type in KINDS["smoke_detector"].message_types(MessageClass.STATUS):
        assert f"`{msg_type}`" in DOC
