from hypothesis import given
from hypothesis import strategies as st

from devices.sequence import WINDOW, SeqState, Verdict, judge


def run(seqs, state=None):
    verdicts = []
    for s in seqs:
        v, state = judge(state, s)
        verdicts.append(v)
    return verdicts, state


def test_increasing_numbers_are_new_and_repeats_are_duplicates():
    verdicts, state = run([1, 2, 3, 3, 2, 4])
    assert verdicts == [Verdict.NEW] * 3 + [Verdict.DUPLICATE] * 2 + [Verdict.NEW]
    assert state.highest == 4


def test_out_of_order_within_the_window_is_accepted_once():
    verdicts, _ = run([10, 12, 11, 11, 9])
    assert verdicts == [Verdict.NEW, Verdict.NEW, Verdict.NEW, Verdict.DUPLICATE, Verdict.NEW]


def test_a_gap_is_fine_and_the_missing_ones_may_still_arrive():
    verdicts, _ = run([100, 150, 120, 149])
    assert verdicts == [Verdict.NEW] * 4


def test_far_behind_the_window_is_backwards_but_a_restart_near_zero_is_a_reset():
    verdicts, state = run([1000, 1000 - WINDOW, 500])
    assert verdicts == [Verdict.NEW, Verdict.BACKWARDS, Verdict.BACKWARDS]
    assert state.highest == 1000
    verdicts, state = run([1, 2], state)
    assert verdicts == [Verdict.RESET, Verdict.NEW] and state == SeqState(2, 0b11)


@given(st.lists(st.integers(min_value=16, max_value=400), max_size=200))
def test_every_number_is_accepted_at_most_once_as_long_as_it_is_within_the_window(seqs):
    state, accepted = None, []
    for s in seqs:
        v, state = judge(state, s)
        if v is Verdict.NEW:
            accepted.append(s)
    assert len(accepted) == len(set(accepted))
    # Nothing new that stays within the window of the highest is ever lost.
    if seqs:
        top = max(seqs)
        assert {s for s in seqs if top - s < WINDOW} <= set(accepted)


@given(st.permutations(list(range(20, 20 + WINDOW))))
def test_any_order_inside_the_window_accepts_every_number_once(order):
    verdicts, _ = run(order + order)
    assert verdicts.count(Verdict.NEW) == WINDOW and verdicts.count(Verdict.DUPLICATE) == WINDOW
