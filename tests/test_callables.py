"""is_async_callable: the one rule for telling async callables from sync ones."""

from __future__ import annotations

import functools

from adaptive._callables import is_async_callable


async def _async_fn(x: int) -> int:
    return x


def _sync_fn(x: int) -> int:
    return x


class _AsyncCall:
    async def __call__(self, x: int) -> int:
        return x


class _SyncCall:
    def __call__(self, x: int) -> int:
        return x


def test_async_functions_and_objects_are_async() -> None:
    assert is_async_callable(_async_fn)
    assert is_async_callable(_AsyncCall())
    assert is_async_callable(functools.partial(_async_fn, 1))


def test_sync_functions_and_objects_are_not() -> None:
    assert not is_async_callable(_sync_fn)
    assert not is_async_callable(_SyncCall())
    assert not is_async_callable(len)
    assert not is_async_callable(lambda: _async_fn(1))  # returns a coroutine, but is not async
