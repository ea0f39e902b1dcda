"""One adapter per system, all with the same small interface.

Each adapter is written the way a user of that system would write the code:

- ``submit_many``: one submit per task, then gather all (W1, W4, W5-submit,
  W9). Systems without a per-call API use their closest equivalent (joblib:
  ``Parallel(batch_size=1)``; dask local scheduler: one ``delayed`` call per
  task, one ``compute``).
- ``map``: the system's best bulk map, chunking left to the system (W2,
  W5-map).
- ``round_trip``: one task submitted and waited for (W3).
- ``tree_sum``: the W7 binary tree, through the system's native way of passing
  results as dependencies (pel futures, dask ``delayed`` / distributed futures,
  Ray ObjectRefs). Systems that cannot pass a pending result as an argument
  (ProcessPoolExecutor, multiprocessing.Pool, joblib, mpire) reduce level by
  level, waiting for each level, which is what their users would do.
- ``submit_shared``: W6, one big object to many tasks, by the system's idiom
  (plain arguments for most; ``scatter`` for dask.distributed, ``ray.put``,
  mpire ``shared_objects``; joblib memory-maps large arrays on its own).
- ``results_reduce``: W6-results, tasks returning large arrays that one more
  task combines: futures/refs as arguments where the system has them (pel,
  dask, Ray), else gather in the parent and submit the combining task.
- ``put_read``: W6-bandwidth, store one large array once and read it in a
  task (pel ``put``, ``ray.put``, dask ``scatter``); others have no such API.
- ``cold_code``: the ``python -c`` program of W8.

Imports of the systems happen in ``start`` so that a missing package is found
there and reported, not hidden.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import workloads as wl

Args = Sequence[tuple[Any, ...]]


class System:
    name = ""
    label = ""  # short column title
    module = ""  # top-level import whose absence means "not installed"
    distributions: tuple[str, ...] = ()  # for version reporting
    notes = ""

    def __init__(self) -> None:
        self.n = 0

    @classmethod
    def missing(cls) -> str | None:
        """Why this system cannot run here (``None`` when it is installed)."""
        for mod in cls.module.split(","):
            if mod and importlib.util.find_spec(mod) is None:
                return f"not installed (no module {mod!r})"
        return None

    def start(self, n: int) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def submit_many(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        raise NotImplementedError

    def submit_outcomes(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        """Like ``submit_many`` but per task: the value, or the exception it raised.

        Systems without per-task results let the whole call raise.
        """
        return self.submit_many(fn, args)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    def round_trip(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        return self.submit_many(fn, [(arg,)])[0]

    def tree_sum(self, leaves: int) -> int:
        """Level by level: submit a level, wait for it, pair up the results."""
        values = self.submit_many(wl.leaf, [(i,) for i in range(leaves)])
        while len(values) > 1:
            pairs = [(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]
            odd = [values[-1]] if len(values) % 2 else []
            values = self.submit_many(wl.add, pairs) + odd
        return int(values[0])

    def submit_shared(self, fn: Callable[..., Any], big: Any, args: Args) -> list[Any]:
        return self.submit_many(fn, [(big, *a) for a in args])

    def results_reduce(
        self, make: Callable[..., Any], combine: Callable[[list[Any]], Any], args: Args
    ) -> Any:
        """Gather the parts in the parent, then send them all to ``combine``."""
        parts = self.submit_many(make, args)
        return self.submit_many(combine, [(parts,)])[0]

    def put_read(self, big: Any, read: Callable[[Any], Any]) -> tuple[float, float, Any]:
        """Store ``big`` once, then read it in a task: (put seconds, read seconds, value)."""
        raise NotImplementedError(f"{self.name} has no API to store an object once")

    @staticmethod
    def cold_code(n: int) -> str:
        raise NotImplementedError


def _futures_outcomes(futures: list[Any]) -> list[Any]:
    out: list[Any] = []
    for f in futures:
        try:
            out.append(f.result())
        except BaseException as exc:
            out.append(exc)
    return out


# -- pel -------------------------------------------------------------------------------


class Pel(System):
    name = label = "pel"
    module = "pel"
    distributions = ("pel", "cloudpickle")
    notes = "pel.Executor(N), default backend (processes, pel's fork server)"

    def start(self, n: int) -> None:
        import pel

        self.n = n
        self.ex = pel.Executor(n)

    def stop(self) -> None:
        self.ex.shutdown()

    def submit_many(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        futures = [self.ex.submit(fn, *a) for a in args]
        return [f.result() for f in futures]

    def submit_outcomes(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        return _futures_outcomes([self.ex.submit(fn, *a) for a in args])

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        return list(self.ex.map(fn, items))

    def round_trip(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        return self.ex.submit(fn, arg).result()

    def tree_sum(self, leaves: int) -> int:
        level = [self.ex.submit(wl.leaf, i) for i in range(leaves)]
        while len(level) > 1:
            odd = [level[-1]] if len(level) % 2 else []
            level = [
                self.ex.submit(wl.add, level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)
            ] + odd
        return int(level[0].result())

    def results_reduce(
        self, make: Callable[..., Any], combine: Callable[[list[Any]], Any], args: Args
    ) -> Any:
        parts = [self.ex.submit(make, *a) for a in args]
        return self.ex.submit(combine, parts).result()

    def put_read(self, big: Any, read: Callable[[Any], Any]) -> tuple[float, float, Any]:
        t0 = time.perf_counter()
        ref = self.ex.put(big)
        t1 = time.perf_counter()
        value = self.ex.submit(read, ref).result()
        return t1 - t0, time.perf_counter() - t1, value

    @staticmethod
    def cold_code(n: int) -> str:
        return (
            "import pel\n"
            "from benchmarks.workloads import noop\n"
            f"with pel.Executor({n}) as ex:\n"
            "    assert ex.submit(noop, 1).result() == 1\n"
        )


# -- concurrent.futures.ProcessPoolExecutor ----------------------------------------------


class ProcessPool(System):
    name = "processpool"
    label = "cf.PPE"
    module = "concurrent.futures"
    notes = "concurrent.futures.ProcessPoolExecutor(N), default context (fork on Linux/3.11)"

    def start(self, n: int) -> None:
        self.n = n
        self.ex = concurrent.futures.ProcessPoolExecutor(n)

    def stop(self) -> None:
        self.ex.shutdown()

    def submit_many(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        futures = [self.ex.submit(fn, *a) for a in args]
        return [f.result() for f in futures]

    def submit_outcomes(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        return _futures_outcomes([self.ex.submit(fn, *a) for a in args])

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        # chunksize=1 is the default: "chunking left to the system".
        return list(self.ex.map(fn, items))

    def round_trip(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        return self.ex.submit(fn, arg).result()

    @staticmethod
    def cold_code(n: int) -> str:
        return (
            "import concurrent.futures\n"
            "from benchmarks.workloads import noop\n"
            f"with concurrent.futures.ProcessPoolExecutor({n}) as ex:\n"
            "    assert ex.submit(noop, 1).result() == 1\n"
        )


# -- multiprocessing.Pool -------------------------------------------------------------


class MpPool(System):
    name = "mp-pool"
    label = "mp.Pool"
    module = "multiprocessing"
    notes = "multiprocessing.Pool(N), default context (fork); apply_async / map"

    def start(self, n: int) -> None:
        self.n = n
        self.pool = multiprocessing.Pool(n)

    def stop(self) -> None:
        self.pool.close()
        self.pool.join()

    def submit_many(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        results = [self.pool.apply_async(fn, a) for a in args]
        return [r.get() for r in results]

    def submit_outcomes(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        results = [self.pool.apply_async(fn, a) for a in args]
        out: list[Any] = []
        for r in results:
            try:
                out.append(r.get())
            except Exception as exc:
                out.append(exc)
        return out

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        return self.pool.map(fn, items)

    def round_trip(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        return self.pool.apply_async(fn, (arg,)).get()

    @staticmethod
    def cold_code(n: int) -> str:
        return (
            "import multiprocessing\n"
            "from benchmarks.workloads import noop\n"
            f"with multiprocessing.Pool({n}) as pool:\n"
            "    assert pool.apply(noop, (1,)) == 1\n"
        )


# -- joblib (loky) -----------------------------------------------------------------------


class Joblib(System):
    name = label = "joblib"
    module = "joblib"
    distributions = ("joblib",)
    notes = (
        "joblib.Parallel(n_jobs=N) on loky (n_jobs=1 runs in the caller); per-task rows use "
        "batch_size=1, maps batch_size='auto'; large arrays auto-memmapped"
    )

    def start(self, n: int) -> None:
        import joblib

        self.joblib = joblib
        self.n = n
        self.one = joblib.Parallel(n_jobs=n, backend="loky", batch_size=1)
        self.auto = joblib.Parallel(n_jobs=n, backend="loky")

    def stop(self) -> None:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)

    def submit_many(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        return list(self.one(self.joblib.delayed(fn)(*a) for a in args))

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        return list(self.auto(self.joblib.delayed(fn)(x) for x in items))

    @staticmethod
    def cold_code(n: int) -> str:
        return (
            "from joblib import Parallel, delayed\n"
            "from benchmarks.workloads import noop\n"
            f"assert Parallel(n_jobs={n})([delayed(noop)(1)]) == [1]\n"
        )


# -- mpire ---------------------------------------------------------------------------


class Mpire(System):
    name = label = "mpire"
    module = "mpire"
    distributions = ("mpire",)
    notes = "mpire.WorkerPool(N, keep_alive=True), default start method (fork)"

    def start(self, n: int) -> None:
        from mpire import WorkerPool

        self.n = n
        self.pool = WorkerPool(n_jobs=n, keep_alive=True)

    def stop(self) -> None:
        self.pool.stop_and_join()

    def submit_many(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        results = [self.pool.apply_async(fn, a) for a in args]
        return [r.get() for r in results]

    def submit_outcomes(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        results = [self.pool.apply_async(fn, a) for a in args]
        out: list[Any] = []
        for r in results:
            try:
                out.append(r.get())
            except Exception as exc:
                out.append(exc)
        return out

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        return list(self.pool.map(fn, items))

    def round_trip(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        return self.pool.apply_async(fn, (arg,)).get()

    def submit_shared(self, fn: Callable[..., Any], big: Any, args: Args) -> list[Any]:
        # mpire's idiom: shared_objects (copy-on-write under fork); needs its own pool.
        from mpire import WorkerPool

        with WorkerPool(n_jobs=self.n, shared_objects=big) as pool:
            return list(pool.map(fn, list(args)))

    @staticmethod
    def cold_code(n: int) -> str:
        return (
            "from mpire import WorkerPool\n"
            "from benchmarks.workloads import noop\n"
            f"with WorkerPool(n_jobs={n}) as pool:\n"
            "    assert pool.map(noop, [1]) == [1]\n"
        )


# -- dask, local "processes" scheduler ------------------------------------------------------


class DaskProcesses(System):
    name = "dask-processes"
    label = "dask-proc"
    module = "dask"
    distributions = ("dask",)
    notes = (
        "dask local 'processes' scheduler on one ProcessPoolExecutor(N, spawn) kept for the "
        "run; per-task rows = one delayed per task + one compute; maps = dask.bag"
    )

    def start(self, n: int) -> None:
        import dask
        import dask.multiprocessing

        self.dask = dask
        self.n = n
        self.pool = concurrent.futures.ProcessPoolExecutor(
            n, mp_context=dask.multiprocessing.get_context()
        )
        dask.config.set(scheduler="processes", pool=self.pool, num_workers=n)

    def stop(self) -> None:
        self.pool.shutdown()

    def submit_many(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        delayed = self.dask.delayed(fn)
        return list(self.dask.compute(*[delayed(*a) for a in args]))

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        import dask.bag as db

        return list(db.from_sequence(items).map(fn).compute())

    def round_trip(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        return self.dask.delayed(fn)(arg).compute()

    def tree_sum(self, leaves: int) -> int:
        delayed = self.dask.delayed
        level = [delayed(wl.leaf)(i) for i in range(leaves)]
        while len(level) > 1:
            odd = [level[-1]] if len(level) % 2 else []
            level = [
                delayed(wl.add)(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)
            ] + odd
        return int(level[0].compute())

    def submit_shared(self, fn: Callable[..., Any], big: Any, args: Args) -> list[Any]:
        shared = self.dask.delayed(big, pure=False)
        delayed = self.dask.delayed(fn)
        return list(self.dask.compute(*[delayed(shared, *a) for a in args]))

    def results_reduce(
        self, make: Callable[..., Any], combine: Callable[[list[Any]], Any], args: Args
    ) -> Any:
        parts = [self.dask.delayed(make)(*a) for a in args]
        return self.dask.delayed(combine)(parts).compute()

    @staticmethod
    def cold_code(n: int) -> str:
        return (
            "import dask\n"
            "from benchmarks.workloads import noop\n"
            f"assert dask.delayed(noop)(1).compute(scheduler='processes', num_workers={n}) == 1\n"
        )


# -- dask.distributed LocalCluster --------------------------------------------------------


class DaskDistributed(System):
    name = "dask-distributed"
    label = "dask-dist"
    module = "dask,distributed"
    distributions = ("dask", "distributed")
    notes = (
        "distributed.LocalCluster(n_workers=N, threads_per_worker=1, processes=True); "
        "client.submit(pure=False) / futures as arguments; maps = dask.bag; W6 uses scatter"
    )

    def start(self, n: int) -> None:
        from distributed import Client, LocalCluster

        logging.getLogger("distributed").setLevel(logging.ERROR)
        self.n = n
        self.cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        self.client = Client(self.cluster)

    def stop(self) -> None:
        self.client.close()
        self.cluster.close()

    def submit_many(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        futures = [self.client.submit(fn, *a, pure=False) for a in args]
        return list(self.client.gather(futures))

    def submit_outcomes(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        return _futures_outcomes([self.client.submit(fn, *a, pure=False) for a in args])

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        import dask.bag as db

        return list(db.from_sequence(items).map(fn).compute())

    def round_trip(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        return self.client.submit(fn, arg, pure=False).result()

    def tree_sum(self, leaves: int) -> int:
        submit = self.client.submit
        level = [submit(wl.leaf, i, pure=False) for i in range(leaves)]
        while len(level) > 1:
            odd = [level[-1]] if len(level) % 2 else []
            level = [
                submit(wl.add, level[i], level[i + 1], pure=False)
                for i in range(0, len(level) - 1, 2)
            ] + odd
        return int(level[0].result())

    def submit_shared(self, fn: Callable[..., Any], big: Any, args: Args) -> list[Any]:
        shared = self.client.scatter(big)
        return self.submit_many(fn, [(shared, *a) for a in args])

    def results_reduce(
        self, make: Callable[..., Any], combine: Callable[[list[Any]], Any], args: Args
    ) -> Any:
        parts = [self.client.submit(make, *a, pure=False) for a in args]
        return self.client.submit(combine, parts, pure=False).result()

    def put_read(self, big: Any, read: Callable[[Any], Any]) -> tuple[float, float, Any]:
        t0 = time.perf_counter()
        shared = self.client.scatter(big)
        t1 = time.perf_counter()
        value = self.client.submit(read, shared, pure=False).result()
        return t1 - t0, time.perf_counter() - t1, value

    @staticmethod
    def cold_code(n: int) -> str:
        return (
            "from distributed import Client, LocalCluster\n"
            "from benchmarks.workloads import noop\n"
            "if __name__ == '__main__':\n"
            f"    with LocalCluster(n_workers={n}, threads_per_worker=1, processes=True,\n"
            "                      dashboard_address=None) as cluster, Client(cluster) as c:\n"
            "        assert c.submit(noop, 1).result() == 1\n"
        )


# -- ray -------------------------------------------------------------------------------


class Ray(System):
    name = label = "ray"
    module = "ray"
    distributions = ("ray",)
    notes = (
        "ray.init(num_cpus=N) local; f.remote per task, ObjectRefs as arguments; "
        "maps = ray.util.multiprocessing.Pool(N).map; W6 uses ray.put"
    )

    def start(self, n: int) -> None:
        import ray

        self.ray = ray
        self.n = n
        self._remotes: dict[Any, Any] = {}
        self._pool: Any = None
        ray.init(
            num_cpus=n,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=False,
        )

    def _remote(self, fn: Callable[..., Any]) -> Any:
        r = self._remotes.get(fn)
        if r is None:
            r = self._remotes[fn] = self.ray.remote(fn)
        return r

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
        self.ray.shutdown()

    def submit_many(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        remote = self._remote(fn)
        return list(self.ray.get([remote.remote(*a) for a in args]))

    def submit_outcomes(self, fn: Callable[..., Any], args: Args) -> list[Any]:
        remote = self._remote(fn)
        refs = [remote.remote(*a) for a in args]
        out: list[Any] = []
        for ref in refs:
            try:
                out.append(self.ray.get(ref))
            except Exception as exc:
                out.append(exc)
        return out

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if self._pool is None:
            from ray.util.multiprocessing import Pool

            self._pool = Pool(self.n)
        return list(self._pool.map(fn, items))

    def round_trip(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        return self.ray.get(self._remote(fn).remote(arg))

    def tree_sum(self, leaves: int) -> int:
        leaf, add = self._remote(wl.leaf), self._remote(wl.add)
        level = [leaf.remote(i) for i in range(leaves)]
        while len(level) > 1:
            odd = [level[-1]] if len(level) % 2 else []
            level = [add.remote(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)] + odd
        return int(self.ray.get(level[0]))

    def submit_shared(self, fn: Callable[..., Any], big: Any, args: Args) -> list[Any]:
        shared = self.ray.put(big)
        return self.submit_many(fn, [(shared, *a) for a in args])

    def results_reduce(
        self, make: Callable[..., Any], combine: Callable[[list[Any]], Any], args: Args
    ) -> Any:
        # Ray resolves ObjectRefs only as top-level arguments: pass them as *args.
        parts = [self._remote(make).remote(*a) for a in args]
        return self.ray.get(self._remote(wl.sum_parts_star).remote(*parts))

    def put_read(self, big: Any, read: Callable[[Any], Any]) -> tuple[float, float, Any]:
        t0 = time.perf_counter()
        shared = self.ray.put(big)
        t1 = time.perf_counter()
        value = self.ray.get(self._remote(read).remote(shared))
        return t1 - t0, time.perf_counter() - t1, value

    @staticmethod
    def cold_code(n: int) -> str:
        return (
            "import ray\n"
            "from benchmarks.workloads import noop\n"
            f"ray.init(num_cpus={n}, include_dashboard=False)\n"
            "assert ray.get(ray.remote(noop).remote(1)) == 1\n"
            "ray.shutdown()\n"
        )


SYSTEMS: dict[str, type[System]] = {
    cls.name: cls
    for cls in (Pel, ProcessPool, MpPool, Joblib, Mpire, DaskProcesses, DaskDistributed, Ray)
}


def get(name: str) -> System:
    try:
        return SYSTEMS[name]()
    except KeyError:
        raise SystemExit(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}") from None


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
