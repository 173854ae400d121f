"""The heap keeper (foundation/heap.py) on the test process's own collector."""

import gc
import weakref

import pytest

from foundation.heap import HeapKeeper


class Node:
    pass


@pytest.fixture(autouse=True)
def unfrozen():
    yield
    gc.unfreeze()  # give the test process its collector back


def test_what_is_alive_is_frozen_at_start_and_every_minute():
    keeper = HeapKeeper(0)
    assert gc.get_freeze_count() > 0
    made_since = [Node() for _ in range(1000)]
    frozen = gc.get_freeze_count()
    keeper.tick(HeapKeeper.FREEZE_EVERY_MS - 1)
    assert gc.get_freeze_count() == frozen  # not yet due
    keeper.tick(HeapKeeper.FREEZE_EVERY_MS)
    assert gc.get_freeze_count() >= frozen + len(made_since)


def test_a_cycle_frozen_alive_and_dropped_afterwards_is_reclaimed_by_the_periodic_full_pass():
    keeper = HeapKeeper(0)
    node = Node()
    node.me = node  # a reference cycle: only the cyclic collector frees it
    gone = weakref.ref(node)
    keeper.tick(HeapKeeper.FREEZE_EVERY_MS)  # frozen while alive
    del node
    gc.collect()
    assert gone() is not None  # frozen: a normal pass does not look at it
    keeper.tick(HeapKeeper.RECLAIM_EVERY_MS)
    assert gone() is None
    assert gc.get_freeze_count() > 0  # and what is still alive is frozen again


def test_closing_gives_every_frozen_object_back():
    keeper = HeapKeeper(0)
    assert gc.get_freeze_count() > 0
    keeper.close()
    assert gc.get_freeze_count() == 0
