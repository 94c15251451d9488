"""The ledger reserves worst cases, settles to reported usage, and never lets spend pass a limit."""

from __future__ import annotations

import math
from typing import Any

import pytest

from adaptive import (
    Budget,
    BudgetExceededError,
    Completion,
    ConfigError,
    Message,
    Price,
    Request,
    Response,
    UnknownPriceError,
    Usage,
)
from adaptive._ledger import Ledger, prompt_token_bound
from adaptive._prices import PriceTier

PRICE = Price(input=1.0, output=2.0)  # 1_000_000 and 2_000_000 picodollars per token


def chat(text: str = "hello", **kwargs: Any) -> Request:
    return Request(messages=(Message(role="user", content=text),), **kwargs)


def response(prompt: int, completion: int, n: int = 1, reported: bool = True) -> Response:
    return Response(
        completions=tuple(Completion(text="x", index=i) for i in range(n)),
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
        usage_reported=reported,
    )


# -- the prompt bound --------------------------------------------------------------------


def test_prompt_token_bound_counts_bytes_plus_template_overhead() -> None:
    assert prompt_token_bound(chat("hello")) == 5 + 8 + 16
    assert prompt_token_bound(chat("héllo")) == 6 + 8 + 16  # UTF-8 bytes, not characters
    two = Request(messages=(Message(role="system", content="ab"), Message(role="user", content="cde")))
    assert prompt_token_bound(two) == (2 + 8) + (3 + 8) + 16
    assert prompt_token_bound(chat("hello", prefill="ok")) == 5 + 8 + 2 + 8 + 16
    assert prompt_token_bound(Request(prompt="abc")) == 3 + 16


# -- reserve / settle / cancel / fail / release ------------------------------------------


def test_reserve_holds_the_worst_case_and_settle_replaces_it() -> None:
    ledger = Ledger(Budget(usd=1.0))
    request = chat("hello", max_tokens=100, n=2)
    bound = prompt_token_bound(request)
    r = ledger.reserve(request, PRICE, endpoint="ep")
    assert r.pico == bound * 1_000_000 + 200 * 2_000_000
    assert r.tokens == bound + 200
    assert (ledger.reserved_pico, ledger.reserved_tokens, ledger.reserved_samples) == (r.pico, r.tokens, 2)
    assert ledger.remaining_usd() == pytest.approx(1.0 - r.pico / 1e12)
    charge = ledger.settle(r, response(prompt=7, completion=30, n=2))
    assert (ledger.reserved_pico, ledger.reserved_tokens, ledger.reserved_samples) == (0, 0, 0)
    assert charge.pico == 7 * 1_000_000 + 30 * 2_000_000
    assert (charge.status, charge.samples, charge.endpoint) == ("ok", 2, "ep")
    assert not charge.estimated and not charge.overrun
    assert ledger.spent_pico == charge.pico
    assert ledger.spent_tokens == 37
    assert ledger.spent_samples == 2
    assert ledger.usage == Usage(prompt_tokens=7, completion_tokens=30)
    assert ledger.charges == [charge]
    assert charge.usd == pytest.approx(charge.pico / 1e12)


def test_worst_case_uses_the_bound_then_the_exact_reported_prompt_tokens() -> None:
    ledger = Ledger()
    request = chat("some question", max_tokens=10)
    bound = prompt_token_bound(request)
    assert ledger.prompt_tokens(request) == bound
    assert ledger.worst_case(request, PRICE) == (bound * 1_000_000 + 10 * 2_000_000, bound + 10)
    ledger.settle(ledger.reserve(request, PRICE), response(prompt=4, completion=3))
    assert ledger.prompt_tokens(request) == 4
    assert ledger.worst_case(request, PRICE) == (4 * 1_000_000 + 10 * 2_000_000, 14)
    # Another prompt still uses its bound.
    other = chat("another question", max_tokens=10)
    assert ledger.prompt_tokens(other) == prompt_token_bound(other)


def test_prompt_copies_bill_the_prompt_per_copy_and_learn_per_copy() -> None:
    ledger = Ledger()
    request = chat("hello", max_tokens=5, n=3)
    bound = prompt_token_bound(request)
    pico, tokens = ledger.worst_case(request, PRICE, prompt_copies=3)
    assert (pico, tokens) == (3 * bound * 1_000_000 + 15 * 2_000_000, 3 * bound + 15)
    r = ledger.reserve(request, PRICE, prompt_copies=3)
    ledger.settle(r, response(prompt=30, completion=9, n=3), prompt_copies=3)
    assert ledger.prompt_tokens(request) == 10  # 30 prompt tokens over 3 copies


