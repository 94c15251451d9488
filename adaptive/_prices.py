"""Model prices: looked up in genai-prices (offline snapshot) or given by the user.

Money is kept as integer picodollars (1e-12 USD) so that sums are exact and a budget check
can never be broken by float rounding. Prices are resolved once per model and cached: a
cost is then a few integer multiplications.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from pydantic import Field

from ._exceptions import ConfigError
from ._models import Usage, ValidatedModel

__all__ = ["PICO", "Price", "PriceTier", "lookup_price", "pico_to_usd", "usd_to_pico"]

PICO = 10**12
"""Picodollars per dollar."""

# Anthropic's published multiplier of the base input rate for a 1-hour cache write.
_ANTHROPIC_1H_WRITE = 2.0


def usd_to_pico(usd: float) -> int:
    """Dollars to integer picodollars, rounding down (a limit never grows by rounding)."""
    return math.floor(Decimal(repr(usd)) * PICO)


def pico_to_usd(pico: int) -> float:
    """Integer picodollars to dollars."""
    return pico / PICO


def _rate(per_mtok: float) -> int:
    # $/MTok -> picodollars per token, rounded up so costs are never understated.
    return int((Decimal(repr(per_mtok)) * 10**6).to_integral_value(ROUND_CEILING))


class PriceTier(ValidatedModel):
    """Rates that apply once a request's prompt reaches `min_prompt_tokens` tokens."""

    min_prompt_tokens: int = Field(ge=1)
    input: float = Field(ge=0, allow_inf_nan=False)
    output: float = Field(ge=0, allow_inf_nan=False)
    cached_input: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    cache_write: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    cache_write_1h: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class Price(ValidatedModel):
    """A model's price in US dollars per million tokens.

    Args:
        input: Price of an uncached prompt token, $/MTok.
        output: Price of a completion token (reasoning tokens included), $/MTok.
        cached_input: Price of a cache-read prompt token; defaults to `input`.
        cache_write: Price of a prompt token written to the cache (Anthropic: a 5-minute
            write); defaults to `input`.
        cache_write_1h: Price of a prompt token written to Anthropic's 1-hour cache; defaults
            to `cache_write`. `lookup_price` fills it from genai-prices, or for an Anthropic
            model genai-prices has no 1-hour rate for, with Anthropic's published 2x `input`.
        tiers: Higher rates for long prompts (e.g. above 200k tokens), lowest first.

    Example:
        >>> Price(input=0.15, output=0.6).cost_usd(Usage(prompt_tokens=1000, completion_tokens=100))
        0.00021
    """

    input: float = Field(ge=0, allow_inf_nan=False)
    output: float = Field(ge=0, allow_inf_nan=False)
    cached_input: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    cache_write: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    cache_write_1h: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    tiers: tuple[PriceTier, ...] = ()

    @functools.cached_property
    def _rates(self) -> tuple[tuple[int, int, int, int, int, int], ...]:
        # (min_prompt_tokens, input, output, cached, cache_write, cache_write_1h) in
        # pico/token, highest tier first
        rows: list[tuple[int, int, int, int, int, int]] = []
        tiers: tuple[Price | PriceTier, ...] = (self, *self.tiers)
        for t in tiers:
            start = t.min_prompt_tokens if isinstance(t, PriceTier) else 0
            cached = t.cached_input if t.cached_input is not None else t.input
            write = t.cache_write if t.cache_write is not None else t.input
            write_1h = t.cache_write_1h if t.cache_write_1h is not None else write
            rows.append(
                (start, _rate(t.input), _rate(t.output), _rate(cached), _rate(write), _rate(write_1h))
            )
        return tuple(sorted(rows, reverse=True))

    @staticmethod
    def lookup(model: str, provider: str | None = None) -> Price | None:
        """The price of `model` from genai-prices' bundled snapshot, or None when unknown.

        Nothing is fetched from the network (see `lookup_price`).
        """
        return lookup_price(model, provider)

    def cost_pico(self, usage: Usage) -> int:
        """Exact cost of `usage` in picodollars.

        Raises:
            ConfigError: `usage` splits its prompt inconsistently (cache reads plus writes
                above the prompt, or 1-hour writes above all writes): pricing it would
                understate the cost. Endpoints validate usage before it gets here.
        """
        prompt = usage.prompt_tokens
        cached, writes = usage.cached_prompt_tokens, usage.cache_write_tokens
        writes_1h = usage.cache_write_1h_tokens
        if cached + writes > prompt or writes_1h > writes:
            raise ConfigError(
                f"inconsistent usage: {cached} cache-read + {writes} cache-write tokens (of them "
                f"{writes_1h} 1-hour) in a prompt of {prompt}"
            )
        # Highest tier first; the base tier starts at 0, so one always matches.
        _, inp, out, read, write, write_1h = next(r for r in self._rates if prompt >= r[0])
        return (
            (prompt - cached - writes) * inp
            + cached * read
            + (writes - writes_1h) * write
            + writes_1h * write_1h
            + usage.completion_tokens * out
        )

    def worst_case_pico(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Upper bound on the cost of a request.

        Every prompt token is billed at the highest prompt rate that can apply (fresh, cache
        write or 1-hour cache write), every completion token at the output rate of the prompt's tier.
        """
        for start, inp, out, _cached, write, write_1h in self._rates:
            if prompt_tokens >= start:
                return prompt_tokens * max(inp, write, write_1h) + completion_tokens * out
        raise AssertionError("unreachable: the base tier starts at 0")  # pragma: no cover

    def cost_usd(self, usage: Usage) -> float:
        """Cost of `usage` in dollars (for display; sums are kept in picodollars)."""
        return pico_to_usd(self.cost_pico(usage))


def _as_float(v: Any) -> float | None:
    if v is None:
        return None
    base = getattr(v, "base", v)  # TieredPrices carry a base and tiers
    return float(base)


@functools.lru_cache(maxsize=512)
def lookup_price(model: str, provider: str | None = None) -> Price | None:
    """The price of `model` from genai-prices' bundled snapshot, or None when unknown.

    Nothing is fetched from the network: the snapshot ships with the package. Call
    `genai_prices.UpdatePrices` yourself if you want live updates.

    Args:
        model: The model name as the provider spells it (e.g. "gpt-4o-mini").
        provider: Optional provider id ("openai", "anthropic", ...) to disambiguate.
    """
    from genai_prices import data_snapshot

    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider, None)
    except LookupError:
        return None
    mp = info.get_prices(datetime.now(tz=UTC))
    d = mp.__dict__
    inp, out = _as_float(d.get("input_mtok")), _as_float(d.get("output_mtok"))
    if inp is None or out is None:
        return None
    tiers: dict[int, dict[str, float]] = {}
    for ours, theirs in (
        ("input", "input_mtok"),
        ("output", "output_mtok"),
        ("cached_input", "cache_read_mtok"),
        ("cache_write", "cache_write_mtok"),
        ("cache_write_1h", "cache_write_1h_mtok"),
    ):
        for tier in getattr(d.get(theirs), "tiers", None) or ():
            tiers.setdefault(int(tier.start), {})[ours] = float(tier.price)
    write_1h = _as_float(d.get("cache_write_1h_mtok"))
    anthropic = provider == "anthropic" or model.startswith("claude")
    tier_models = []
    for start, rates in sorted(tiers.items()):
        rates.setdefault("input", inp)
        rates.setdefault("output", out)
        if anthropic and "cache_write_1h" not in rates:
            rates["cache_write_1h"] = _ANTHROPIC_1H_WRITE * rates["input"]
        tier_models.append(PriceTier(min_prompt_tokens=start, **rates))
    if write_1h is None and anthropic:
        # Anthropic bills 1-hour cache writes at 2x the base input rate (5-minute writes 1.25x,
        # reads 0.1x); used when the snapshot predates the 1-hour rate for this model.
        write_1h = _ANTHROPIC_1H_WRITE * inp
    return Price(
        input=inp,
        output=out,
        cached_input=_as_float(d.get("cache_read_mtok")),
        cache_write=_as_float(d.get("cache_write_mtok")),
        cache_write_1h=write_1h,
        tiers=tuple(tier_models),
    )
