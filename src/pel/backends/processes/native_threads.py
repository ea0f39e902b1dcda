"""How many threads the native libraries in each worker process may start.

NumPy's BLAS (OpenBLAS, MKL, BLIS, Accelerate), OpenMP code and numexpr each
start a pool of one thread per core in every process that loads them: N
workers on N cores run N*N such threads, which fight over the cores, and
OpenBLAS's threads spin while they wait for work, which takes a core from
whatever else runs. Measured on 2 cores: two workers importing numpy slowed
the parent's 400 MB write into /dev/shm from 0.15 s to 0.20 s; with the pools
capped, not at all. loky (joblib) caps them at cores / workers too; Dask's
nanny sets them to 1; Ray sets ``OMP_NUM_THREADS`` to a task's ``num_cpus``.

The variables must be set before a library loads, so pel's fork server starts
with them (it may import the user's script, and numpy with it); a worker
started through a multiprocessing context sets them as it starts, which is
too late for a library its main module already loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .. import usable_cores

__all__ = ["VARIABLES", "default_inner_threads", "environment_now", "worker_environment"]

#: The variables the common native thread pools read at load time.
VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def default_inner_threads(workers: int, cores: int) -> int:
    """Cores shared evenly between the workers, at least one each."""
    return max(1, cores // workers)


def worker_environment(
    inner_threads: int | None, workers: int, cores: int, environ: Mapping[str, str]
) -> dict[str, str]:
    """The variables to set in workers. ``inner_threads=None``: the default,
    and only where ``environ`` has not set a variable already (the user's
    own choice stands); a number: all of them, to that number."""
    if inner_threads is None:
        value = str(default_inner_threads(workers, cores))
        return {name: value for name in VARIABLES if name not in environ}
    return dict.fromkeys(VARIABLES, str(inner_threads))


def environment_now(inner_threads: int | None, workers: int) -> dict[str, str]:
    """:func:`worker_environment` for this process, as its environment is now."""
    return worker_environment(inner_threads, workers, usable_cores(), os.environ)
