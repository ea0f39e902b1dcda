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

Failures. A worker runs its tasks in the order they were sent, so the first
task it holds when it dies is the one it was running, or one it finished
whose result it had not sent yet (quick tasks' results are batched). So the
first task is charged an attempt only when that cannot be: it is the only
task held, or it was sent ``isolated`` (results flushed around it). Otherwise
nobody is charged, and
every task the worker held goes back to the queue isolated from then on
(``Isolate``): if one of them kills a worker again, it is known. A charged
task with budget left waits out a backoff (``DELAYED``) and runs again; one
without fails (``Lost``); a splittable one (a map chunk) is ``Split``. A task
with a timeout starts its clock at ``Started``; past its deadline its worker
is killed, and the kill is charged to it. Cancelling a running task kills its
worker, charging nobody; a queued one is dropped, and killed if the worker
turns out to have started it. Time only moves with events:
:meth:`SchedulerState.next_wakeup` says when the runtime should send a
``Tick`` if nothing else happens.
"""

from __future__ import annotations

import heapq
from collections import deque

from .._value import Value
from ..graph import (
    ASSIGNED,
    CANCELLED,
    DELAYED,
    DONE,
    FAILED,
    FINAL,
    READY,
    Graph,
    Node,
    Status,
)
from . import policy
from .events import (
    Cancelled,
    Event,
    Finished,
    Returned,
    Started,
    Submitted,
    Tick,
    WorkerJoined,
    WorkerLost,
)
from .instructions import (
    Cancel,
    Dispatch,
    Drop,
    Fail,
    Instruction,
    Isolate,
    Kill,
    Lost,
    Release,
    Retry,
    Split,
    Steal,
)

__all__ = ["SchedulerState", "WorkerState"]

#: Round-trip overhead assumed before one is measured (seconds).
DEFAULT_OVERHEAD = 200e-6


class WorkerState(Value):
    __slots__ = ("assigned", "cancelling", "deadline", "id", "killing", "steal_pending")

    def __init__(
        self,
        id: int,
        assigned: dict[int, None] | None = None,
        steal_pending: bool = False,
        killing: tuple[int, str] | None = None,
        deadline: tuple[float, int, int] | None = None,
        cancelling: set[int] | None = None,
    ) -> None:
        self.id = id
        #: Keys sent to this worker and not yet reported back, in sending order.
        self.assigned: dict[int, None] = {} if assigned is None else assigned
        self.steal_pending = steal_pending
        #: Set when a Kill was sent: the task it was for, and why ("timeout" or
        #: "cancel"). A killed worker gets no more tasks.
        self.killing = killing
        #: (deadline, key, attempts) of the timed task it runs, if any.
        self.deadline = deadline
        #: Cancelled tasks it was told to drop and has not answered for yet.
        self.cancelling: set[int] = set() if cancelling is None else cancelling


class SchedulerState:
    """Graph, ready queue and workers; see the module docstring."""

    def __init__(self) -> None:
        self.graph = Graph()
        self.workers: dict[int, WorkerState] = {}
        self._ready: list[tuple[int, int, int]] = []  # (-priority, -height, key)
        #: Ready tasks of the default rank (priority 0, height 1: most tasks),
        #: by key, ascending. Their rank is (0, -1, key), so a FIFO keeps their
        #: order at O(1) a task where the heap costs a tuple and O(log n)
        #: comparisons. A task lifted since is ranked in the heap (and its
        #: entry here goes stale); anything else goes to the heap too.
        self._lane: deque[int] = deque()
        #: Moving average of task run time, over all tasks (for reports) and
        #: per group (for decisions).
        self.task_seconds: float | None = None
        self.group_seconds: dict[int, float] = {}
        self.overhead_seconds = DEFAULT_OVERHEAD
        #: When each task sent to an idle worker left; its round trip is a clean
        #: overhead sample.
        self._probe_sent: dict[int, float] = {}
        self._now = 0.0
        #: (due, key): failed tasks waiting out their backoff.
        self._delayed: list[tuple[float, int]] = []

    # -- queries ---------------------------------------------------------------

    def prefetch_depth(self, group: int = 0) -> int:
        """How many tasks of ``group`` a worker should hold."""
        return policy.prefetch_depth(self.group_seconds.get(group), self.overhead_seconds)

    def pending(self) -> int:
        """Tasks submitted and not final."""
        return sum(1 for n in self.graph.nodes.values() if n.status not in FINAL)

    def next_wakeup(self) -> float | None:
        """When a retry falls due or a timeout expires, if nothing happens first."""
        due = [w.deadline[0] for w in self.workers.values() if w.deadline is not None]
        if self._delayed:
            due.append(self._delayed[0][0])
        return min(due) if due else None

    def ready_keys(self) -> list[int]:
        """Ready tasks in the order they would be dispatched (for tests)."""
        lane = [(0, -1, key) for key in self._lane]
        return [entry[2] for entry in sorted(self._ready + lane) if self._is_current(entry)]

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
            elif type(event) is Started:
                self._on_started(event)
        self._kill_cancelled_heads(out)
        self._release_due()
        self._expire(out)
        self._fill(out)
        return out

    # -- event handlers ---------------------------------------------------------------

    def _on_submitted(self, event: Submitted, out: list[Instruction]) -> None:
        graph = self.graph
        insert = graph.insert
        added: list[Node] = []
        for spec in event.tasks:
            node = insert(spec.key, spec.deps, spec.priority, spec.group)
            node.retries = spec.retries
            if spec.timeout is not None:
                node.timeout = spec.timeout
            if spec.retry_delay:
                node.retry_delay = spec.retry_delay
            if spec.splittable:
                node.splittable = True
            if spec.isolated:
                node.isolated = True
            added.append(node)
        # Heights are raised for the whole batch at once (a tree submitted level
        # by level would otherwise walk each subtree again for every level), and
        # each ready task is ranked once, with its final height.
        ready = self._ready
        push = heapq.heappush
        lane = self._lane
        for node in added:
            if node.status is READY:
                if node.priority == 0 and node.height == 1 and (not lane or lane[-1] < node.key):
                    lane.append(node.key)
                else:
                    push(ready, (-node.priority, -node.height, node.key))  # = _entry(node)
        if any(node.deps for node in added):
            for other in graph.lift(added):
                if other.status is READY:
                    push(ready, _entry(other))

    def _on_finished(self, event: Finished, out: list[Instruction]) -> None:
        worker = self.workers.get(event.worker)
        nodes = self.graph.nodes
        released: list[int] = []
        retriable = event.retriable
        probes = self._probe_sent
        group_seconds = self.group_seconds
        task_seconds = self.task_seconds
        for key, ok, seconds in event.results:
            if worker is not None:
                worker.assigned.pop(key, None)
                if worker.cancelling:
                    worker.cancelling.discard(key)
                if worker.deadline is not None and worker.deadline[1] == key:
                    worker.deadline = None
            node = nodes.get(key)
            if node is None or node.status is not ASSIGNED:
                continue  # cancelled or failed meanwhile
            # policy.smooth, written out: this loop runs once per task.
            if task_seconds is None:
                task_seconds = seconds
            else:
                task_seconds += policy.SMOOTHING * (seconds - task_seconds)
            previous = group_seconds.get(node.group)
            group_seconds[node.group] = (
                seconds if previous is None else previous + policy.SMOOTHING * (seconds - previous)
            )
            if probes:
                sent = probes.pop(key, None)
                if sent is not None:
                    overhead = max(0.0, event.now - sent - seconds)
                    self.overhead_seconds = policy.smooth(self.overhead_seconds, overhead)
            if ok:
                if node.dependents:
                    for child in self.graph.finish(key):
                        heapq.heappush(self._ready, _entry(child))
                else:
                    node.status = DONE  # what graph.finish does, with no dependent
                if node.deps:
                    self._settle_deps(node, released)
                else:
                    node.settled = True  # _settle_deps, with nothing to settle
                if node.unsettled == 0:
                    del nodes[key]  # _forget, written out
                    released.append(key)
            elif key in retriable and node.attempts < node.retries:
                self._retry(node, "error", out)
            else:
                node.status = FAILED
                self._finalize_descendants(node, FAILED, out, released)
        self.task_seconds = task_seconds
        if released:
            out.append(Release(tuple(released)))

    def _on_started(self, event: Started) -> None:
        node = self.graph.nodes.get(event.key)
        worker = self.workers.get(event.worker)
        if (
            node is not None
            and node.timeout is not None
            and node.status is ASSIGNED
            and worker is not None
            and event.key in worker.assigned
        ):
            worker.deadline = (event.now + node.timeout, node.key, node.attempts)

    def _on_cancelled(self, event: Cancelled, out: list[Instruction]) -> None:
        released: list[int] = []
        for key in event.keys:
            node = self.graph.nodes.get(key)
            if node is None or node.status in FINAL:
                continue
            if node.status is ASSIGNED:
                self._stop_running(key, out)
            node.status = CANCELLED
            self._finalize_descendants(node, CANCELLED, out, released)
        if released:
            out.append(Release(tuple(released)))

    def _stop_running(self, key: int, out: list[Instruction]) -> None:
        """A task sent to a worker was cancelled: kill the worker if it is
        running it (charging nobody), else have the worker drop it."""
        self._probe_sent.pop(key, None)
        for worker in self.workers.values():
            if key not in worker.assigned:
                continue
            if worker.killing is not None:
                del worker.assigned[key]  # the worker is going anyway
            elif next(iter(worker.assigned)) == key:
                self._kill_for_cancel(worker, key, out)
            else:
                # Held until the worker answers: if the tasks before it turn
                # out to be done first, it is running, and the worker is killed.
                worker.cancelling.add(key)
                out.append(Drop(worker.id, (key,)))
            return

    def _kill_for_cancel(self, worker: WorkerState, key: int, out: list[Instruction]) -> None:
        worker.killing = (key, "cancel")
        del worker.assigned[key]
        worker.cancelling.discard(key)
        out.append(Kill(worker.id))

    def _kill_cancelled_heads(self, out: list[Instruction]) -> None:
        """A cancelled task its worker did not drop, now first: it is running."""
        for worker in self.workers.values():
            if worker.cancelling and worker.killing is None and worker.assigned:
                first = next(iter(worker.assigned))
                if first in worker.cancelling:
                    self._kill_for_cancel(worker, first, out)

    def _on_worker_lost(self, event: WorkerLost, out: list[Instruction]) -> None:
        worker = self.workers.pop(event.worker, None)
        if worker is None or not worker.assigned:
            return
        held = list(worker.assigned)
        charged: int | None = None
        reason = "crash"
        if worker.killing is not None:
            # Killed on purpose: a timeout is charged to its task (if that is
            # still held); a cancel charges nobody.
            key, why = worker.killing
            if why == "timeout" and key in worker.assigned:
                charged, reason = key, "timeout"
        elif event.started:
            # Alone, it was running (a worker with nothing after a task sends
            # its result first); isolated, every result before it was sent.
            first = self.graph.nodes.get(held[0])
            if first is not None and (len(held) == 1 or first.isolated or first.splittable):
                charged = held[0]
        # Nobody can be blamed for sure: all go back, isolated from now on.
        uncertain = worker.killing is None and event.started and charged is None
        released: list[int] = []
        isolate: list[int] = []
        for key in held:
            self._probe_sent.pop(key, None)
            node = self.graph.nodes.get(key)
            if node is None or node.status is not ASSIGNED:
                continue
            if key == charged:
                self._charge(node, event.worker, reason, out, released)
                continue
            node.status = READY
            heapq.heappush(self._ready, _entry(node))
            if uncertain and not node.isolated:
                node.isolated = True
                isolate.append(key)
        if isolate:
            out.append(Isolate(tuple(isolate)))
        if released:
            out.append(Release(tuple(released)))

    def _charge(
        self, node: Node, worker: int, reason: str, out: list[Instruction], released: list[int]
    ) -> None:
        """``node`` took its worker down (or timed out): split, retry or fail it."""
        if node.splittable:
            # Not an attempt of its own: each half gets the full budget.
            out.append(Split(node.key))
            node.status = FAILED
            self._settle_deps(node, released)
            self.graph.forget(node.key)
        elif node.attempts < node.retries:
            self._retry(node, reason, out)
        else:
            node.attempts += 1
            out.append(Lost(worker, node.key, reason == "timeout", node.attempts))
            node.status = FAILED
            self._finalize_descendants(node, FAILED, out, released)

    def _retry(self, node: Node, reason: str, out: list[Instruction]) -> None:
        node.attempts += 1
        if reason != "error":
            node.isolated = True
        delay = policy.retry_delay(node.retry_delay, node.attempts, node.key)
        node.status = DELAYED
        heapq.heappush(self._delayed, (self._now + delay, node.key))
        out.append(Retry(node.key, node.attempts, delay, reason))

    def _release_due(self) -> None:
        """Retries whose backoff is over join the ready queue."""
        delayed = self._delayed
        while delayed and delayed[0][0] <= self._now:
            _, key = heapq.heappop(delayed)
            node = self.graph.nodes.get(key)
            if node is not None and node.status is DELAYED:
                node.status = READY
                heapq.heappush(self._ready, _entry(node))

    def _expire(self, out: list[Instruction]) -> None:
        """Kill the workers of tasks past their deadline."""
        nodes = self.graph.nodes
        for worker in self.workers.values():
            if worker.deadline is None or worker.deadline[0] > self._now:
                continue
            _, key, attempts = worker.deadline
            worker.deadline = None
            node = nodes.get(key)
            if (
                node is not None
                and node.status is ASSIGNED
                and node.attempts == attempts
                and key in worker.assigned
                and worker.killing is None
            ):
                worker.killing = (key, "timeout")
                out.append(Kill(worker.id))

    def _on_returned(self, event: Returned) -> None:
        worker = self.workers.get(event.worker)
        if worker is None:
            return
        if event.stolen:
            worker.steal_pending = False
        for key in event.keys:
            worker.cancelling.discard(key)
            if worker.assigned.pop(key, 0) is not None:
                continue  # not held by this worker (any more)
            node = self.graph.nodes.get(key)
            if node is not None and node.status is ASSIGNED:
                node.status = READY
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
            out.append(Fail(keys, node.key) if status is FAILED else Cancel(keys, node.key))
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
        if not node.deps:
            return
        for dep_key in node.deps:
            dep = self.graph.nodes.get(dep_key)
            if dep is None:
                continue
            dep.unsettled -= 1
            if dep.unsettled == 0 and dep.status is DONE:
                self._forget(dep, released)

    def _forget(self, node: Node, released: list[int]) -> None:
        self.graph.forget(node.key)
        released.append(node.key)

    def _fill(self, out: list[Instruction]) -> None:
        """Give ready tasks, best first, each to the least loaded worker with room.

        Stops at the first task no worker has room for: a later task whose
        group allows a deeper prefetch does not overtake it. Runs once per
        task sent, so the loop is written for speed: workers are kept in a
        heap by (load, id), the least loaded (lowest id among equals) on top.
        """
        if not self.workers:
            return
        workers = [(len(w.assigned), w.id, w) for w in self.workers.values() if w.killing is None]
        if not workers:
            return
        heapq.heapify(workers)
        ready = self._ready
        lane = self._lane
        nodes = self.graph.nodes
        probes = self._probe_sent
        batches: dict[int, list[int]] = {}
        depths: dict[int, int] = {}
        entry = (0, 0, 0)
        while ready or lane:
            # The best ready task: the heap's top or the lane's head, whichever
            # ranks first; stale entries are dropped on the way.
            top = head = None
            if ready:
                entry = ready[0]
                top = nodes.get(entry[2])
                if (
                    top is None
                    or top.status is not READY
                    or entry[1] != -top.height
                    or entry[0] != -top.priority
                ):
                    heapq.heappop(ready)  # no longer ready, or ranked again since
                    continue
            if lane:
                head = nodes.get(lane[0])
                if head is None or head.status is not READY or head.height != 1:
                    lane.popleft()  # no longer ready, or lifted (and in the heap)
                    continue
            from_lane = head is not None and (top is None or (0, -1, head.key) < entry)
            node = head if from_lane else top
            assert node is not None
            depth = depths.get(node.group)
            if depth is None:
                depth = depths[node.group] = self.prefetch_depth(node.group)
            load, worker_id, worker = workers[0]
            if load >= depth:
                break
            if from_lane:
                lane.popleft()
            else:
                heapq.heappop(ready)
            key = node.key
            if not load:
                probes[key] = self._now
            node.status = ASSIGNED
            worker.assigned[key] = None
            heapq.heapreplace(workers, (load + 1, worker_id, worker))
            batch = batches.get(worker_id)
            if batch is None:
                batches[worker_id] = [key]
            else:
                batch.append(key)
        for worker_id, keys in batches.items():
            out.append(Dispatch(worker_id, tuple(keys)))
        # A worker still idle here means no ready task is left to give it.
        self._balance(out)

    def _is_current(self, entry: tuple[int, int, int]) -> bool:
        node = self.graph.nodes.get(entry[2])
        return node is not None and node.status is READY and entry == _entry(node)

    def _balance(self, out: list[Instruction]) -> None:
        """Idle workers take unstarted work from the most loaded ones."""
        idle = [w for w in self.workers.values() if not w.assigned and w.killing is None]
        if not idle:
            return
        victims = sorted(
            (
                w
                for w in self.workers.values()
                if len(w.assigned) > 1 and not w.steal_pending and w.killing is None
            ),
            key=lambda w: (-len(w.assigned), w.id),
        )
        for _thief, victim in zip(idle, victims, strict=False):
            victim.steal_pending = True
            # Half of the unstarted ones (all but the running task), rounded up.
            out.append(Steal(victim.id, len(victim.assigned) // 2))


_EVENT_TYPES = frozenset(
    {Submitted, Finished, Cancelled, WorkerJoined, WorkerLost, Returned, Started, Tick}
)


def _entry(node: Node) -> tuple[int, int, int]:
    return (-node.priority, -node.height, node.key)
