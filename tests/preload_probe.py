"""A module that records whether pel's preload hint is what imported it
(a worker imports it by name before it unpickles the call that needs it)."""

from __future__ import annotations

import os
import pickle
import sys
from typing import Any


def _imported_by_hint() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "import_quietly":
            return True
        frame = frame.f_back
    return False


IMPORTED_BY_HINT = _imported_by_hint()

# A test may hold this import until a file exists (named by this variable in
# the worker's environment), to see what the worker does meanwhile.
_GATE = os.environ.get("PEL_TEST_IMPORT_GATE")
if _GATE and IMPORTED_BY_HINT:
    from pel.testing import wait_until

    wait_until(lambda: os.path.exists(_GATE), timeout=60)


class Blob:
    """Carries a buffer that pickles out of band; its pickle names this module."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (Blob, (pickle.PickleBuffer(self.data),))
