"""Checks every answer passes before its usage and completions count, for every provider.

A server (or a gateway in front of it) can misreport: negative or boolean counts, counts
no request could produce, fewer or more choices than asked for, or one choice index for
every choice of a stream. Any of these would book a wrong charge or merge answers into
one, silently; here each becomes a `WireError` that names the field and its value, which
the endpoint raises as a `ResponseError`.

The rule for a count that is not credible: with `bound` the request's prompt-token bound
(the prompt's UTF-8 bytes plus template overhead, see `prompt_token_bound`, plus the bytes
of `extra` fields such as tool definitions) and `n * max_tokens` the most output it allows,
a count above ``PLAUSIBLE_FACTOR * (bound + n * max_tokens) + PLAUSIBLE_SLACK`` tokens is
refused. Usage above the reserved bound but below this is kept (the ledger marks the charge
as an overrun); the slack leaves room for what a gateway adds to a short prompt.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .._ledger import prompt_token_bound
from .._models import Request, Usage

__all__ = ["PLAUSIBLE_FACTOR", "PLAUSIBLE_SLACK", "WireError", "check_indices", "check_usage", "count"]

PLAUSIBLE_FACTOR = 10
"""How many times the request's own bound a reported count may reach before it is refused."""

PLAUSIBLE_SLACK = 100_000
"""Tokens allowed on top of `PLAUSIBLE_FACTOR` times the bound (server-side system prompts)."""


class WireError(ValueError):
    """An answer the wire format cannot use; the endpoint reports it as a `ResponseError`.

    Attributes:
        usage: The usage the server reported for the answer, when it passed the checks (the
            answer was billed); None when it is missing or failed them.
        choices: For an answer refused for its choices, how many the server returned (see
            `ResponseError.choices`); None otherwise.
    """

    def __init__(self, message: str, *, usage: Usage | None = None, choices: int | None = None) -> None:
        super().__init__(message)
        self.usage = usage
        self.choices = choices


def count(raw: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> int:
    """`raw[key]` as a token count: a non-negative integer (not a boolean).

    Args:
        raw: The usage object (or a sub-object of it).
        key: The field.
        where: Its path in the answer, for the message ("usage", "usage.cache_creation").
        required: Whether an absent or null field is an error (else it counts 0).

    Raises:
        WireError: The value is not a count (or is absent when required).
    """
    value = raw.get(key)
    if value is None:
        if required:
            raise WireError(f"{where}.{key} is missing from the reported usage")
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WireError(f"{where}.{key} is {value!r}, expected a non-negative integer")
    return value


def plausible_limit(request: Request) -> int:
    """The largest token count credible for `request` (see the module docstring)."""
    bound = prompt_token_bound(request)
    if request.extra:
        bound += len(json.dumps(request.extra, default=str).encode())
    return PLAUSIBLE_FACTOR * (bound + request.n * request.max_tokens) + PLAUSIBLE_SLACK


def check_usage(usage: Usage, request: Request, names: Mapping[str, str] | None = None) -> Usage:
    """Return `usage` if it is credible for `request` and consistent, else raise `WireError`.

    Args:
        usage: The usage as read from the answer.
        request: The request it answers.
        names: The provider's names of `prompt_tokens` / `completion_tokens`, for messages.

    Raises:
        WireError: A count above `plausible_limit`, or parts larger than their whole
            (reasoning above completion, cache reads plus writes above the prompt, 1-hour
            writes above all writes).
    """
    limit = plausible_limit(request)
    for name in ("prompt_tokens", "completion_tokens"):
        value = getattr(usage, name)
        if value > limit:
            shown = (names or {}).get(name, name)
            raise WireError(
                f"the reported usage has {shown}={value}, not credible for a request with "
                f"max_tokens={request.max_tokens}, n={request.n} and a prompt of at most "
                f"{prompt_token_bound(request)} tokens (the limit is {limit})"
            )
    if usage.reasoning_tokens > usage.completion_tokens:
        raise WireError(
            f"the reported usage has reasoning_tokens={usage.reasoning_tokens} above "
            f"completion_tokens={usage.completion_tokens} (reasoning is part of the completion)"
        )
    if usage.cached_prompt_tokens + usage.cache_write_tokens > usage.prompt_tokens:
        raise WireError(
            f"the reported usage has {usage.cached_prompt_tokens} cache-read and "
            f"{usage.cache_write_tokens} cache-write tokens in a prompt of {usage.prompt_tokens}"
        )
    if usage.cache_write_1h_tokens > usage.cache_write_tokens:
        raise WireError(
            f"the reported usage has {usage.cache_write_1h_tokens} 1-hour cache-write tokens "
            f"but {usage.cache_write_tokens} cache-write tokens in all"
        )
    return usage


def check_indices(indices: Iterable[int], n: int, usage: Usage | None) -> None:
    """Refuse a set of choice indices other than exactly 0 .. n-1, each once.

    Args:
        indices: The index of every choice the server returned (a repeated one repeated).
        n: The choices asked for.
        usage: The reported usage, carried by the error.

    Raises:
        WireError: A choice missing, repeated or out of range (carries `usage`, and
            `choices`: how many indices were given).
    """
    seen = sorted(indices)
    if seen == list(range(n)):
        return
    if len(seen) != n:
        what = f"{len(seen)} choices for n={n}"
    elif len(set(seen)) != len(seen):
        what = f"choice indices {seen} for n={n} (a repeated index)"
    else:
        what = f"choice indices {seen} for n={n} (expected 0 to {n - 1})"
    raise WireError(f"the answer has {what}; its completions are not used", usage=usage, choices=len(seen))
