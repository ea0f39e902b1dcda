"""Unit tests for pel.graph: the task graph and toposort (pure, no executor)."""

from __future__ import annotations

import random
import re
import time

import pytest

from pel import CycleError
from pel.graph import FINAL, MAX_LIFT, Graph, Status, toposort


def heights(graph: Graph) -> dict[int, int]:
    return {key: node.height for key, node in graph.nodes.items()}


# -- Graph.add ---------------------------------------------------------------------


def test_add_without_deps_is_ready() -> None:
    g = Graph()
    node, raised = g.add(0, (), 5)
    assert node.key == 0
    assert node.priority == 5
    assert node.status is Status.READY
    assert node.height == 1
    assert node.waiting_on == 0
    assert raised == []
    assert g.nodes == {0: node}


def test_add_with_unfinished_dep_waits() -> None:
    g = Graph()
    a, _ = g.add(0, (), 0)
    b, raised = g.add(1, (0,), 0)
    assert b.status is Status.WAITING
    assert b.waiting_on == 1
    assert a.dependents == (1,)
    assert a.unsettled == 1
    assert raised == [a]
    assert a.height == 2


def test_add_same_dep_twice_stays_consistent() -> None:
    # deps are unique in practice (extract dedups), but the counts must still add up
    g = Graph()
    g.add(0, (), 0)
    b, _ = g.add(1, (0, 0), 0)
    assert b.waiting_on == 2
    assert g.finish(0) == [b]
    assert b.status is Status.READY


def test_add_missing_dep_is_treated_as_finished_and_forgotten() -> None:
    g = Graph()
    node, raised = g.add(7, (3,), 0)
    assert node.status is Status.READY
    assert node.waiting_on == 0
    assert raised == []


def test_add_dep_already_done_does_not_wait_but_is_registered() -> None:
    g = Graph()
    a, _ = g.add(0, (), 0)
    g.finish(0)
    b, raised = g.add(1, (0,), 0)
    assert b.status is Status.READY
    assert a.dependents == (1,)
    assert a.unsettled == 1
    # a finished node's height no longer matters
    assert raised == []
    assert a.height == 1


def test_add_duplicate_key_raises() -> None:
    g = Graph()
    g.add(0, (), 0)
    with pytest.raises(ValueError, match="already"):
        g.add(0, (), 0)


def test_add_waits_only_on_unfinished_deps() -> None:
    g = Graph()
    g.add(0, (), 0)
    g.add(1, (), 0)
    g.finish(0)
    c, _ = g.add(2, (0, 1, 99), 0)
    assert c.status is Status.WAITING
    assert c.waiting_on == 1


# -- Graph.finish ------------------------------------------------------------------


def test_finish_returns_dependents_that_became_ready() -> None:
    g = Graph()
    g.add(0, (), 0)
    g.add(1, (), 0)
    c, _ = g.add(2, (0, 1), 0)
    d, _ = g.add(3, (0,), 0)
    assert g.finish(0) == [d]
    assert c.status is Status.WAITING
    assert c.waiting_on == 1
    assert g.finish(1) == [c]
    assert c.status is Status.READY
    assert g.nodes[0].status is Status.DONE
    assert g.nodes[1].status is Status.DONE


def test_finish_skips_forgotten_and_non_waiting_dependents() -> None:
    g = Graph()
    g.add(0, (), 0)
    g.add(1, (0,), 0)
    g.add(2, (0,), 0)
    g.nodes[2].status = Status.CANCELLED
    g.forget(1)
    assert g.finish(0) == []


def test_finish_in_diamond() -> None:
    g = Graph()
    g.add(0, (), 0)
    g.add(1, (0,), 0)
    g.add(2, (0,), 0)
    g.add(3, (1, 2), 0)
    assert [n.key for n in g.finish(0)] == [1, 2]
    assert g.finish(1) == []
    assert [n.key for n in g.finish(2)] == [3]


# -- Graph.descendants -------------------------------------------------------------


def test_descendants_transitive_in_key_order() -> None:
    g = Graph()
    g.add(0, (), 0)
    g.add(1, (), 0)
    g.add(2, (1,), 0)
    g.add(3, (0,), 0)
    g.add(4, (2, 3), 0)
    g.add(5, (4,), 0)
    g.add(6, (), 0)
    assert [n.key for n in g.descendants(0)] == [3, 4, 5]
    assert [n.key for n in g.descendants(1)] == [2, 4, 5]
    assert [n.key for n in g.descendants(5)] == []
    assert g.descendants(6) == []


def test_descendants_each_once_in_a_diamond() -> None:
    g = Graph()
    g.add(0, (), 0)
    g.add(1, (0,), 0)
    g.add(2, (0,), 0)
    g.add(3, (1, 2), 0)
    g.add(4, (3, 1), 0)
    assert [n.key for n in g.descendants(0)] == [1, 2, 3, 4]


