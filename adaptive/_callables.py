"""Callables that users hand in: tell async ones from sync ones, one rule for the whole SDK."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["is_async_callable"]


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Tell whether calling `fn` gives a coroutine: an `async def`, or an object whose `__call__` is one.

    `functools.partial` of an async function counts too (`inspect` sees through it). A sync
    function that returns an awaitable is not detected; callers that accept one await the
    result when `inspect.isawaitable` says so.

    Example:
        >>> async def judge(question: str, solution: str) -> float:
        ...     return 1.0
        >>> is_async_callable(judge), is_async_callable(len)
        (True, False)
    """
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)
