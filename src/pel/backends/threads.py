"""The threads backend: worker threads in this process; nothing is pickled.

For tasks that release the GIL (NumPy, I/O, C extensions) or whose arguments
cannot be pickled. Each worker thread owns a deque of calls; the scheduler's
prefetch decides how long it gets. Finished calls go to one shared list that
the runtime collects in :meth:`wait`.

A thread cannot be killed. "Killing" a worker (a timeout, or a cancelled
running task) abandons its thread: the worker is reported gone at once and
replaced, and whatever the thread still returns is thrown away.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import ClassVar

from .base import (
    TIMED,
    Backend,
    Call,
    Completed,
    Exited,
    GaveBack,
    Report,
    StartedCall,
    run_call,
    run_initializer,
)

__all__ = ["ThreadsBackend"]


class _Worker:
    __slots__ = ("abandoned", "calls", "has_work", "id", "stopping", "thread")

    def __init__(self, worker_id: int, lock: threading.Lock) -> None:
        self.id = worker_id
        self.has_work = threading.Condition(lock)
        self.calls: deque[Call] = deque()
        self.stopping = False
        self.abandoned = False
        self.thread: threading.Thread | None = None


class ThreadsBackend(Backend):
    name: ClassVar[str] = "threads"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lock = threading.Lock()
        self._news = threading.Condition(self._lock)  # the runtime waits here for reports
        self._reports: list[Report] = []
        self._woken = False
        self._workers: dict[int, _Worker] = {}
        self._next_id = 0

    def start_worker(self) -> int:
        worker = _Worker(self._next_id, self._lock)
        self._next_id += 1
        worker.thread = threading.Thread(
            target=self._run, args=(worker,), name=f"pel-thread-{worker.id}", daemon=True
        )
        self._workers[worker.id] = worker
        worker.thread.start()
        return worker.id

    def _run(self, worker: _Worker) -> None:
        failure = run_initializer(self.options)
        if failure is not None:
            with self._lock:
                self._reports.append(
                    Exited(worker.id, None, None, f"its initializer failed:\n{failure}")
                )
                self._news.notify()
            return
        while True:
            with self._lock:
                while not worker.calls and not worker.stopping:
                    worker.has_work.wait()
                if not worker.calls or worker.abandoned:
                    return
                call = worker.calls.popleft()
                if call.flags & TIMED:
                    self._reports.append(StartedCall(worker.id, call.key))
                    self._news.notify()
            outcome = run_call(call)
            with self._lock:
                if worker.abandoned:
                    return
                self._reports.append(Completed(worker.id, [outcome]))
                self._news.notify()

    def send(self, worker: int, calls: list[Call]) -> None:
        with self._lock:
            target = self._workers.get(worker)
            if target is None:
                return  # abandoned meanwhile; its Exited report is on its way
            target.calls.extend(calls)
            target.has_work.notify()

    def steal(self, worker: int, count: int) -> None:
        with self._lock:
            target = self._workers.get(worker)
            if target is None:
                return
            queue = target.calls
            taken = [queue.pop().key for _ in range(min(count, len(queue)))]
            self._reports.append(GaveBack(worker, taken))
            self._news.notify()

    def kill_worker(self, worker: int) -> None:
        with self._lock:
            target = self._workers.pop(worker, None)
            if target is None:
                return
            target.abandoned = True
            target.calls.clear()
            target.has_work.notify()
            self._reports.append(Exited(worker, None, None))
            self._news.notify()

    def drop(self, worker: int, keys: list[int]) -> None:
        with self._lock:
            target = self._workers.get(worker)
            if target is None:
                return
            wanted = set(keys)
            dropped = [call.key for call in target.calls if call.key in wanted]
            if dropped:
                target.calls = deque(c for c in target.calls if c.key not in wanted)
                self._reports.append(GaveBack(worker, dropped, stolen=False))
                self._news.notify()

    def wait(self, timeout: float | None) -> list[Report]:
        with self._lock:
            if not self._reports and not self._woken:
                self._news.wait(timeout)
            reports, self._reports = self._reports, []
            self._woken = False
            return reports

    def wakeup(self) -> None:
        with self._lock:
            self._woken = True
            self._news.notify()

    def close(self, *, kill: bool) -> None:
        # Threads cannot be killed: with ``kill`` their queued calls are dropped
        # and the running ones are left to finish as daemon threads.
        with self._lock:
            for worker in self._workers.values():
                worker.stopping = True
                if kill:
                    worker.calls.clear()
                worker.has_work.notify()
        if not kill:
            for worker in self._workers.values():
                if worker.thread is not None and worker.thread is not threading.current_thread():
                    worker.thread.join()