def test_descendants_skip_final_and_forgotten() -> None:
    g = Graph()
    g.add(0, (), 0)
    g.add(1, (0,), 0)
    g.add(2, (1,), 0)
    g.add(3, (0,), 0)
    g.add(4, (3,), 0)
    g.nodes[3].status = Status.CANCELLED
    g.forget(1)
    # 1 is gone, so 2 cannot be reached; 3 is final, so its subtree is not walked
    assert g.descendants(0) == []


def test_descendants_of_missing_key_raises_keyerror() -> None:
    with pytest.raises(KeyError):
        Graph().descendants(3)


# -- Graph.forget ------------------------------------------------------------------


def test_forget_removes_node_and_is_idempotent() -> None:
    g = Graph()
    g.add(0, (), 0)
    g.finish(0)
    g.forget(0)
    assert 0 not in g.nodes
    g.forget(0)  # no error
    g.forget(12345)
    # a task depending on a forgotten one does not wait for it
    node, _ = g.add(1, (0,), 0)
    assert node.status is Status.READY


# -- heights -------------------------------------------------------------------------


def test_heights_rise_as_dependents_are_added() -> None:
    g = Graph()
    g.add(0, (), 0)
    assert heights(g) == {0: 1}
    _, raised = g.add(1, (0,), 0)
    assert [n.key for n in raised] == [0]
    assert heights(g) == {0: 2, 1: 1}
    _, raised = g.add(2, (1,), 0)
    assert sorted(n.key for n in raised) == [0, 1]
    assert heights(g) == {0: 3, 1: 2, 2: 1}
    # a shorter branch does not lower anything, and raises nothing
    _, raised = g.add(3, (0,), 0)
    assert raised == []
    assert heights(g) == {0: 3, 1: 2, 2: 1, 3: 1}
    # a longer branch through 3 lifts 3 and then 0
    g.add(4, (3,), 0)
    _, raised = g.add(5, (4,), 0)
    assert sorted(n.key for n in raised) == [0, 3, 4]
    assert heights(g) == {0: 4, 1: 2, 2: 1, 3: 3, 4: 2, 5: 1}


def test_heights_are_longest_path_in_a_dag() -> None:
    g = Graph()
    g.add(0, (), 0)
    g.add(1, (0,), 0)
    g.add(2, (0,), 0)
    g.add(3, (2,), 0)
    g.add(4, (1, 3), 0)
    assert heights(g) == {0: 4, 1: 2, 2: 3, 3: 2, 4: 1}


def test_height_is_not_lifted_through_finished_nodes() -> None:
    g = Graph()
    g.add(0, (), 0)
    g.add(1, (0,), 0)
    assert g.nodes[0].height == 2
    g.finish(0)
    _, raised = g.add(2, (1,), 0)
    assert [n.key for n in raised] == [1]
    assert g.nodes[1].height == 2
    assert g.nodes[0].height == 2  # done: left alone


def test_max_lift_bounds_a_long_chain() -> None:
    n = 10_000
    g = Graph()
    start = time.perf_counter()
    most_raised = 0
    for key in range(n):
        _, raised = g.add(key, (key - 1,) if key else (), 0)
        most_raised = max(most_raised, len(raised))
    elapsed = time.perf_counter() - start
    # each add lifts at most MAX_LIFT ancestors: linear, not quadratic
    assert most_raised == MAX_LIFT
    assert elapsed < 2.0
    cap = MAX_LIFT + 1
    for key, node in g.nodes.items():
        assert node.height == min(n - key, cap), key
    # heights saturate: the whole early part of the chain sits at the cap
    assert g.nodes[0].height == cap
    assert g.nodes[n - cap].height == cap
    assert g.nodes[n - cap + 1].height == cap - 1


def test_final_statuses() -> None:
    assert {Status.DONE, Status.FAILED, Status.CANCELLED} == FINAL
    assert Status.READY not in FINAL


# -- toposort ------------------------------------------------------------------------


def test_toposort_orders_dependencies_first() -> None:
    deps = {"d": ["b", "c"], "b": ["a"], "c": ["a"], "a": []}
    order = toposort(deps)
    assert sorted(order) == sorted(deps)
    pos = {k: i for i, k in enumerate(order)}
    for key, ds in deps.items():
        for d in ds:
            assert pos[d] < pos[key]
    assert order == ["a", "b", "c", "d"]


def test_toposort_is_stable_for_independent_keys() -> None:
    assert toposort({"z": [], "a": [], "m": []}) == ["z", "a", "m"]
    assert toposort({3: [], 1: [], 2: []}) == [3, 1, 2]
    assert toposort({"c": ["a"], "a": [], "b": []}) == ["a", "c", "b"]
    assert toposort({"x": [], "y": ["x"], "w": []}) == ["x", "y", "w"]


