"""The proxy's configuration: upstream, aliases, prices, tenants and limits (a TOML file).

TOML because the standard library reads it (`tomllib`): no new dependency. Every table is
validated strictly (an unknown key is a `ConfigError` naming it), so a typo never turns into a
silently ignored setting. See the README's "Proxy server" section for a complete file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from .._budget import Budget
from .._exceptions import ConfigError
from .._models import HiddenInputError, ValidatedModel
from .._prices import Price
from ..endpoints._http import parse_base_url

__all__ = [
    "AliasConfig",
    "LedgerConfig",
    "LimitsConfig",
    "ServerConfig",
    "TenantConfig",
    "UpstreamConfig",
]

UpstreamKind = Literal["openai", "anthropic"]

_TENANT_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class UpstreamConfig(ValidatedModel):
    """Where the proxy sends its requests.

    Args:
        url: Base URL of the upstream API: `http://127.0.0.1:8001/v1` for an OpenAI-compatible
            one, the root (`https://api.anthropic.com`) for Anthropic.
        kind: "openai" (any OpenAI-compatible server) or "anthropic" (the Messages API).
        api_key_env: Environment variable holding the upstream key (default: the provider's,
            OPENAI_API_KEY or ANTHROPIC_API_KEY).
        pass_through_key: Send each client's own bearer key upstream instead of the server's
            (then the proxy's tenants table, if any, still authenticates first).
        timeout_seconds: Timeout of one upstream request.
        retry_attempts: Tries per upstream request (1: no retry; 429 and 5xx are retried).
        stream: Stream upstream answers: a request cut short (a client that went away, a
            stop part-way, a shutdown) is then charged what it streamed, not its worst case.
    """

    url: str
    kind: UpstreamKind = "openai"
    api_key_env: str | None = None
    pass_through_key: bool = False
    timeout_seconds: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    retry_attempts: int = Field(default=2, ge=1, le=20)
    stream: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        # http(s) with a host and no credentials (which would reach every log line): at startup,
        # not on the first request.
        try:
            parse_base_url(url, "http://127.0.0.1:8001/v1")
        except ValueError as exc:  # its message shows the value when that is safe
            raise HiddenInputError(str(exc)) from None
        return url


class AliasConfig(ValidatedModel):
    """A model name clients may ask for, mapped to an upstream model, a strategy and a budget.

    Args:
        model: The upstream model.
        strategy: A strategy name or config dict (`{"name": "adaptive", "max_samples": 16}`);
            None: one sample.
        budget: The per-call budget (a dict of `Budget`'s limits).
    """

    model: str = Field(min_length=1)
    strategy: str | dict[str, Any] | None = None
    budget: Budget | None = None


class TenantConfig(ValidatedModel):
    """One tenant: its API keys, its per-call cap and its running total.

    Args:
        keys: The API keys that authenticate as this tenant (never logged).
        per_call: The cap on every call (combined with the request's own budget, tightest wins).
        total_usd: Dollars the tenant may spend in all (per `period`).
        total_tokens: Tokens the tenant may use in all (per `period`).
        period: "total" (an absolute cap) or "day" (resets at 00:00 UTC).
    """

    keys: tuple[str, ...] = Field(min_length=1, repr=False)
    per_call: Budget | None = None
    total_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    total_tokens: int | None = Field(default=None, gt=0)
    period: Literal["total", "day"] = "total"

    @field_validator("keys")
    @classmethod
    def _keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        if any(not k.strip() for k in keys):
            raise HiddenInputError("an API key is empty")
        return keys


class LedgerConfig(ValidatedModel):
    """Where tenants' totals live.

    Args:
        redis_url: A Redis URL (`redis://127.0.0.1:6379/0`): every proxy process given the same
            Redis and prefix shares each tenant's total. None: this process's memory.
        prefix: The Redis key prefix (letters, digits and `_.:-`).
        lease_seconds: How long a request's hold lives without renewal: a proxy that dies
            mid-request has its holds booked at their worst case after this long.
    """

    redis_url: str | None = Field(default=None, repr=False)
    prefix: str = Field(default="adaptive", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    lease_seconds: float = Field(default=30.0, ge=0.05, le=86_400, allow_inf_nan=False)

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise HiddenInputError("ledger.redis_url must start with redis://, rediss:// or unix://")
        return url


class LimitsConfig(ValidatedModel):
    """Limits of the server itself.

    Args:
        max_body_bytes: Largest request body (413 beyond it).
        timeout_seconds: Wall-clock limit of one call (504 with the receipt when it binds).
        max_concurrency: Chat calls in flight at once; one more is refused with 429
            (`server_busy`, `Retry-After: 1`) rather than queued.
        grace_seconds: On SIGTERM, how long in-flight calls may finish before they are
            cancelled (and what they spent is still charged).
        keep_alive_seconds: Idle keep-alive of client connections.
    """

    max_body_bytes: int = Field(default=1_000_000, ge=1)
    timeout_seconds: float = Field(default=120.0, gt=0, allow_inf_nan=False)
    max_concurrency: int = Field(default=256, ge=1)
    grace_seconds: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    keep_alive_seconds: float = Field(default=5.0, gt=0, allow_inf_nan=False)


class ServerConfig(ValidatedModel):
    """Everything `adaptive serve` needs.

    Args:
        upstream: The upstream API.
        default_strategy: The strategy behind `"adaptive/<model>"` model names.
        default_budget: The budget of `"adaptive/<model>"` calls (and of the `adaptive` field
            when it gives none).
        aliases: Model names mapped to an upstream model, strategy and budget.
        prices: $/MTok per upstream model, for models genai-prices does not know.
        tenants: Tenants by name; none means no authentication (and no totals).
        limits: The server's own limits.
        ledger: Where tenants' totals live (memory, or a shared Redis).
    """

    # Its own messages show what is safe to show; the table as a whole is not repeated.
    upstream: UpstreamConfig = Field(repr=False)
    default_strategy: str | dict[str, Any] = "adaptive"
    default_budget: Budget | None = None
    aliases: dict[str, AliasConfig] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)
    # Kept out of the repr and of every validation message: the table holds the API keys.
    tenants: dict[str, TenantConfig] = Field(default_factory=dict, repr=False)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)

    @field_validator("tenants")
    @classmethod
    def _unique_keys(cls, tenants: dict[str, TenantConfig]) -> dict[str, TenantConfig]:
        seen: dict[str, str] = {}
        for name, t in tenants.items():
            # The name is part of the tenant's ledger account name (`tenant:<name>:<period>`).
            if not _TENANT_NAME.match(name):
                raise HiddenInputError(
                    f"tenant name {name!r}: use 1-64 letters, digits and -_.@ (it names its ledger account)"
                )
            for k in t.keys:
                if k in seen:  # the key itself is never shown
                    raise HiddenInputError(f"tenants {seen[k]!r} and {name!r} share an API key")
                seen[k] = name
        return tenants

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> ServerConfig:
        """Read a TOML file; `overrides` (from the command line) replace its top-level tables' keys.

        Raises:
            ConfigError: The file cannot be read or parsed, or a value is invalid.
        """
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read the config file {str(path)!r}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"the config file {str(path)!r} is not valid TOML: {exc}") from None
        return cls.of(data, **overrides)

    @classmethod
    def of(cls, data: Mapping[str, Any], **overrides: Mapping[str, Any]) -> ServerConfig:
        """A config from a dict (a parsed file), with `overrides` merged into its tables."""
        merged: dict[str, Any] = dict(data)
        for table, values in overrides.items():
            merged[table] = {**dict(merged.get(table) or {}), **values}
        return cls(**merged)