def test_unreported_usage_does_not_teach_prompt_tokens() -> None:
    ledger = Ledger()
    request = chat("hello")
    charge = ledger.settle(ledger.reserve(request, PRICE), response(prompt=2, completion=1, reported=False))
    assert charge.estimated
    assert ledger.prompt_tokens(request) == prompt_token_bound(request)


def test_an_overrun_keeps_what_was_reported_and_books_at_most_the_reservation() -> None:
    ledger = Ledger()
    r = ledger.reserve(chat("hi", max_tokens=5), PRICE)
    charge = ledger.settle(r, response(prompt=2, completion=500))  # server ignored max_tokens
    assert charge.overrun is not None
    assert charge.overrun.reported == Usage(prompt_tokens=2, completion_tokens=500)
    assert charge.overrun.reported_pico == 2 * 1_000_000 + 500 * 2_000_000
    assert charge.usage == Usage(prompt_tokens=2, completion_tokens=5)  # booked
    assert charge.pico == 2 * 1_000_000 + 5 * 2_000_000 <= r.pico
    assert ledger.spent_pico == charge.pico


def test_cancel_without_partial_usage_charges_the_reserved_worst_case() -> None:
    ledger = Ledger(Budget(usd=1.0))
    r = ledger.reserve(chat("hello", max_tokens=50), PRICE, endpoint="ep")
    charge = ledger.cancel(r)
    assert charge.status == "cancelled" and charge.estimated
    assert charge.pico == r.pico
    assert charge.usage == Usage(prompt_tokens=r.prompt_tokens, completion_tokens=50)
    assert charge.samples == 1
    assert ledger.spent_pico == r.pico and ledger.reserved_pico == 0
    assert ledger.spent_tokens == r.tokens and ledger.spent_samples == 1


def test_cancel_with_partial_usage_charges_what_was_counted() -> None:
    ledger = Ledger()
    r = ledger.reserve(chat("hello", max_tokens=50), PRICE)
    charge = ledger.cancel(r, Usage(prompt_tokens=3, completion_tokens=7), samples=0)
    assert charge.status == "cancelled" and charge.estimated
    assert charge.pico == 3 * 1_000_000 + 7 * 2_000_000
    assert ledger.spent_tokens == 10 and ledger.spent_samples == 0


def test_a_cut_stream_is_charged_the_exact_prompt_count_learned_while_it_was_out() -> None:
    ledger = Ledger()
    long = "hello " * 40  # a byte bound well above the exact count
    first = ledger.reserve(chat(long, max_tokens=50), PRICE, endpoint="ep")
    second = ledger.reserve(chat(long, max_tokens=50, n=3), PRICE, endpoint="ep", prompt_copies=3)
    bound = first.prompt_tokens
    assert second.prompt_tokens == 3 * bound
    ledger.settle(first, response(12, 5))  # the server reports 12 while `second` is out
    cut = ledger.cancel(second, Usage(prompt_tokens=3 * bound, completion_tokens=7), samples=3)
    assert cut.usage.prompt_tokens == 3 * 12 and cut.overrun is None
    assert cut.pico == 3 * 12 * 1_000_000 + 7 * 2_000_000


def test_a_prompt_the_server_reported_before_the_cut_is_charged_as_reported() -> None:
    ledger = Ledger()
    r = ledger.reserve(chat("hello", max_tokens=50), PRICE, endpoint="ep")
    inflated = Usage(prompt_tokens=r.prompt_tokens + 90, completion_tokens=3)
    # Not reported (the byte bound counted by the stream): never above the reservation.
    quiet = ledger.cancel(ledger.reserve(chat("hello", max_tokens=50), PRICE, endpoint="ep"), inflated)
    assert quiet.usage.prompt_tokens == r.prompt_tokens and quiet.overrun is None
    # Reported: what the server bills, an overrun of the reservation that shows (booked, as
    # every overrun, at most at the reservation).
    loud = ledger.cancel(r, inflated, samples=1, prompt_reported=True)
    assert loud.overrun is not None and loud.overrun.reported == inflated
    assert loud.usage.prompt_tokens == r.prompt_tokens


def test_fail_charges_reported_usage_or_the_worst_case_when_unknown() -> None:
    ledger = Ledger()
    nothing = ledger.fail(ledger.reserve(chat("z"), PRICE), Usage())  # e.g. an HTTP error status
    assert (nothing.status, nothing.pico, nothing.samples) == ("failed", 0, 0)
    r = ledger.reserve(chat("a"), PRICE)
    unknown = ledger.fail(r)  # the server may have generated it all (a malformed 200 body)
    assert (unknown.status, unknown.pico, unknown.samples, unknown.estimated) == ("failed", r.pico, 1, True)
    some = ledger.fail(ledger.reserve(chat("b"), PRICE), Usage(prompt_tokens=4, completion_tokens=2))
    assert some.pico == 4 * 1_000_000 + 2 * 2_000_000
    assert ledger.spent_pico == unknown.pico + some.pico
    assert ledger.reserved_pico == 0 and ledger.reserved_samples == 0
    assert [c.status for c in ledger.charges] == ["failed", "failed", "failed"]