def test_toposort_empty_and_accepts_any_iterable_of_deps() -> None:
    assert toposort({}) == []
    assert toposort({1: (), 2: {1}, 3: iter([2, 1])}) == [1, 2, 3]


def test_toposort_shared_dependency_once() -> None:
    assert toposort({"a": [], "b": ["a", "a"], "c": ["a", "b"]}) == ["a", "b", "c"]


def test_toposort_cycle_names_the_loop() -> None:
    with pytest.raises(CycleError) as info:
        toposort({"a": ["b"], "b": ["a"]})
    assert re.search(r"'?a'? -> '?b'? -> '?a'?", str(info.value)), str(info.value)
    assert isinstance(info.value, ValueError)


def test_toposort_cycle_names_only_the_loop() -> None:
    deps = {"start": ["x"], "x": ["y"], "y": ["z"], "z": ["x"], "other": []}
    with pytest.raises(CycleError) as info:
        toposort(deps)
    msg = str(info.value)
    assert re.search(r"'?x'? -> '?y'? -> '?z'? -> '?x'?", msg), msg
    assert "start" not in msg
    assert "other" not in msg


def test_toposort_cycle_with_ints() -> None:
    with pytest.raises(CycleError, match=r"1 -> 2 -> 3 -> 1"):
        toposort({1: [2], 2: [3], 3: [1]})


def test_toposort_self_loop() -> None:
    with pytest.raises(CycleError) as info:
        toposort({"a": ["a"]})
    assert re.search(r"'?a'? -> '?a'?", str(info.value)), str(info.value)


def test_toposort_missing_dependency_is_keyerror() -> None:
    with pytest.raises(KeyError) as info:
        toposort({"a": ["b"], "c": []})
    assert "b" in str(info.value)
    assert not isinstance(info.value, CycleError)


def test_toposort_deep_chain_has_no_recursion_error() -> None:
    n = 100_000
    # listed last-first, so one depth-first walk goes the whole way down
    deps = {i: ([i - 1] if i else []) for i in reversed(range(n))}
    order = toposort(deps)
    assert order == list(range(n))


def test_toposort_deep_cycle_has_no_recursion_error() -> None:
    n = 100_000
    deps = {i: [(i + 1) % n] for i in range(n)}
    with pytest.raises(CycleError):
        toposort(deps)


def test_toposort_random_dags_are_valid_and_deterministic() -> None:
    rng = random.Random(1234)
    for _ in range(50):
        n = rng.randint(1, 60)
        keys = list(range(n))
        deps = {k: rng.sample(range(k), min(k, rng.randint(0, 3))) for k in keys}
        shuffled = list(deps.items())
        rng.shuffle(shuffled)
        graph = dict(shuffled)
        order = toposort(graph)
        assert sorted(order) == keys
        pos = {k: i for i, k in enumerate(order)}
        for k, ds in graph.items():
            assert all(pos[d] < pos[k] for d in ds)
        assert toposort(graph) == order
        assert toposort(dict(shuffled)) == order


def test_lifting_a_batch_gives_the_heights_of_adding_one_at_a_time() -> None:
    """The scheduler inserts a Submitted event's tasks and lifts them at once."""
    rng = random.Random(20261130)
    for _ in range(300):
        one, batch = Graph(), Graph()
        n = rng.randint(1, 30)  # chains stay under the MAX_LIFT cap
        before = rng.randint(0, n)
        specs = []
        for key in range(n):
            deps = tuple(sorted(rng.sample(range(key), rng.randint(0, min(3, key)))))
            specs.append((key, deps))
        for key, deps in specs[:before]:
            one.add(key, deps, 0)
            batch.add(key, deps, 0)
        # some of the earlier tasks were sent, some finished
        for key, _ in specs[:before]:
            roll = rng.random()
            for g in (one, batch):
                node = g.nodes[key]
                if roll < 0.2 and node.status is Status.READY:
                    g.finish(key)
                elif roll < 0.4 and node.status is Status.READY:
                    node.status = Status.ASSIGNED
        raised_one: set[int] = set()
        for key, deps in specs[before:]:
            _, raised = one.add(key, deps, 0)
            raised_one.update(node.key for node in raised)
        added = [batch.insert(key, deps, 0) for key, deps in specs[before:]]
        raised_batch = [node.key for node in batch.lift(added)]
        assert heights(batch) == heights(one)
        assert sorted(raised_batch) == sorted(raised_one)
        assert {k: n.status for k, n in batch.nodes.items()} == {
            k: n.status for k, n in one.nodes.items()
        }
