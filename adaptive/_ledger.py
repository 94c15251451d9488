"""The ledger: the only place money is added up.

Before a request is sent the ledger *reserves* its worst-case cost (an upper bound on the
prompt tokens plus `n * max_tokens` at the output price) against the budget; when the answer
arrives it *settles* to the reported usage and releases the rest. Reserving is synchronous, so
under any concurrency and any order of completions, spent + reserved never passes a limit.

The booking rule that keeps recorded spend within the budget whatever a server reports: a
charge is *booked* (added to the spend) at most at its reservation, component by component
(prompt tokens, completion tokens, samples, dollars). When the server reported more than that
(it ignored `max_tokens`, returned more choices than `n`, or a gateway added prompt tokens)
the charge is an *overrun*: it keeps the reported usage next to the booked one, the controller
stops the call, and the endpoint's `ReservationBounds` are raised so later calls reserve
enough. When usage is unknown (not reported, or the request failed after the server may have
generated) the booked usage is an upper bound, never an estimate that can be low, and the
charge is marked `estimated`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from ._budget import Budget
from ._exceptions import BudgetExceededError, UnknownPriceError
from ._models import Request, Response, Usage
from ._prices import Price, pico_to_usd, usd_to_pico

__all__ = ["Charge", "EndpointBound", "Ledger", "Reservation", "ReservationBounds", "prompt_token_bound"]

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


def _prompt_bytes(request: Request) -> int:
    if request.prompt is not None:
        return len(request.prompt.encode())
    assert request.messages is not None
    size = sum(len(m.content.encode()) for m in request.messages)
    return size + (len(request.prefill.encode()) if request.prefill else 0)


#: The floor of a learned tokens-per-byte ratio: a BPE token covers at least one byte.
MIN_TOKENS_PER_BYTE = 1.0


@dataclasses.dataclass(slots=True)
class EndpointBound:
    """What one endpoint was seen to bill beyond the byte bound of its prompts.

    Attributes:
        prompt_overhead: Extra prompt tokens per billed prompt copy (a gateway's system
            prompt, a template larger than the allowance); floor 0.
        tokens_per_byte: Prompt tokens per UTF-8 byte of prompt text; floor
            `MIN_TOKENS_PER_BYTE` (1.0), which is the byte bound itself.
    """

    prompt_overhead: int = 0
    tokens_per_byte: float = MIN_TOKENS_PER_BYTE


class ReservationBounds:
    """Per-endpoint corrections to the prompt bound, learned from overruns.

    Lives on the `Controller` (one per `Client`), so a call after an overrun reserves enough
    for what that endpoint was seen to bill. Both corrections only ever rise. When a prompt
    overran, both are raised so that each alone covers what was billed: a constant addition
    (a gateway's prompt) is then covered on shorter prompts, a proportional one (another
    tokenizer accounting) on longer ones; this over-reserves rather than risk a second overrun.
    """

    def __init__(self) -> None:
        self._bounds: dict[str, EndpointBound] = {}

    def of(self, endpoint: str) -> EndpointBound:
        """The learned bound of `endpoint` (the floors when nothing was learned)."""
        return self._bounds.get(endpoint) or EndpointBound()

    def prompt_bound(self, endpoint: str, request: Request) -> int:
        """The byte bound of `request`'s prompt with what `endpoint` was seen to add."""
        b = self._bounds.get(endpoint)
        base = prompt_token_bound(request)
        if b is None:
            return base
        nbytes = _prompt_bytes(request)
        return base - nbytes + math.ceil(nbytes * b.tokens_per_byte) + b.prompt_overhead

    def observe_prompt(self, endpoint: str, request: Request, billed_per_copy: int) -> EndpointBound:
        """Raise `endpoint`'s bound so that a prompt billed at `billed_per_copy` tokens fits."""
        bound = self.prompt_bound(endpoint, request)
        b = self._bounds.setdefault(endpoint, EndpointBound())
        if billed_per_copy > bound:
            b.prompt_overhead += billed_per_copy - bound
            nbytes = _prompt_bytes(request)
            fixed = prompt_token_bound(request) - nbytes
            if nbytes > 0:
                b.tokens_per_byte = max(b.tokens_per_byte, (billed_per_copy - fixed) / nbytes)
        return b


