"""Worst-case costs of work not yet sent, for planning within a budget.

The ledger bounds each request as it is reserved; strategies that must hold budget back for
follow-up work (scoring every candidate they generate) need the same bound beforehand, for
work that may never be sent. These functions give it, by the ledger's own rule (the byte
bound on prompts, `n * max_tokens` completions), so a plan and the ledger never disagree on
what a request may cost; the ledger still enforces every limit exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ._ledger import Ledger
from ._prices import Price
from ._state import State
from ._strategy import Call
from ._tokens import BYTES_PER_TOKEN
from .endpoints._base import Endpoint, prompt_copies

__all__ = ["affordable", "call_worst_case", "calls_worst_case", "candidate_bytes", "work_worst_case"]


def candidate_bytes(max_tokens: int, prefix: str = "") -> int:
    """The size, in UTF-8 bytes, assumed for a candidate of `prefix` plus up to `max_tokens` tokens.

    What a placeholder for a candidate not yet generated is given, to bound its scoring.
    """
    return len(prefix.encode()) + BYTES_PER_TOKEN * max_tokens


def call_worst_case(
    call: Call, default_endpoint: Endpoint, *, default_price: Price | None = None
) -> tuple[int, int]:
    """(picodollars, tokens) a call may cost at most, by the ledger's own bound.

    Args:
        call: The call to bound.
        default_endpoint: Where a call without an endpoint goes (the task's endpoint).
        default_price: The price that endpoint is charged at in this call (`Task.price`,
            which carries a per-call override); None: the endpoint's own price.
    """
    endpoint = call.endpoint if call.endpoint is not None else default_endpoint
    price = endpoint.price
    if endpoint is default_endpoint and default_price is not None:
        price = default_price
    request = call.request
    # A fresh ledger: the bound of a prompt never seen (no reported prompt tokens to go by).
    return Ledger().worst_case(request, price, prompt_copies=prompt_copies(endpoint, request))


# A call and the follow-up calls that each of its completions will need (e.g. the verifier
# calls that score one candidate).
_Work = tuple[Call, Sequence[Call]]


def work_worst_case(
    work: Iterable[_Work], default_endpoint: Endpoint, *, default_price: Price | None = None
) -> tuple[int, int, int]:
    """(picodollars, tokens, samples) that calls and their follow-up work may cost at most.

    Each call counts once and its follow-up calls once per completion it asks for (`n`).

    Args:
        work: Pairs of a call and the calls each of its completions will need afterwards.
        default_endpoint: Where a call without an endpoint goes (the task's endpoint).
        default_price: The price that endpoint is charged at in this call (`Task.price`).
    """
    pico = tokens = samples = 0
    for call, follow_up in work:
        n = call.request.n
        p, t = call_worst_case(call, default_endpoint, default_price=default_price)
        f_pico, f_tokens, f_samples = calls_worst_case(
            follow_up, default_endpoint, default_price=default_price
        )
        pico, tokens, samples = pico + p + n * f_pico, tokens + t + n * f_tokens, samples + n + n * f_samples
    return pico, tokens, samples


def calls_worst_case(
    calls: Iterable[Call], default_endpoint: Endpoint, *, default_price: Price | None = None
) -> tuple[int, int, int]:
    """(picodollars, tokens, samples) that `calls` may cost at most (no follow-up work)."""
    return work_worst_case(((call, ()) for call in calls), default_endpoint, default_price=default_price)


def affordable(state: State, pico: int, tokens: int, samples: int) -> int | None:
    """Count the units of work that fit in what is left of the budget in `state`.

    Each unit costs at most `pico` picodollars, `tokens` tokens and `samples` samples. Returns
    None when no limit binds.
    """
    usd, left_tokens, left_samples = state.remaining_usd, state.remaining_tokens, state.remaining_samples
    fits: list[int] = []
    if usd is not None and pico > 0:
        fits.append(max(0, math.floor(usd * 1e12)) // pico)
    if left_tokens is not None and tokens > 0:
        fits.append(max(0, left_tokens) // tokens)
    if left_samples is not None and samples > 0:
        fits.append(max(0, left_samples) // samples)
    return min(fits) if fits else None
