"""The ledger: the only place money is added up.

Before a request is sent the ledger *reserves* its worst-case cost (an upper bound on the
prompt tokens plus `n * max_tokens` at the output price) against the budget; when the answer
arrives it *settles* to the reported usage and releases the rest. Reserving is synchronous, so
under any concurrency and any order of completions, spent + reserved never passes a limit.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from ._budget import Budget
from ._exceptions import BudgetExceededError, UnknownPriceError
from ._models import Request, Response, Usage
from ._prices import Price, pico_to_usd, usd_to_pico

__all__ = ["Charge", "Ledger", "Reservation", "prompt_token_bound"]

_PER_MESSAGE_OVERHEAD = 8  # chat templates add role markers and separators per message
_PER_REQUEST_OVERHEAD = 16


def prompt_token_bound(request: Request) -> int:
    """An upper bound on the prompt tokens of `request` without a tokenizer.

    Every BPE token of text covers at least one UTF-8 byte, so the byte count bounds the text;
    chat templates add a few special tokens per message on top.
    """
    if request.prompt is not None:
        return len(request.prompt.encode()) + _PER_REQUEST_OVERHEAD
    assert request.messages is not None
    size = sum(len(m.content.encode()) + _PER_MESSAGE_OVERHEAD for m in request.messages)
    if request.prefill:
        size += len(request.prefill.encode()) + _PER_MESSAGE_OVERHEAD
    return size + _PER_REQUEST_OVERHEAD


@dataclasses.dataclass(slots=True)
class Reservation:
    """Worst-case cost held against the budget while a request is in flight.

    Attributes:
        prompt_tokens: Prompt tokens of every billed copy of the prompt (exact when an
            earlier response reported them, else the byte bound).
        tokens: Worst-case prompt plus completion tokens.
        pico: Worst-case cost in picodollars.
        samples: Completions asked for.
    """

    request: Request
    price: Price | None
    endpoint: str
    prompt_tokens: int
    tokens: int
    pico: int
    samples: int
    open: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Charge:
    """What one request cost, as recorded on the receipt.

    Attributes:
        status: "ok", "cancelled" (stopped by us; charged what it used, or the reserved
            worst case when unknown) or "failed" (an error answer; charged what it reported).
        estimated: True when the usage was not reported by the server.
        overrun: True when the reported usage exceeded the reserved bound (a server that
            ignored max_tokens); the true cost is still recorded.
    """

    endpoint: str
    usage: Usage
    pico: int
    samples: int
    status: Literal["ok", "cancelled", "failed"]
    estimated: bool = False
    overrun: bool = False

    @property
    def usd(self) -> float:
        """The cost in dollars."""
        return pico_to_usd(self.pico)


class Ledger:
    """Reserves and settles the cost of every request of one call against its `Budget`.

    Args:
        budget: The limits; None means unlimited (costs are still recorded).
    """

    def __init__(self, budget: Budget | None = None) -> None:
        self.budget = budget or Budget()
        self._limit_pico = usd_to_pico(self.budget.usd) if self.budget.usd is not None else None
        self.spent_pico = 0
        self.reserved_pico = 0
        self.spent_tokens = 0
        self.reserved_tokens = 0
        self.spent_samples = 0
        self.reserved_samples = 0
        self.charges: list[Charge] = []
        self._known_prompt_tokens: dict[str, int] = {}

    # -- reading -----------------------------------------------------------------------
    @property
    def spent_usd(self) -> float:
        """Dollars recorded so far."""
        return pico_to_usd(self.spent_pico)

    @property
    def usage(self) -> Usage:
        """Total usage recorded so far."""
        total = Usage()
        for c in self.charges:
            total = total + c.usage
        return total

    def remaining_usd(self) -> float | None:
        """Dollars neither spent nor reserved, or None without a dollar limit."""
        if self._limit_pico is None:
            return None
        return pico_to_usd(self._limit_pico - self.spent_pico - self.reserved_pico)

    def remaining_tokens(self) -> int | None:
        """Tokens neither spent nor reserved, or None without a token limit."""
        if self.budget.tokens is None:
            return None
        return self.budget.tokens - self.spent_tokens - self.reserved_tokens

    def remaining_samples(self) -> int | None:
        """Samples neither generated nor reserved, or None without a sample limit."""
        if self.budget.samples is None:
            return None
        return self.budget.samples - self.spent_samples - self.reserved_samples

    # -- reserving ---------------------------------------------------------------------
    def prompt_tokens(self, request: Request) -> int:
        """Exact prompt tokens when a response already reported them, else an upper bound."""
        known = self._known_prompt_tokens.get(request.prompt_key())
        return known if known is not None else prompt_token_bound(request)

    def worst_case(self, request: Request, price: Price | None, *, prompt_copies: int = 1) -> tuple[int, int]:
        """(picodollars, tokens) that `request` can cost at most."""
        prompt = self.prompt_tokens(request) * prompt_copies
        completion = request.n * request.max_tokens
        pico = price.worst_case_pico(prompt, completion) if price is not None else 0
        return pico, prompt + completion

    def fits(self, request: Request, price: Price | None, *, prompt_copies: int = 1) -> bool:
        """Whether `request` could be reserved now (nothing is reserved)."""
        if price is None and self._limit_pico is not None:
            return False
        pico, tokens = self.worst_case(request, price, prompt_copies=prompt_copies)
        return self._over(pico, tokens, request.n) is None

    def check_price(self, price: Price | None, endpoint: str) -> None:
        """Refuse a dollar budget on a model whose price is unknown."""
        if price is None and self._limit_pico is not None:
            raise UnknownPriceError(
                f"a dollar budget was set but the price of {endpoint!r} is unknown: pass "
                "price=Price(input=..., output=...) ($ per million tokens) to the endpoint "
                "or the call, or drop Budget(usd=...)"
            )

    def reserve(
        self,
        request: Request,
        price: Price | None,
        *,
        endpoint: str = "",
        prompt_copies: int = 1,
        shrink: bool = False,
        min_max_tokens: int = 1,
    ) -> Reservation:
        """Hold the worst-case cost of `request`, or refuse it.

        Args:
            request: The request about to be sent.
            price: The endpoint's price (None: free or unknown).
            endpoint: Display name for errors and the receipt.
            prompt_copies: How many times the prompt is billed (n parallel requests: n).
            shrink: Lower `max_tokens` to fit instead of refusing; the reservation's
                `request` is then the lowered one.
            min_max_tokens: With `shrink`, the smallest `max_tokens` worth sending.

        Raises:
            UnknownPriceError: A dollar budget with an unknown price.
            BudgetExceededError: The request cannot fit (even shrunk).
        """
        self.check_price(price, endpoint)
        if shrink:
            request = self._shrunk(request, price, prompt_copies, min_max_tokens, endpoint)
        pico, tokens = self.worst_case(request, price, prompt_copies=prompt_copies)
        self._check(pico, tokens, request.n, endpoint)
        self.reserved_pico += pico
        self.reserved_tokens += tokens
        self.reserved_samples += request.n
        prompt = self.prompt_tokens(request) * prompt_copies
        return Reservation(request, price, endpoint, prompt, tokens, pico, request.n)

    def _over(self, pico: int, tokens: int, samples: int) -> str | None:
        """The first limit that this much more would pass ("usd", "tokens", "samples"), or None."""
        if self._limit_pico is not None and self.spent_pico + self.reserved_pico + pico > self._limit_pico:
            return "usd"
        limit = self.budget.tokens
        if limit is not None and self.spent_tokens + self.reserved_tokens + tokens > limit:
            return "tokens"
        limit = self.budget.samples
        if limit is not None and self.spent_samples + self.reserved_samples + samples > limit:
            return "samples"
        return None

    def _check(self, pico: int, tokens: int, samples: int, endpoint: str) -> None:
        dimension = self._over(pico, tokens, samples)
        if dimension == "usd":
            assert self._limit_pico is not None
            left = pico_to_usd(self._limit_pico - self.spent_pico - self.reserved_pico)
            message = (
                f"request to {endpoint!r} may cost up to ${pico_to_usd(pico):.6f} but only "
                f"${left:.6f} of the dollar budget is left: raise Budget(usd=...) or lower max_tokens"
            )
        elif dimension == "tokens":
            message = (
                f"request to {endpoint!r} may use up to {tokens} tokens but only "
                f"{self.remaining_tokens()} are left: raise Budget(tokens=...) or lower max_tokens"
            )
        elif dimension == "samples":
            message = (
                f"request to {endpoint!r} asks for {samples} samples but only "
                f"{self.remaining_samples()} are left: raise Budget(samples=...) or lower n"
            )
        else:
            return
        raise BudgetExceededError(message, dimension=dimension)

    def _shrunk(
        self, request: Request, price: Price | None, copies: int, floor: int, endpoint: str
    ) -> Request:
        prompt = self.prompt_tokens(request) * copies
        best = request.max_tokens
        if self.budget.tokens is not None:
            left = self.budget.tokens - self.spent_tokens - self.reserved_tokens - prompt
            best = min(best, left // request.n)
        if self._limit_pico is not None and price is not None:
            left_pico = self._limit_pico - self.spent_pico - self.reserved_pico
            # Largest max_tokens whose worst case fits; worst_case_pico is monotone in it.
            lo, hi = 0, best
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if price.worst_case_pico(prompt, mid * request.n) <= left_pico:
                    lo = mid
                else:
                    hi = mid - 1
            best = lo
        if best < floor:
            # Let _check raise the precise message for the limit that binds.
            self._check(*self.worst_case(request, price, prompt_copies=copies), request.n, endpoint)
            raise BudgetExceededError(
                f"request to {endpoint!r} fits only with max_tokens={best}, below the minimum {floor}",
                dimension="usd" if self._limit_pico is not None else "tokens",
            )
        if best == request.max_tokens:
            return request
        return request.model_copy(update={"max_tokens": best})

    # -- settling ----------------------------------------------------------------------
    def _release(self, r: Reservation) -> None:
        if not r.open:
            raise RuntimeError("reservation already settled")
        r.open = False
        self.reserved_pico -= r.pico
        self.reserved_tokens -= r.tokens
        self.reserved_samples -= r.samples

    def _record(self, r: Reservation, usage: Usage, samples: int, status: str, estimated: bool) -> Charge:
        pico = r.price.cost_pico(usage) if r.price is not None else 0
        overrun = pico > r.pico or usage.total_tokens > r.tokens
        charge = Charge(r.endpoint, usage, pico, samples, status, estimated, overrun)  # type: ignore[arg-type]
        self.spent_pico += pico
        self.spent_tokens += usage.total_tokens
        self.spent_samples += samples
        self.charges.append(charge)
        return charge

    def release(self, r: Reservation) -> None:
        """Drop a reservation whose request was never sent (it costs nothing)."""
        self._release(r)

    def settle(self, r: Reservation, response: Response, *, prompt_copies: int = 1) -> Charge:
        """Replace the reservation with the cost of the reported usage."""
        self._release(r)
        usage = response.usage
        if response.usage_reported and usage.prompt_tokens > 0:
            self._known_prompt_tokens[r.request.prompt_key()] = -(-usage.prompt_tokens // prompt_copies)
        return self._record(r, usage, len(response.completions), "ok", not response.usage_reported)

    def cancel(self, r: Reservation, partial: Usage | None = None, *, samples: int = 0) -> Charge:
        """Charge a request we stopped: its counted usage when known, else the worst case."""
        self._release(r)
        if partial is None:
            worst = Usage(prompt_tokens=r.prompt_tokens, completion_tokens=r.tokens - r.prompt_tokens)
            charge = Charge(r.endpoint, worst, r.pico, r.samples, "cancelled", True, False)
            self.spent_pico += r.pico
            self.spent_tokens += r.tokens
            self.spent_samples += r.samples
            self.charges.append(charge)
            return charge
        if partial.prompt_tokens > r.prompt_tokens:
            # A stream cut before the server reported usage counts the prompt by its byte bound;
            # the reservation holds the exact count when an earlier response reported it.
            partial = partial.model_copy(update={"prompt_tokens": r.prompt_tokens})
        return self._record(r, partial, samples, "cancelled", True)

    def fail(self, r: Reservation, usage: Usage | None = None) -> Charge:
        """Record a request that failed with an error answer (providers bill none unless reported)."""
        self._release(r)
        return self._record(r, usage or Usage(), 0, "failed", False)
