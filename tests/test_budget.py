"""Budgets: limits that are counts take whole numbers, never booleans or strings."""

from __future__ import annotations

from typing import Any

import pytest

from adaptive import Budget, ConfigError
from adaptive._budget import as_budget


@pytest.mark.parametrize(
    "limits",
    [
        {"tokens": True},
        {"samples": False},
        {"usd": True},
        {"seconds": True},
        {"samples": "3"},
        {"tokens": 5.5},
    ],
)
def test_a_limit_of_the_wrong_type_is_refused_not_coerced(limits: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(limits))):
        Budget(**limits)
    with pytest.raises(ConfigError):
        as_budget(limits)


def test_whole_dollars_and_seconds_are_fine() -> None:
    assert Budget(usd=1, seconds=30, tokens=500, samples=4) == Budget(
        usd=1.0, seconds=30.0, tokens=500, samples=4
    )
