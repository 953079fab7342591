"""Cadence: when something is due, and where the controller ends a host loop."""

from framework.cadence import Cadence, steps_to_next_boundary


def test_every():
    cadence = Cadence(every=10)
    assert [s for s in range(1, 31) if cadence.due(s)] == [10, 20, 30]
    assert cadence.next_after(0) == 10
    assert cadence.next_after(9) == 10
    assert cadence.next_after(10) == 20  # strictly after
    assert cadence.next_after(15) == 20


def test_at():
    cadence = Cadence(at=(3, 8))
    assert [s for s in range(1, 31) if cadence.due(s)] == [3, 8]
    assert cadence.next_after(0) == 3
    assert cadence.next_after(3) == 8
    assert cadence.next_after(8) is None


def test_every_and_at():
    cadence = Cadence(every=10, at=(3, 15))
    assert [s for s in range(1, 31) if cadence.due(s)] == [3, 10, 15, 20, 30]
    assert [cadence.next_after(s) for s in (0, 3, 10, 15, 20)] == [3, 10, 15, 20, 30]


def test_none_is_never_due():
    for cadence in (Cadence(), Cadence(every=None), Cadence(every=0)):
        assert not any(cadence.due(s) for s in range(1, 100))
        assert cadence.next_after(0) is None
        assert cadence.next_after(50) is None


def test_boundary_caps_at_the_last_step():
    assert steps_to_next_boundary(95, [Cadence(every=50)], last_step=98, most=10) == 3


def test_boundary_caps_at_most():
    assert steps_to_next_boundary(0, [Cadence(every=50)], last_step=100, most=7) == 7


def test_boundary_is_the_nearest_cadence():
    cadences = [Cadence(every=30), Cadence(every=20), Cadence(at=(25,)), Cadence()]
    assert steps_to_next_boundary(0, cadences, last_step=100, most=100) == 20
    assert steps_to_next_boundary(20, cadences, last_step=100, most=100) == 5
    assert steps_to_next_boundary(25, cadences, last_step=100, most=100) == 5
    assert steps_to_next_boundary(30, cadences, last_step=100, most=100) == 10


def test_boundary_without_cadences_is_the_last_step_or_most():
    assert steps_to_next_boundary(10, [Cadence(), Cadence()], last_step=30, most=100) == 20
    assert steps_to_next_boundary(10, [], last_step=30, most=8) == 8