@dataclasses.dataclass(frozen=True, slots=True)
class Overrun:
    """A server that reported more than was reserved for one request.

    Attributes:
        endpoint: The endpoint's display name.
        reserved: The reserved worst case (prompt and completion tokens).
        reported: What the server reported.
        reserved_pico / reported_pico: The same in picodollars.
        reserved_samples / reported_samples: Completions asked for and returned.
    """

    endpoint: str
    reserved: Usage
    reported: Usage
    reserved_pico: int
    reported_pico: int
    reserved_samples: int
    reported_samples: int


@dataclasses.dataclass(slots=True)
class Reservation:
    """Worst-case cost held against the budget while a request is in flight.

    Attributes:
        prompt_tokens: Prompt tokens of every billed copy of the prompt (exact when an
            earlier response reported them, else the byte bound).
        tokens: Worst-case prompt plus completion tokens.
        pico: Worst-case cost in picodollars.
        samples: Completions asked for.
        prompt_copies: How many times the prompt is billed (n parallel requests: n).
        booked: The charge it was booked as, once it is (shared accounts book the same).
    """

    request: Request
    price: Price | None
    endpoint: str
    prompt_tokens: int
    tokens: int
    pico: int
    samples: int
    prompt_copies: int = 1
    open: bool = True
    booked: Charge | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Charge:
    """What one request cost, as recorded on the receipt.

    Attributes:
        status: "ok", "cancelled" (stopped by us; charged what it used, or the reserved
            worst case when unknown) or "failed" (an error answer; charged what it reported).
        usage: The booked usage (never more than the reservation, see the module's rule).
        pico: The booked cost.
        estimated: True when the usage was not reported by the server: an upper bound is
            booked instead.
        overrun: What the server reported beyond the reservation, when it did (a server
            that ignored max_tokens or `n`, a gateway that added prompt tokens).
    """

    endpoint: str
    usage: Usage
    pico: int
    samples: int
    status: Literal["ok", "cancelled", "failed"]
    estimated: bool = False
    overrun: Overrun | None = None

    @property
    def usd(self) -> float:
        """The cost in dollars."""
        return pico_to_usd(self.pico)


