"""adaptive: adaptive test-time compute for any model, under per-call budgets that hold."""

from ._budget import Budget
from ._exceptions import (
    AdaptiveError,
    BudgetExceededError,
    ConfigError,
    EndpointError,
    HTTPStatusError,
    RateLimitError,
    ResponseError,
    ServerError,
    StreamError,
    TransportError,
    UnknownPriceError,
)
from ._ledger import Charge, Ledger, Reservation, prompt_token_bound
from ._models import Completion, Message, Request, Response, TokenLogprob, Usage, ValidatedModel, as_messages
from ._prices import Price, PriceTier, lookup_price
from .endpoints import (
    Anthropic,
    BaseEndpoint,
    Endpoint,
    FunctionEndpoint,
    RetryPolicy,
    UsageMeter,
    current_meter,
    merge_responses,
)

__version__ = "0.1.0"

__all__ = [
    "AdaptiveError",
    "Anthropic",
    "BaseEndpoint",
    "Budget",
    "BudgetExceededError",
    "Charge",
    "Completion",
    "ConfigError",
    "Endpoint",
    "EndpointError",
    "FunctionEndpoint",
    "HTTPStatusError",
    "Ledger",
    "Message",
    "Price",
    "PriceTier",
    "RateLimitError",
    "Request",
    "Reservation",
    "Response",
    "ResponseError",
    "RetryPolicy",
    "ServerError",
    "StreamError",
    "TokenLogprob",
    "TransportError",
    "UnknownPriceError",
    "Usage",
    "UsageMeter",
    "ValidatedModel",
    "__version__",
    "as_messages",
    "current_meter",
    "lookup_price",
    "merge_responses",
    "prompt_token_bound",
]
