"""Prices: integer picodollars, tiers, caching rates, and the offline genai-prices lookup."""

from __future__ import annotations

import math

import pytest

from adaptive import ConfigError, Price, Usage
from adaptive._prices import PICO, PriceTier, lookup_price, pico_to_usd, usd_to_pico


def test_pico_conversions() -> None:
    assert PICO == 10**12
    assert usd_to_pico(1.0) == PICO
    assert usd_to_pico(0.0075) == 7_500_000_000
    assert usd_to_pico(0.1) == 100_000_000_000  # from the decimal repr, not the binary float
    assert pico_to_usd(7_500_000_000) == 0.0075
    # Rounding down: a limit never grows by conversion.
    assert usd_to_pico(1e-13) == 0


def test_cost_of_usage_is_exact() -> None:
    price = Price(input=0.15, output=0.6)
    usage = Usage(prompt_tokens=1000, completion_tokens=100)
    assert price.cost_pico(usage) == 1000 * 150_000 + 100 * 600_000
    assert price.cost_usd(usage) == 0.00021


def test_rates_round_up_to_whole_picodollars_per_token() -> None:
    # 0.1234567 $/MTok = 123456.7 pico/token: charged as 123457 (never understated).
    price = Price(input=0.1234567, output=0.0)
    assert price.cost_pico(Usage(prompt_tokens=10)) == 10 * 123_457


def test_cached_and_cache_write_rates() -> None:
    price = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    usage = Usage(prompt_tokens=1000, cached_prompt_tokens=600, cache_write_tokens=100, completion_tokens=10)
    expected = 300 * 3_000_000 + 600 * 300_000 + 100 * 3_750_000 + 10 * 15_000_000
    assert price.cost_pico(usage) == expected
    # Defaults: cached and cache-write prompt tokens cost the input rate.
    plain = Price(input=3.0, output=15.0)
    assert plain.cost_pico(usage) == 1000 * 3_000_000 + 10 * 15_000_000


def test_worst_case_bills_every_prompt_token_at_the_highest_prompt_rate() -> None:
    price = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    assert price.worst_case_pico(100, 50) == 100 * 3_750_000 + 50 * 15_000_000
    cheap_write = Price(input=3.0, output=15.0, cache_write=1.0)
    assert cheap_write.worst_case_pico(100, 0) == 100 * 3_000_000


def test_tiered_prices_switch_at_the_prompt_threshold() -> None:
    price = Price(
        input=1.0,
        output=2.0,
        tiers=(
            PriceTier(min_prompt_tokens=1000, input=2.0, output=4.0),
            PriceTier(min_prompt_tokens=5000, input=5.0, output=10.0, cached_input=1.0),
        ),
    )
    below = Usage(prompt_tokens=999, completion_tokens=10)
    at = Usage(prompt_tokens=1000, completion_tokens=10)
    top = Usage(prompt_tokens=6000, cached_prompt_tokens=1000, completion_tokens=10)
    assert price.cost_pico(below) == 999 * 1_000_000 + 10 * 2_000_000
    assert price.cost_pico(at) == 1000 * 2_000_000 + 10 * 4_000_000
    assert price.cost_pico(top) == 5000 * 5_000_000 + 1000 * 1_000_000 + 10 * 10_000_000
    assert price.worst_case_pico(999, 10) == price.cost_pico(below)
    assert price.worst_case_pico(1000, 10) == price.cost_pico(at)
    # A worst case bounds every usage with at most that many tokens.
    for prompt in (0, 1, 999, 1000, 4999, 5000, 8000):
        bound = price.worst_case_pico(prompt, 20)
        assert price.cost_pico(Usage(prompt_tokens=prompt, completion_tokens=20)) <= bound


def test_tier_order_does_not_matter() -> None:
    t1 = PriceTier(min_prompt_tokens=10, input=2.0, output=2.0)
    t2 = PriceTier(min_prompt_tokens=20, input=3.0, output=3.0)
    usage = Usage(prompt_tokens=25, completion_tokens=1)
    assert Price(input=1, output=1, tiers=(t1, t2)).cost_pico(usage) == Price(
        input=1, output=1, tiers=(t2, t1)
    ).cost_pico(usage)


@pytest.mark.parametrize(
    ("field", "value"),
    [("input", -1.0), ("output", math.nan), ("input", math.inf), ("cached_input", -0.1)],
)
def test_bad_prices_raise_config_error_naming_the_field(field: str, value: float) -> None:
    kwargs = {"input": 1.0, "output": 1.0, field: value}
    with pytest.raises(ConfigError, match=field):
        Price(**kwargs)


def test_bad_tier_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="min_prompt_tokens"):
        PriceTier(min_prompt_tokens=0, input=1.0, output=1.0)


def test_lookup_price_uses_the_bundled_snapshot() -> None:
    price = lookup_price("gpt-4o-mini")
    assert price is not None
    assert price.input > 0 and price.output > price.input
    assert lookup_price("no-such-model-anywhere-0xdeadbeef") is None
