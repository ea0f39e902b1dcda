"""The task graph: which task waits for which, and how far each is from the end.

Pure: no threads, no I/O, no clock. Tasks are numbered by the executor in
submission order, and a task can only depend on tasks submitted before it (a
future must exist to be passed), so graphs built through ``submit`` cannot
have a cycle. Graphs given whole, as a mapping (:func:`toposort`), can; those
are checked and a :class:`~pel.CycleError` names the loop.

*Height* is the number of tasks on the longest chain from a task to a sink,
itself included: the critical-path length the scheduler breaks priority ties
with. It grows as dependents are submitted; :meth:`Graph.add` returns the
tasks whose height changed so the scheduler can re-rank them. A new task lifts
heights at most ``MAX_LIFT`` levels up: without a bound, a chain of n tasks
submitted before any finishes costs O(n^2); with it, heights past that depth are
a lower bound, which only matters where many deep chains compete. Tasks already
sent to a worker, or final, are not lifted (nor anything above them): their
rank no longer matters. The scheduler inserts the tasks of one ``Submitted``
event with :meth:`Graph.insert` and lifts them in one pass with
:meth:`Graph.lift`, so a subtree is walked once per event, not once per task
above it.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Hashable, Iterable, Mapping

from ._errors import CycleError

__all__ = ["Graph", "Node", "Status", "toposort"]


class Status(enum.Enum):
    WAITING = "waiting"  # some dependency not finished
    READY = "ready"  # all dependencies finished, not yet given to a worker
    ASSIGNED = "assigned"  # sent to a worker (queued there or running)
    DELAYED = "delayed"  # failed, and waiting to be retried

    # Enum hashes by name, in Python; members are singletons, so identity
    # will do, in C. Status sets are tested several times per task.
    __hash__ = object.__hash__
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: The members as module constants, for the loops that run per task:
#: ``Status.READY`` is a lookup through the enum's metaclass (~45 ns each,
#: several per task; the runtime thread's CPU per W7 tree fell 12% without
#: them, docs/benchmarks.md).
WAITING, READY, ASSIGNED, DELAYED = Status.WAITING, Status.READY, Status.ASSIGNED, Status.DELAYED
DONE, FAILED, CANCELLED = Status.DONE, Status.FAILED, Status.CANCELLED

MAX_LIFT = 32
FINAL = frozenset({DONE, FAILED, CANCELLED})
#: Tasks whose height still matters: they have yet to be ranked in the ready
#: queue. (Heights of tasks already sent, or final, are left as they are.)
UNSENT = frozenset({WAITING, READY, DELAYED})


class Node:
    """One task's place in the graph."""

    __slots__ = (
        "attempts",
        "dependents",
        "deps",
        "group",
        "height",
        "isolated",
        "key",
        "priority",
        "retries",
        "retry_delay",
        "settled",
        "splittable",
        "status",
        "timeout",
        "unsettled",
        "waiting_on",
    )

    def __init__(self, key: int, deps: tuple[int, ...], priority: int, group: int = 0) -> None:
        self.key = key
        self.group = group
        self.deps = deps
        self.priority = priority
        #: Tasks submitted with this one as a dependency. A tuple, grown by
        #: concatenation: most tasks have none or one, and a tuple of ints is
        #: not tracked by the cyclic garbage collector, a list always is.
        self.dependents: tuple[int, ...] = ()
        self.waiting_on = 0
        #: Dependents that may still need this task's result sent to them.
        self.unsettled = 0
        #: True once this task no longer needs its dependencies' results.
        self.settled = False
        self.height = 1
        self.status = WAITING
        #: Failures charged to this task so far, and how many it may have
        #: before it fails for good (the scheduler sets these).
        self.attempts = 0
        self.retries = 0
        self.timeout: float | None = None
        self.retry_delay = 0.0
        self.splittable = False
        self.isolated = False

    def __repr__(self) -> str:
        return f"Node({self.key}, {self.status.value}, deps={self.deps}, height={self.height})"


