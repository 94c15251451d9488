"""Per-call budgets: dollars, tokens, samples and seconds, any subset."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import Field

from ._exceptions import ConfigError
from ._models import ValidatedModel

__all__ = ["Budget", "as_budget"]

_N = TypeVar("_N", int, float)


class Budget(ValidatedModel):
    """Hard limits for one call. Every limit is optional; each one that is set is never exceeded.

    Args:
        usd: Dollars that may be spent, verifier calls included.
        tokens: Prompt plus completion tokens that may be used.
        samples: Completions that may be requested from any endpoint, verifier calls included.
        seconds: Wall-clock deadline for the whole call; work still running then is cancelled
            (and what it cost is still charged).

    Raises:
        ConfigError: A limit is zero, negative, NaN or infinite.

    Example:
        >>> Budget(usd=0.01, seconds=30)
        Budget(usd=0.01, tokens=None, samples=None, seconds=30.0)
    """

    # Strict: a bool is not a count (`tokens=True` would be 1), nor "5" a number.
    usd: float | None = Field(default=None, gt=0, allow_inf_nan=False, strict=True)
    tokens: int | None = Field(default=None, gt=0, strict=True)
    samples: int | None = Field(default=None, gt=0, strict=True)
    seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False, strict=True)

    def __and__(self, other: Budget) -> Budget:
        """The tighter of two budgets, limit by limit."""

        def tight(a: _N | None, b: _N | None) -> _N | None:
            return b if a is None else a if b is None else min(a, b)

        return Budget(
            usd=tight(self.usd, other.usd),
            tokens=tight(self.tokens, other.tokens),
            samples=tight(self.samples, other.samples),
            seconds=tight(self.seconds, other.seconds),
        )


def as_budget(value: Budget | Mapping[str, Any] | None) -> Budget | None:
    """A `Budget` from a `Budget`, a dict of its limits (`{"usd": 0.01}`) or None.

    Raises:
        ConfigError: Anything else (a bare number says nothing of its unit), or a dict with
            an unknown key or a bad limit.
    """
    if value is None or isinstance(value, Budget):
        return value
    if isinstance(value, Mapping):
        return Budget(**value)
    hint = f" (write Budget(usd={value!r}) for dollars)" if isinstance(value, int | float) else ""
    raise ConfigError(
        f"budget must be a Budget, a dict of its limits such as {{'usd': 0.01}}, or None; "
        f"got {type(value).__name__} {value!r}{hint}"
    )