def test_release_frees_the_reservation_without_a_charge() -> None:
    ledger = Ledger(Budget(samples=1))
    r = ledger.reserve(chat(), PRICE)
    with pytest.raises(BudgetExceededError):
        ledger.reserve(chat(), PRICE)
    ledger.release(r)
    assert ledger.charges == [] and ledger.spent_pico == 0 and ledger.reserved_samples == 0
    ledger.reserve(chat(), PRICE)  # the freed sample fits again


@pytest.mark.parametrize("close", ["settle", "cancel", "fail", "release"])
def test_a_reservation_closes_once(close: str) -> None:
    ledger = Ledger()
    r = ledger.reserve(chat(), PRICE)
    if close == "settle":
        ledger.settle(r, response(1, 1))
    elif close == "cancel":
        ledger.cancel(r)
    elif close == "fail":
        ledger.fail(r)
    else:
        ledger.release(r)
    assert not r.open
    with pytest.raises(RuntimeError, match="already settled"):
        ledger.release(r)
    assert ledger.reserved_pico == 0


# -- refusing ----------------------------------------------------------------------------


def test_refuses_on_dollars_with_dimension_usd() -> None:
    request = chat("hello", max_tokens=100)
    pico, _ = Ledger().worst_case(request, PRICE)
    ledger = Ledger(Budget(usd=(pico - 1) / 1e12))
    assert not ledger.fits(request, PRICE)
    with pytest.raises(BudgetExceededError, match=r"Budget\(usd=") as info:
        ledger.reserve(request, PRICE, endpoint="ep")
    assert info.value.dimension == "usd"
    assert ledger.reserved_pico == 0  # a refusal reserves nothing
    exact = Ledger(Budget(usd=pico / 1e12))
    assert exact.fits(request, PRICE)
    exact.reserve(request, PRICE)
    assert exact.remaining_usd() == 0.0


def test_refuses_on_tokens_with_dimension_tokens() -> None:
    request = chat("hello", max_tokens=100)
    need = prompt_token_bound(request) + 100
    ledger = Ledger(Budget(tokens=need - 1))
    with pytest.raises(BudgetExceededError, match=r"Budget\(tokens=") as info:
        ledger.reserve(request, None)
    assert info.value.dimension == "tokens"
    ok = Ledger(Budget(tokens=need))
    ok.reserve(request, None)
    assert ok.remaining_tokens() == 0


def test_refuses_on_samples_with_dimension_samples() -> None:
    ledger = Ledger(Budget(samples=3))
    ledger.reserve(chat(n=2), None)
    assert ledger.remaining_samples() == 1
    with pytest.raises(BudgetExceededError, match=r"Budget\(samples=") as info:
        ledger.reserve(chat(n=2), None)
    assert info.value.dimension == "samples"
    ledger.reserve(chat(n=1), None)


def test_reserved_spend_counts_against_the_limit_until_settled() -> None:
    request = chat("hello", max_tokens=100)
    pico, _ = Ledger().worst_case(request, PRICE)
    ledger = Ledger(Budget(usd=(2 * pico) / 1e12))
    r1 = ledger.reserve(request, PRICE)
    ledger.reserve(request, PRICE)
    with pytest.raises(BudgetExceededError):
        ledger.reserve(request, PRICE)
    ledger.settle(r1, response(prompt=1, completion=1))  # frees most of r1
    ledger.reserve(chat("hi", max_tokens=1), PRICE)


def test_unknown_price_with_a_dollar_budget() -> None:
    ledger = Ledger(Budget(usd=1.0))
    assert not ledger.fits(chat(), None)
    with pytest.raises(UnknownPriceError, match="price=Price") as info:
        ledger.reserve(chat(), None, endpoint="mystery-model")
    assert "mystery-model" in str(info.value)
    assert isinstance(info.value, ConfigError)
    # Without a dollar limit an unknown price is fine (nothing is charged in dollars).
    free = Ledger(Budget(tokens=10_000))
    free.settle(free.reserve(chat(), None), response(5, 5))
    assert free.spent_pico == 0 and free.spent_tokens == 10