class Graph:
    """Nodes by key; finished nodes are dropped once nothing can refer to them."""

    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}

    def add(
        self, key: int, deps: tuple[int, ...], priority: int, group: int = 0
    ) -> tuple[Node, list[Node]]:
        """Insert a task; return its node and the unfinished nodes whose height rose.

        A dependency that is not in the graph has finished and been forgotten,
        so it is not waited on. The caller keeps failed and cancelled
        dependencies out: a task depending on one never enters the graph.
        """
        node = self.insert(key, deps, priority, group)
        raised: list[Node] = []
        for dep_key in deps:
            dep = self.nodes.get(dep_key)
            if dep is not None and dep.status not in FINAL:
                self._lift(dep, 2, raised)
        return node, raised

    def insert(self, key: int, deps: tuple[int, ...], priority: int, group: int = 0) -> Node:
        """Insert a task without lifting any height: :meth:`add` without the
        walk, for a batch whose heights :meth:`lift` raises at once."""
        nodes = self.nodes
        if key in nodes:
            raise ValueError(f"task {key} is already in the graph")
        node = Node(key, deps, priority, group)
        nodes[key] = node
        for dep_key in deps:
            dep = nodes.get(dep_key)
            if dep is None:
                continue
            dep.dependents += (key,)
            dep.unsettled += 1
            if dep.status not in FINAL:
                node.waiting_on += 1
        if node.waiting_on == 0:
            node.status = READY
        return node

    def lift(self, added: Iterable[Node]) -> list[Node]:
        """Raise heights for a batch of tasks just inserted; return the nodes
        whose height rose, each once.

        One pass, in descending key order: a task's dependents all have
        larger keys, so each node is taken once, with its final height, and
        lifts its dependencies once. Adding the tasks one by one walks a
        subtree again for every task above it: a tree submitted level by level
        costs O(n log n) visits that way. A dependency is raised to one more
        than its dependent, at most to ``MAX_LIFT + 1``, and only through
        tasks not yet sent: the heights :meth:`add` gives, one at a time,
        while no chain reaches that cap (past it, both are lower bounds).
        """
        nodes = self.nodes
        top = MAX_LIFT + 1
        todo = [-node.key for node in added if node.deps]
        heapq.heapify(todo)
        raised: dict[int, Node] = {}
        last = None
        while todo:
            key = -heapq.heappop(todo)
            if key == last:
                continue  # queued twice: new in the batch, and raised by a later one
            last = key
            node = nodes[key]
            height = min(node.height + 1, top)
            for dep_key in node.deps:
                dep = nodes.get(dep_key)
                if dep is None or dep.height >= height or dep.status not in UNSENT:
                    continue
                dep.height = height
                if dep_key not in raised:
                    raised[dep_key] = dep
                    if dep.deps:
                        heapq.heappush(todo, -dep_key)
        return list(raised.values())

    def _lift(self, start: Node, height: int, raised: list[Node]) -> None:
        """Raise ``start`` to ``height`` and its dependencies below it, one level
        at a time (the same heights as a depth-first walk; no tuple per step)."""
        nodes = self.nodes
        level = [start]
        top = MAX_LIFT + 1
        while level and height <= top:
            below: list[Node] = []
            for node in level:
                if node.height >= height or node.status not in UNSENT:
                    continue
                node.height = height
                raised.append(node)
                for dep_key in node.deps:
                    dep = nodes.get(dep_key)
                    if dep is not None:
                        below.append(dep)
            level = below
            height += 1

    def finish(self, key: int) -> list[Node]:
        """Mark a task done; return the dependents that became ready."""
        node = self.nodes[key]
        node.status = DONE
        ready = []
        for child_key in node.dependents:
            child = self.nodes.get(child_key)
            if child is None or child.status is not WAITING:
                continue
            child.waiting_on -= 1
            if child.waiting_on == 0:
                child.status = READY
                ready.append(child)
        return ready

    def descendants(self, key: int) -> list[Node]:
        """Unfinished tasks that depend on ``key``, directly or not, in key order."""
        seen: dict[int, Node] = {}
        stack = list(self.nodes[key].dependents)
        while stack:
            child = self.nodes.get(stack.pop())
            if child is None or child.key in seen or child.status in FINAL:
                continue
            seen[child.key] = child
            stack.extend(child.dependents)
        return [seen[k] for k in sorted(seen)]

    def forget(self, key: int) -> None:
        """Drop a finished task whose dependents no longer need its node."""
        self.nodes.pop(key, None)


def toposort(deps: Mapping[Hashable, Iterable[Hashable]]) -> list[Hashable]:
    """Order the keys of a whole graph so each comes after its dependencies.

    ``deps`` maps every key to the keys it depends on. Raises ``CycleError``
    naming the keys of one cycle, or ``KeyError`` naming a missing dependency.
    Iterative (deep graphs do not hit the recursion limit) and stable: among
    independent keys the mapping's order is kept.
    """
    order: list[Hashable] = []
    state: dict[Hashable, int] = {}  # 1 = on the current path, 2 = placed
    for root in deps:
        if state.get(root) == 2:
            continue
        path: list[Hashable] = [root]
        iters = [iter(deps[root])]
        state[root] = 1
        while iters:
            nxt = next(iters[-1], _END)
            if nxt is _END:
                iters.pop()
                done = path.pop()
                state[done] = 2
                order.append(done)
                continue
            if nxt not in deps:
                raise KeyError(f"task {path[-1]!r} depends on {nxt!r}, which is not in the graph")
            mark = state.get(nxt)
            if mark == 1:
                loop = [*path[path.index(nxt) :], nxt]
                raise CycleError("dependency cycle: " + " -> ".join(map(repr, loop)))
            if mark is None:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(deps[nxt]))
    return order


_END = object()
