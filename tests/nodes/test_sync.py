"""Approximate-time synchronizer: pairs within slop, drops what is older, never pairs too far."""

from types import SimpleNamespace

import pytest

from perception_nodes.sync import ApproximateTimeSynchronizer


def msg(t, tag=""):
    return SimpleNamespace(t=t, tag=tag)


def make(n=2, slop=0.01, queue=10):
    out = []
    sync = ApproximateTimeSynchronizer(
        n, lambda *m: out.append(tuple(x.t for x in m)), queue_size=queue, slop=slop, get_stamp=lambda m: m.t
    )
    return sync, out


def test_pairs_messages_within_slop_in_either_arrival_order():
    sync, out = make()
    sync.add(0, msg(1.000))
    sync.add(1, msg(1.004))
    sync.add(1, msg(2.000))
    sync.add(0, msg(1.996))
    assert out == [(1.000, 1.004), (1.996, 2.000)]


def test_never_pairs_beyond_slop():
    sync, out = make(slop=0.01)
    sync.add(0, msg(1.0))
    sync.add(1, msg(1.02))
    assert out == []


def test_picks_the_closest_candidate_and_drops_older():
    sync, out = make(slop=0.05)
    sync.add(1, msg(0.96))
    sync.add(1, msg(0.99))
    sync.add(0, msg(1.0))
    assert out == [(1.0, 0.99)]
    sync.add(0, msg(1.001))  # 0.96 was dropped with the match; nothing left to pair
    assert out == [(1.0, 0.99)]


def test_three_inputs_and_queue_bound():
    sync, out = make(n=3, slop=0.02, queue=2)
    for t in (0.0, 0.1, 0.2):  # only the newest 2 stay in queue 0
        sync.add(0, msg(t))
    sync.add(1, msg(0.005))
    sync.add(2, msg(0.01))
    assert out == []  # 0.0 fell out of the bounded queue
    sync.add(1, msg(0.195))
    sync.add(2, msg(0.205))
    assert out == [(0.2, 0.195, 0.205)]


def test_invalid_arguments():
    with pytest.raises(ValueError, match="at least 2"):
        ApproximateTimeSynchronizer(1, print)
    with pytest.raises(ValueError, match="slop"):
        ApproximateTimeSynchronizer(2, print, slop=-1)
