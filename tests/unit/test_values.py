"""pel's record classes (``_value.Value``): what they promise in place of dataclasses."""

from __future__ import annotations

import pickle

import pytest

import pel
from pel.scheduler import Dispatch, Kill, Split


def test_values_compare_by_type_and_fields() -> None:
    assert Dispatch(1, (2, 3)) == Dispatch(1, (2, 3))
    assert Dispatch(1, (2, 3)) != Dispatch(1, (3, 2))
    assert Split(3) != Kill(3), "same fields, other type"
    assert len({Split(3), Split(3), Kill(3)}) == 2
    assert repr(Dispatch(1, (2,))) == "Dispatch(keys=(2,), worker=1)"


def test_task_options_are_immutable_and_replace_validates() -> None:
    options = pel.TaskOptions(name="fit", retries=2, retry_on=ValueError)
    assert options.retry_on == (ValueError,), "normalised to a tuple"
    with pytest.raises(AttributeError, match="immutable"):
        options.retries = 5
    changed = options.replace(priority=3)
    assert (changed.priority, changed.retries, options.priority) == (3, 2, 0)
    with pytest.raises(pel.OptionError, match="priority"):
        options.replace(priority="high")
    with pytest.raises(pel.OptionError, match="unknown task option"):
        options.replace(retry=1)


def test_task_options_survive_pickling() -> None:
    options = pel.TaskOptions(name="fit", timeout=2.5, retry_on=(KeyError, OSError))
    assert pickle.loads(pickle.dumps(options)) == options
