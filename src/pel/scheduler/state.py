"""The scheduler's state machine.

``SchedulerState.handle(*events)`` applies events to the state and returns the
instructions they call for, in a deterministic order: the same events give the
same instructions, every time (no sets are iterated, no clock is read).

Ready tasks are ranked by user priority, then height (critical-path length,
from :mod:`pel.graph`), then submission order. Workers are filled round-robin,
least loaded first, up to a prefetch depth set by :func:`policy.prefetch_depth`
from two moving averages: how long tasks of the same group (function) run,
and the round-trip overhead measured on tasks sent to an idle worker. Per
group, because one average over everything lets a burst of tiny tasks make
long ones look tiny and queue them deep. A worker with nothing to do and no
ready task to take asks the most loaded worker for half its unstarted tasks.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from ..graph import FINAL, Graph, Node, Status
from . import policy
from .events import Cancelled, Event, Finished, Returned, Submitted, WorkerJoined, WorkerLost
from .instructions import Cancel, Crashed, Dispatch, Fail, Instruction, Release, Steal

__all__ = ["SchedulerState", "WorkerState"]

#: Round-trip overhead assumed before one is measured (seconds).
DEFAULT_OVERHEAD = 200e-6


@dataclass(slots=True)
class WorkerState:
    id: int
    #: Keys sent to this worker and not yet reported back, in sending order.
    assigned: dict[int, None] = field(default_factory=dict)
    steal_pending: bool = False


class SchedulerState:
    """Graph, ready queue and workers; see the module docstring."""

    def __init__(self) -> None:
        self.graph = Graph()
        self.workers: dict[int, WorkerState] = {}
        self._ready: list[tuple[int, int, int]] = []  # (-priority, -height, key)
        #: Moving average of task run time, over all tasks (for reports) and
        #: per group (for decisions).
        self.task_seconds: float | None = None
        self.group_seconds: dict[int, float] = {}
        self.overhead_seconds = DEFAULT_OVERHEAD
        #: When each task sent to an idle worker left; its round trip is a clean
        #: overhead sample.
        self._probe_sent: dict[int, float] = {}
        self._now = 0.0

    # -- queries ---------------------------------------------------------------

    def prefetch_depth(self, group: int = 0) -> int:
        """How many tasks of ``group`` a worker should hold."""
        return policy.prefetch_depth(self.group_seconds.get(group), self.overhead_seconds)

    def pending(self) -> int:
        """Tasks submitted and not final."""
        return sum(1 for n in self.graph.nodes.values() if n.status not in FINAL)

    def ready_keys(self) -> list[int]:
        """Ready tasks in the order they would be dispatched (for tests)."""
        return [entry[2] for entry in sorted(self._ready) if self._is_current(entry)]

    # -- the one entry point ------------------------------------------------------

    def handle(self, *events: Event) -> list[Instruction]:
        out: list[Instruction] = []
        for event in events:
            if type(event) not in _EVENT_TYPES:
                raise TypeError(f"not a scheduler event: {event!r}")
            self._now = max(self._now, event.now)
            if type(event) is Submitted:
                self._on_submitted(event, out)
            elif type(event) is Finished:
                self._on_finished(event, out)
            elif type(event) is Cancelled:
                self._on_cancelled(event, out)
            elif type(event) is WorkerJoined:
                self.workers[event.worker] = WorkerState(event.worker)
            elif type(event) is WorkerLost:
                self._on_worker_lost(event, out)
            elif type(event) is Returned:
                self._on_returned(event)
        self._fill(out)
        return out

    # -- event handlers ---------------------------------------------------------------

    def _on_submitted(self, event: Submitted, out: list[Instruction]) -> None:
        graph = self.graph
        for spec in event.tasks:
            node, lifted = graph.add(spec.key, spec.deps, spec.priority, spec.group)
            if node.status is Status.READY:
                heapq.heappush(self._ready, _entry(node))
            for other in lifted:
                if other.status is Status.READY:
                    heapq.heappush(self._ready, _entry(other))

    def _on_finished(self, event: Finished, out: list[Instruction]) -> None:
        worker = self.workers.get(event.worker)
        released: list[int] = []
        for key, ok, seconds in event.results:
            if worker is not None:
                worker.assigned.pop(key, None)
            node = self.graph.nodes.get(key)
            if node is None or node.status is not Status.ASSIGNED:
                continue  # cancelled or failed meanwhile
            self.task_seconds = policy.smooth(self.task_seconds, seconds)
            self.group_seconds[node.group] = policy.smooth(
                self.group_seconds.get(node.group), seconds
            )
            sent = self._probe_sent.pop(key, None)
            if sent is not None:
                overhead = max(0.0, event.now - sent - seconds)
                self.overhead_seconds = policy.smooth(self.overhead_seconds, overhead)
            if ok:
                for child in self.graph.finish(key):
                    heapq.heappush(self._ready, _entry(child))
                self._settle_deps(node, released)
                if node.unsettled == 0:
                    self._forget(node, released)
            else:
                node.status = Status.FAILED
                self._finalize_descendants(node, Status.FAILED, out, released)
        if released:
            out.append(Release(tuple(released)))

    def _on_cancelled(self, event: Cancelled, out: list[Instruction]) -> None:
        released: list[int] = []
        for key in event.keys:
            node = self.graph.nodes.get(key)
            if node is None or node.status in FINAL:
                continue
            if node.status is Status.ASSIGNED:
                # The runtime found the future cancelled when it came to send it.
                for worker in self.workers.values():
                    worker.assigned.pop(key, None)
                self._probe_sent.pop(key, None)
            node.status = Status.CANCELLED
            self._finalize_descendants(node, Status.CANCELLED, out, released)
        if released:
            out.append(Release(tuple(released)))

    def _on_worker_lost(self, event: WorkerLost, out: list[Instruction]) -> None:
        worker = self.workers.pop(event.worker, None)
        if worker is None or not worker.assigned:
            return
        lost = tuple(worker.assigned)
        out.append(Crashed(event.worker, lost))
        released: list[int] = []
        for key in lost:
            self._probe_sent.pop(key, None)
            node = self.graph.nodes.get(key)
            if node is not None and node.status is Status.ASSIGNED:
                node.status = Status.FAILED
                self._finalize_descendants(node, Status.FAILED, out, released)
        if released:
            out.append(Release(tuple(released)))

    def _on_returned(self, event: Returned) -> None:
        worker = self.workers.get(event.worker)
        if worker is None:
            return
        worker.steal_pending = False
        for key in event.keys:
            if worker.assigned.pop(key, 0) is not None:
                continue  # not held by this worker (any more)
            node = self.graph.nodes.get(key)
            if node is not None and node.status is Status.ASSIGNED:
                node.status = Status.READY
                self._probe_sent.pop(key, None)
                heapq.heappush(self._ready, _entry(node))

    # -- helpers ---------------------------------------------------------------

    def _finalize_descendants(
        self, node: Node, status: Status, out: list[Instruction], released: list[int]
    ) -> None:
        """Fail or cancel everything that waits on ``node``, then drop the lot."""
        doomed = self.graph.descendants(node.key)
        for child in doomed:
            child.status = status
        if doomed:
            keys = tuple(child.key for child in doomed)
            out.append(Fail(keys, node.key) if status is Status.FAILED else Cancel(keys, node.key))
        for gone in [node, *doomed]:
            self._settle_deps(gone, released)
            self.graph.forget(gone.key)

    def _settle_deps(self, node: Node, released: list[int]) -> None:
        """``node`` is final and no longer needs its dependencies' results.

        Not done at dispatch: a task given back after a steal is sent again,
        and needs them again.
        """
        if node.settled:
            return
        node.settled = True
        for dep_key in node.deps:
            dep = self.graph.nodes.get(dep_key)
            if dep is None:
                continue
            dep.unsettled -= 1
            if dep.unsettled == 0 and dep.status is Status.DONE:
                self._forget(dep, released)

    def _forget(self, node: Node, released: list[int]) -> None:
        self.graph.forget(node.key)
        released.append(node.key)

    def _fill(self, out: list[Instruction]) -> None:
        """Give ready tasks, best first, each to the least loaded worker with room.

        Stops at the first task no worker has room for: a later task whose
        group allows a deeper prefetch does not overtake it.
        """
        if not self.workers:
            return
        batches: dict[int, list[int]] = {}
        workers = list(self.workers.values())
        depths: dict[int, int] = {}
        while True:
            node = self._peek_ready()
            if node is None:
                break
            depth = depths.get(node.group)
            if depth is None:
                depth = depths[node.group] = self.prefetch_depth(node.group)
            worker = min(workers, key=_load)
            if len(worker.assigned) >= depth:
                break
            heapq.heappop(self._ready)
            if not worker.assigned:
                self._probe_sent[node.key] = self._now
            node.status = Status.ASSIGNED
            worker.assigned[node.key] = None
            batches.setdefault(worker.id, []).append(node.key)
        for worker_id, keys in batches.items():
            out.append(Dispatch(worker_id, tuple(keys)))
        # A worker still idle here means no ready task is left to give it.
        self._balance(out)

    def _peek_ready(self) -> Node | None:
        """The best ready task, left in the queue (stale entries are dropped)."""
        nodes = self.graph.nodes
        while self._ready:
            entry = self._ready[0]
            node = nodes.get(entry[2])
            if node is not None and self._is_current(entry):
                return node
            heapq.heappop(self._ready)
        return None

    def _is_current(self, entry: tuple[int, int, int]) -> bool:
        node = self.graph.nodes.get(entry[2])
        return node is not None and node.status is Status.READY and entry == _entry(node)

    def _balance(self, out: list[Instruction]) -> None:
        """Idle workers take unstarted work from the most loaded ones."""
        idle = [w for w in self.workers.values() if not w.assigned]
        if not idle:
            return
        victims = sorted(
            (w for w in self.workers.values() if len(w.assigned) > 1 and not w.steal_pending),
            key=lambda w: (-len(w.assigned), w.id),
        )
        for _thief, victim in zip(idle, victims, strict=False):
            victim.steal_pending = True
            # Half of the unstarted ones (all but the running task), rounded up.
            out.append(Steal(victim.id, len(victim.assigned) // 2))


_EVENT_TYPES = frozenset({Submitted, Finished, Cancelled, WorkerJoined, WorkerLost, Returned})


def _load(worker: WorkerState) -> tuple[int, int]:
    return (len(worker.assigned), worker.id)


def _entry(node: Node) -> tuple[int, int, int]:
    return (-node.priority, -node.height, node.key)
