"""What starting pel imports: the cold-start budget, kept by module, not by clock.

A worker process is a fresh interpreter, and the first task waits for its
imports; a program waits for the parent's. Each module named here once cost
milliseconds (benchmarks.profile startup, W8), so a change that brings one
back fails here rather than slowly in a benchmark nobody reruns.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
{imports}
print(" ".join(sorted(m for m in {watched!r} if m in sys.modules)))
"""


def imported(imports: str, watched: tuple[str, ...]) -> list[str]:
    code = PROBE.format(imports=imports, watched=watched)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.split()


def test_import_pel_loads_nothing_until_used() -> None:
    assert imported("import pel", ("pel._executor", "pel._errors", "pel._task", "typing")) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux's")
def test_a_worker_s_start_up_imports_stay_lean() -> None:
    heavy = (
        "typing",
        "dataclasses",
        "inspect",
        "logging",
        "concurrent.futures",
        "traceback",
        "multiprocessing",
        "cloudpickle",
        "pel._errors",
        "pel.scheduler",
        "re",  # through pickle
        "enum",  # through signal, socket or re
        "selectors",  # through socket
    )
    imports = "import pel.backends.processes.zygote, pel.backends.processes.worker, ctypes"
    assert imported(imports, heavy) == []


def test_the_parent_s_executor_imports_no_dataclasses_or_multiprocessing() -> None:
    heavy = ("dataclasses", "inspect", "multiprocessing", "cloudpickle")
    imports = "import pel\npel.Executor\nimport pel.backends.processes.pool"
    assert imported(imports, heavy) == []
