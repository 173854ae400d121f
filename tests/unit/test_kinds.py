"""The registered kinds (devices/kinds/): each a folder and a line, and everything derived from them agrees."""

from importlib import import_module
from pathlib import Path

import pytest

from alerts.rules import default_rules, rule_modules
from devices.catalog import KINDS
from devices.kinds import REGISTERED, SLICES
from simulators.devices import SIMULATORS
from simulators.expectations import DEVICE_ZH, KIND_ZH
from simulators.load import LoadMix, load_streams

FOLDER = Path(__file__).resolve().parents[2] / "devices" / "kinds"


def test_every_folder_is_registered_once_and_named_as_its_kind_on_the_wire():
    folders = sorted(p.parent.name for p in FOLDER.glob("*/__init__.py"))
    assert sorted(REGISTERED) == folders and len(set(REGISTERED)) == len(REGISTERED)
    for name, s in SLICES.items():
        assert s.name == s.kind.name == name
        assert s.rules.startswith(f"devices.kinds.{name}.") and s.simulator.startswith(f"devices.kinds.{name}.")


def test_the_catalog_rules_and_simulators_are_the_slices_own():
    assert list(KINDS) == list(REGISTERED)
    assert [m.__name__ for m in rule_modules()] == [s.rules for s in SLICES.values()]
    for rule in default_rules():
        assert rule.kinds <= set(SLICES), rule.name
    for name, sim in SIMULATORS.items():
        assert sim(f"{SLICES[name].id_prefix}-X").kind == name
        module, _, cls = SLICES[name].simulator.partition(":")
        assert getattr(import_module(module), cls) is sim


def test_the_words_are_the_slices_and_each_id_prefix_names_one_kind():
    assert KIND_ZH == {name: s.short_label for name, s in SLICES.items()}
    assert len(DEVICE_ZH) == len(SLICES)  # no two kinds share a prefix


def test_the_load_mix_is_the_simulators_streams_and_an_unknown_stream_is_refused():
    streams = load_streams()
    assert set(LoadMix().weights) == set(streams) >= {"smoke_heartbeat", "smoke_alarm", "ebike_in_lift", "gas_heartbeat"}
    assert LoadMix(smoke_alarm=0.0).smoke_alarm == 0.0 and LoadMix().smoke_alarm == 0.001
    with pytest.raises(ValueError, match=r"smoke_alrm.*the streams are: .*smoke_alarm"):
        LoadMix(smoke_alrm=0.5)


def test_a_kinds_answers_to_a_dispatch_are_declared_in_its_contract_and_each_action_has_one():
    """The alert engine knows no kind's answers by name: each ``DispatchAnswer`` in a contract names the incident
    action it takes and its words; the engine's table of answers is built from them."""
    from alerts.incidents import Action
    from alerts.service import _ANSWERS
    from devices.messages import DispatchAnswer

    declared = [(name, m) for name, k in KINDS.items() for m in k.messages if issubclass(m, DispatchAnswer)]
    assert declared, "no kind answers a dispatch"
    assert len({m.ANSWERS for _, m in declared}) == len(declared)  # one answer per action
    for name, message in declared:
        assert Action(message.ANSWERS) in _ANSWERS and _ANSWERS[Action(message.ANSWERS)] == (name, message)
        assert message.STEP_ZH and message.CLASS.value == "event"
    assert set(_ANSWERS) == {Action.ACKNOWLEDGE, Action.DISPATCH, Action.ARRIVE, Action.RESOLVE}
