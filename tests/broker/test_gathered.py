"""``apply_many``'s answer from the outcome of each batch: all, none, or some applied."""

from __future__ import annotations

import pytest

from omflow.broker.base import Applied, PartlyApplied, Unavailable, gathered


def test_every_batch_applied_is_every_result_in_order() -> None:
    results = [Applied(seq=1), Applied(seq=7)]
    assert gathered(results) == results


def test_none_applied_is_unavailable_not_partly() -> None:
    with pytest.raises(Unavailable) as raised:
        gathered([Unavailable("Redis is unreachable"), Unavailable("Redis is unreachable")])
    assert not isinstance(raised.value, PartlyApplied)
    assert str(raised.value) == "Redis is unreachable"


def test_some_applied_names_which() -> None:
    first, third = Applied(seq=1), Applied(seq=3)
    with pytest.raises(PartlyApplied) as raised:
        gathered([first, Unavailable("connection lost"), third])
    assert raised.value.applied == [first, None, third]
    assert raised.value.count == 2
    assert "connection lost" in str(raised.value)


def test_any_other_error_is_raised_as_it_is() -> None:
    bug = ValueError("not a Redis problem")
    with pytest.raises(ValueError, match="not a Redis problem") as raised:
        gathered([Applied(seq=1), Unavailable("gone"), bug])
    assert raised.value is bug
