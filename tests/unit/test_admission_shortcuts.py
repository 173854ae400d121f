"""The hot path's shortcuts in admission do what the ways they shorten do, on arbitrary inputs:

- ``DeviceState.judge``'s shortcut for the next telemetry number against ``judge_whole_way`` (every verdict, every
  window and the remembered jump after each number, whatever the state and the numbers);
- ``ClockSkew.observe_many`` (the batch's clocks, the lock taken once) against ``observe`` one sample at a time.
"""

from __future__ import annotations

from hypothesis import given, settings as hsettings, strategies as st

from devices.registry import DeviceState
from devices.sequence import JUMP_ABOVE, WINDOW
from devices.topics import MessageClass
from ingest.hygiene import ClockSkew

_highest = st.one_of(st.none(), st.integers(0, 2**53))
_window = st.integers(0, (1 << WINDOW) - 1)


@st.composite
def _state(draw: st.DrawFn) -> DeviceState:
    state = DeviceState(seq_highest=draw(_highest), seq_window=draw(_window), event_seq_highest=draw(_highest),
                        event_seq_window=draw(_window), status_seq_highest=draw(_highest),
                        status_seq_window=draw(_window), online_seq=draw(_highest))
    state.jump_seq = draw(_highest)
    return state


@st.composite
def _numbers(draw: st.DrawFn, state: DeviceState) -> list[tuple[int, MessageClass, bool]]:
    """Numbers near what the state holds (the next ones, inside and past the window, at the jump's edge) and anywhere."""
    anchors = [h for h in (state.seq_highest, state.event_seq_highest, state.status_seq_highest, state.jump_seq)
               if h is not None] or [0]
    near = st.builds(lambda a, d: max(0, a + d), st.sampled_from(anchors),
                     st.one_of(st.integers(-3 * WINDOW, 3 * WINDOW),
                               st.sampled_from([JUMP_ABOVE - 1, JUMP_ABOVE, JUMP_ABOVE + 1, -JUMP_ABOVE - 1,
                                                WINDOW - 1, WINDOW, WINDOW + 1])))
    seq = st.one_of(near, near, near, st.integers(0, 2**53))
    one = st.tuples(seq, st.sampled_from(list(MessageClass)), st.sampled_from([False, False, False, True]))
    return draw(st.lists(one, min_size=1, max_size=30))


@hsettings(max_examples=500, deadline=None)
@given(st.data())
def test_judge_with_its_shortcut_is_judge_the_whole_way(data):
    start = data.draw(_state())
    numbers = data.draw(_numbers(start))
    short, whole = start.copy(), start.copy()
    for seq, msg_class, restarts in numbers:
        assert short.judge(seq, msg_class, restarts=restarts) is whole.judge_whole_way(seq, msg_class,
                                                                                     restarts=restarts)
        assert short.values() == whole.values() and short.jump_seq == whole.jump_seq


def test_the_shortcut_takes_the_next_telemetry_numbers_and_leaves_the_rest():
    state = DeviceState(seq_highest=100, seq_window=1)
    assert state.judge(101).value == "new" and (state.seq_highest, state.seq_window) == (101, 0b11)
    assert state.judge(101).value == "duplicate"  # not above the highest: the whole way
    assert state.judge(101 + JUMP_ABOVE + 1).value == "jump" and state.seq_highest == 101


_samples = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e", "f"]),
                              st.one_of(st.integers(-8 * 3_600_000, 8 * 3_600_000),
                                        st.sampled_from([ClockSkew.PLAUSIBLE_MS, ClockSkew.PLAUSIBLE_MS + 1,
                                                         -ClockSkew.PLAUSIBLE_MS - 1, 0, 1, -1])),
                              st.integers(0, 400_000), st.booleans()), max_size=40)


@hsettings(max_examples=400, deadline=None)
@given(_samples, st.integers(1, 5), st.integers(1, 200_000))
def test_observe_many_is_observe_one_sample_at_a_time(samples, size, window_ms):
    one, many = ClockSkew(devices=size, min_devices=1, window_ms=window_ms), \
        ClockSkew(devices=size, min_devices=1, window_ms=window_ms)
    received = 1_800_000_000_000
    rows = []
    for device, offset, later_ms, live in samples:
        received += later_ms
        rows.append((device, received + offset, received, live))
        one.observe(device, received + offset, received, live=live)
    many.observe_many(rows)
    assert list(many._offsets.items()) == list(one._offsets.items())
    assert many.median_ms == one.median_ms


@hsettings(max_examples=100, deadline=None)
@given(_state())
def test_a_states_copy_holds_every_slot_and_is_its_own(state):
    copy = state.copy()
    assert copy is not state and type(copy) is DeviceState
    assert {name: getattr(copy, name) for name in DeviceState.__slots__} == \
        {name: getattr(state, name) for name in DeviceState.__slots__}
    before = (state.values(), state.jump_seq)
    copy.judge((state.seq_highest or 0) + 1)
    copy.last_seen_ms = -1
    assert (state.values(), state.jump_seq) == before  # the original untouched by the copy's changes
