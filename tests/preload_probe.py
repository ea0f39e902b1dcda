"""A module that records whether pel's preload hint is what imported it
(a worker imports it by name before it unpickles the call that needs it)."""

from __future__ import annotations

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


class Blob:
    """Carries a buffer that pickles out of band; its pickle names this module."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (Blob, (pickle.PickleBuffer(self.data),))