def test_unlimited_ledger_still_records() -> None:
    ledger = Ledger()
    assert ledger.remaining_usd() is None
    assert ledger.remaining_tokens() is None
    assert ledger.remaining_samples() is None
    ledger.settle(ledger.reserve(chat(max_tokens=1_000_000), PRICE), response(10, 10))
    assert ledger.spent_usd == pytest.approx(10e-6 + 20e-6)


# -- shrinking ---------------------------------------------------------------------------


def test_shrink_lowers_max_tokens_to_the_largest_that_fits_the_dollars() -> None:
    request = chat("hello", max_tokens=1000)
    bound = prompt_token_bound(request)
    # Room for the prompt and exactly 37 completion tokens.
    ledger = Ledger(Budget(usd=(bound * 1_000_000 + 37 * 2_000_000 + 1_999_999) / 1e12))
    r = ledger.reserve(request, PRICE, shrink=True)
    assert r.request.max_tokens == 37
    assert r.pico == bound * 1_000_000 + 37 * 2_000_000
    assert request.max_tokens == 1000  # the caller's request is untouched


def test_shrink_lowers_max_tokens_to_fit_the_tokens_per_sample() -> None:
    request = chat("hello", max_tokens=1000, n=2)
    bound = prompt_token_bound(request)
    ledger = Ledger(Budget(tokens=bound + 2 * 40 + 1))
    r = ledger.reserve(request, None, shrink=True)
    assert r.request.max_tokens == 40
    assert ledger.reserved_tokens == bound + 80


def test_shrink_keeps_a_request_that_already_fits() -> None:
    request = chat("hello", max_tokens=10)
    ledger = Ledger(Budget(usd=1.0))
    assert ledger.reserve(request, PRICE, shrink=True).request is request


def test_shrink_below_the_floor_refuses() -> None:
    request = chat("hello", max_tokens=1000)
    bound = prompt_token_bound(request)
    ledger = Ledger(Budget(usd=(bound * 1_000_000 + 5 * 2_000_000) / 1e12))
    with pytest.raises(BudgetExceededError) as info:
        ledger.reserve(request, PRICE, shrink=True, min_max_tokens=16)
    assert info.value.dimension == "usd"
    assert ledger.reserved_pico == 0
    r = ledger.reserve(request, PRICE, shrink=True, min_max_tokens=5)
    assert r.request.max_tokens == 5


def test_shrink_with_tiered_price_stays_within_budget() -> None:
    price = Price(input=1.0, output=2.0, tiers=(PriceTier(min_prompt_tokens=20, input=3.0, output=9.0),))
    request = chat("a question long enough", max_tokens=500)
    limit = 300_000_000
    ledger = Ledger(Budget(usd=limit / 1e12))
    r = ledger.reserve(request, price, shrink=True)
    assert r.pico <= limit
    bigger = r.request.model_copy(update={"max_tokens": r.request.max_tokens + 1})
    assert Ledger().worst_case(bigger, price)[0] > limit  # the largest that fits


# -- exactness ---------------------------------------------------------------------------


def test_ten_thousand_tiny_charges_add_up_exactly() -> None:
    price = Price(input=0.15, output=0.6)  # 150_000 + 600_000 pico for one token each
    request = chat("hi", max_tokens=1)
    assert sum([7.5e-7] * 10_000) != 0.0075  # floats would drift here
    ledger = Ledger(Budget(usd=0.0075))
    for _ in range(10_000):
        r = ledger.reserve(request, price)
        ledger.settle(r, response(prompt=1, completion=1))
    assert ledger.spent_pico == 10_000 * 750_000 == 7_500_000_000
    assert ledger.spent_usd == 0.0075
    assert ledger.remaining_usd() == 0.0
    with pytest.raises(BudgetExceededError):
        ledger.reserve(request, price)


# -- budget validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("usd", -1.0),
        ("usd", 0.0),
        ("usd", math.nan),
        ("usd", math.inf),
        ("tokens", 0),
        ("tokens", -5),
        ("tokens", math.inf),
        ("samples", 0),
        ("samples", -1),
        ("seconds", 0.0),
        ("seconds", -0.5),
        ("seconds", math.nan),
        ("seconds", math.inf),
    ],
)
def test_bad_budget_raises_config_error_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError) as info:
        Budget(**{field: value})
    assert f"{field}:" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_budget_rejects_unknown_fields() -> None:
    with pytest.raises(ConfigError, match="dollars"):
        Budget(dollars=1.0)  # type: ignore[call-arg]


def test_budget_and_takes_the_tighter_limit() -> None:
    a = Budget(usd=0.5, tokens=1000)
    b = Budget(usd=0.2, samples=4, seconds=3.0)
    assert a & b == Budget(usd=0.2, tokens=1000, samples=4, seconds=3.0)
    assert Budget() & Budget() == Budget()