class Ledger:
    """Reserves and settles the cost of every request of one call against its `Budget`.

    Args:
        budget: The limits; None means unlimited (costs are still recorded).
        bounds: Per-endpoint prompt bounds learned from overruns (shared by the calls of one
            controller); a fresh one when None.
    """

    def __init__(self, budget: Budget | None = None, bounds: ReservationBounds | None = None) -> None:
        self.budget = budget or Budget()
        self.bounds = bounds if bounds is not None else ReservationBounds()
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
    def prompt_tokens(self, request: Request, endpoint: str = "") -> int:
        """Exact prompt tokens when a response already reported them, else an upper bound."""
        known = self._known_prompt_tokens.get(endpoint + "\0" + request.prompt_key())
        return known if known is not None else self.bounds.prompt_bound(endpoint, request)

    def worst_case(
        self, request: Request, price: Price | None, *, prompt_copies: int = 1, endpoint: str = ""
    ) -> tuple[int, int]:
        """(picodollars, tokens) that `request` can cost at most."""
        prompt = self.prompt_tokens(request, endpoint) * prompt_copies
        completion = request.n * request.max_tokens
        pico = price.worst_case_pico(prompt, completion) if price is not None else 0
        return pico, prompt + completion

    def fits(
        self, request: Request, price: Price | None, *, prompt_copies: int = 1, endpoint: str = ""
    ) -> bool:
        """Whether `request` could be reserved now (nothing is reserved)."""
        if price is None and self._limit_pico is not None:
            return False
        pico, tokens = self.worst_case(request, price, prompt_copies=prompt_copies, endpoint=endpoint)
        return self.over(pico, tokens, request.n) is None

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
        pico, tokens = self.worst_case(request, price, prompt_copies=prompt_copies, endpoint=endpoint)
        self._check(pico, tokens, request.n, endpoint)
        self.reserved_pico += pico
        self.reserved_tokens += tokens
        self.reserved_samples += request.n
        prompt = self.prompt_tokens(request, endpoint) * prompt_copies
        return Reservation(request, price, endpoint, prompt, tokens, pico, request.n, prompt_copies)

    def over(self, pico: int, tokens: int, samples: int) -> str | None:
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
        dimension = self.over(pico, tokens, samples)
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
        best = self.max_tokens_that_fit(request, price, copies, endpoint)
        if best >= request.max_tokens:
            return request  # fits as asked, even below the floor (the floor is for lowering)
        if best < floor:
            # Let _check raise the precise message for the limit that binds.
            self._check(
                *self.worst_case(request, price, prompt_copies=copies, endpoint=endpoint), request.n, endpoint
            )
            raise BudgetExceededError(
                f"request to {endpoint!r} fits only with max_tokens={best}, below the minimum {floor}",
                dimension="usd" if self._limit_pico is not None else "tokens",
            )
        if best == request.max_tokens:
            return request
        return request.model_copy(update={"max_tokens": best})

    def max_tokens_that_fit(
        self, request: Request, price: Price | None, copies: int = 1, endpoint: str = ""
    ) -> int:
        """The largest `max_tokens` (at most the request's) whose worst case fits what is left."""
        prompt = self.prompt_tokens(request, endpoint) * copies
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
        return max(0, best)

    # -- settling ----------------------------------------------------------------------
    def _release(self, r: Reservation) -> None:
        if not r.open:
            raise RuntimeError("reservation already settled")
        r.open = False
        self.reserved_pico -= r.pico
        self.reserved_tokens -= r.tokens
        self.reserved_samples -= r.samples

    def _book(
        self,
        r: Reservation,
        reported: Usage,
        samples: int,
        status: Literal["ok", "cancelled", "failed"],
        *,
        estimated: bool,
    ) -> Charge:
        """Book `reported` against the budget at most at the reservation; an overrun says so."""
        completion_bound = r.tokens - r.prompt_tokens
        booked = reported
        if reported.prompt_tokens > r.prompt_tokens or reported.completion_tokens > completion_bound:
            booked = _clamped(reported, r.prompt_tokens, completion_bound)
        pico_reported = r.price.cost_pico(reported) if r.price is not None else 0
        pico = min(r.price.cost_pico(booked), r.pico) if r.price is not None else 0
        overrun = None
        if booked is not reported or samples > r.samples or pico_reported > r.pico:
            worst = Usage(prompt_tokens=r.prompt_tokens, completion_tokens=completion_bound)
            overrun = Overrun(r.endpoint, worst, reported, r.pico, pico_reported, r.samples, samples)
        charge = Charge(
            r.endpoint,
            booked,
            pico,
            min(samples, r.samples),
            status,
            estimated,
            overrun,
        )
        self.spent_pico += charge.pico
        self.spent_tokens += booked.total_tokens
        self.spent_samples += charge.samples
        self.charges.append(charge)
        r.booked = charge
        return charge

    def release(self, r: Reservation) -> None:
        """Drop a reservation whose request was never sent (it costs nothing)."""
        self._release(r)

    def worst(self, r: Reservation) -> Usage:
        """The reserved worst case of `r` as a usage."""
        return Usage(prompt_tokens=r.prompt_tokens, completion_tokens=r.tokens - r.prompt_tokens)

    def settle(self, r: Reservation, response: Response, *, prompt_copies: int = 1) -> Charge:
        """Replace the reservation with the cost of the reported usage (booked at most at it).

        Without reported usage the booked usage is an upper bound: the reserved prompt, and
        per completion its UTF-8 bytes plus one (a token covers at least a byte; the stop
        token may cover none), at most `max_tokens`.
        """
        self._release(r)
        usage = response.usage
        samples = len(response.completions)
        if not _credible(usage):
            # A negative count is no bound on anything: book the worst case, marked estimated.
            return self._book(r, self.worst(r), max(samples, r.samples), "ok", estimated=True)
        if not response.usage_reported:
            per = r.request.max_tokens
            completion = sum(min(per, len(c.text.encode()) + 1) for c in response.completions)
            usage = Usage(prompt_tokens=r.prompt_tokens, completion_tokens=completion)
            return self._book(r, usage, samples, "ok", estimated=True)
        if usage.prompt_tokens > 0:
            per_copy = -(-usage.prompt_tokens // prompt_copies)
            if usage.prompt_tokens > r.prompt_tokens:
                # Learn before booking: later requests to this endpoint must reserve enough.
                self.bounds.observe_prompt(r.endpoint, r.request, per_copy)
            self._known_prompt_tokens[r.endpoint + "\0" + r.request.prompt_key()] = per_copy
        return self._book(r, usage, samples, "ok", estimated=False)

    def cancel(
        self,
        r: Reservation,
        partial: Usage | None = None,
        *,
        samples: int = 0,
        finished: Usage | None = None,
        finished_samples: int = 0,
        prompt_reported: bool = False,
    ) -> Charge:
        """Charge a request we stopped: its counted usage when known, else the worst case.

        Args:
            r: The request's reservation.
            partial: What a stream counted before the cut (its prompt the byte bound unless
                `prompt_reported`).
            samples: Completions the stream had begun.
            finished: The usage the server reported for the parts of a fanned-out request
                that answered before the cut; it is what they billed, so it is booked as
                reported (an overrun among them shows as one).
            finished_samples: Completions those parts returned.
            prompt_reported: The stream's prompt count is the server's report (it arrived
                before the cut): booked as reported, so an overrun of the prompt shows.
        """
        self._release(r)
        counted = partial if partial is not None and _credible(partial) else None
        known = finished if finished is not None and _credible(finished) else None
        if counted is None and known is None:
            return self._book(r, self.worst(r), r.samples, "cancelled", estimated=True)
        if counted is not None and not prompt_reported:
            # A stream cut before the server reported usage counts the prompt by its byte
            # bound; the exact count, where a response reported it (before this request was
            # reserved, or while it was out), is what the server bills.
            exact = min(r.prompt_tokens, self.prompt_tokens(r.request, r.endpoint) * r.prompt_copies)
            if counted.prompt_tokens > exact:
                counted = counted.model_copy(update={"prompt_tokens": exact})
        if counted is None or known is None:
            usage = counted if counted is not None else known
            assert usage is not None
            return self._book(r, usage, max(samples, finished_samples), "cancelled", estimated=True)
        # Both: the larger of each, so neither what the stream counted nor what the parts
        # that answered reported (unclamped: the server billed it) is lost.
        base = known if known.total_tokens >= counted.total_tokens else counted
        usage = base.model_copy(
            update={
                "prompt_tokens": max(counted.prompt_tokens, known.prompt_tokens),
                "completion_tokens": max(counted.completion_tokens, known.completion_tokens),
            }
        )
        return self._book(r, usage, max(samples, finished_samples), "cancelled", estimated=True)

    def fail(
        self, r: Reservation, usage: Usage | None = None, *, samples: int = 0, unknown: int = 0
    ) -> Charge:
        """Record a request that failed.

        Args:
            r: Its reservation.
            usage: What the failed request is known to have been billed (`Usage()`: nothing,
                e.g. an HTTP error status); None when unknown (a malformed 200 body, a
                connection lost mid-answer: the server may have generated all of it), which
                books the reserved worst case, marked estimated.
            samples: Completions known to have been billed with `usage`.
            unknown: Fanned-out single requests (of the `n` the reservation holds) whose
                usage is unknown on top of `usage`: each adds its share of the worst case
                (one prompt copy and `max_tokens`), and the charge is marked estimated.
        """
        self._release(r)
        if usage is None or not _credible(usage):
            return self._book(r, self.worst(r), max(r.samples, samples), "failed", estimated=True)
        if unknown:
            share = Usage(
                prompt_tokens=-(-r.prompt_tokens // max(1, r.samples)),
                completion_tokens=r.request.max_tokens,
            )
            for _ in range(unknown):
                usage = usage + share
            return self._book(r, usage, samples + unknown, "failed", estimated=True)
        return self._book(r, usage, samples, "failed", estimated=False)


def _credible(usage: Usage) -> bool:
    """Whether every count of `usage` is a non-negative integer (not a bool)."""
    counts = (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.reasoning_tokens,
        usage.cached_prompt_tokens,
        usage.cache_write_tokens,
    )
    return all(type(c) is int and c >= 0 for c in counts)


def _clamped(usage: Usage, prompt: int, completion: int) -> Usage:
    """`usage` with its prompt and completion counts cut to the given bounds."""
    p = min(usage.prompt_tokens, prompt)
    cached = min(usage.cached_prompt_tokens, p)
    write = min(usage.cache_write_tokens, p - cached)
    c = min(usage.completion_tokens, completion)
    return usage.model_copy(
        update={
            "prompt_tokens": p,
            "completion_tokens": c,
            "cached_prompt_tokens": cached,
            "cache_write_tokens": write,
            "reasoning_tokens": min(usage.reasoning_tokens, c),
        }
    )
