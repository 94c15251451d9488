"""adaptive: adaptive test-time compute for any model, under per-call budgets that hold.

The names here are what an application (and a strategy written for it) needs; each is
documented where it is defined. Helpers stay in their private modules. Providers also live in
`adaptive.endpoints` (with the pieces for writing your own endpoint), the simulated model in
`adaptive.sim`, the command line in `adaptive.cli`; the built-in strategies are found by name
(`strategy="best-of-n"`) through entry points, or imported from `adaptive_strategies`.
"""

from ._answer_spec import AnswerSpec
from ._budget import Budget
from ._client import Client, SyncClient
from ._controller import ControllerConfig
from ._exceptions import (
    AdaptiveError,
    BudgetExceededError,
    BudgetTooSmallError,
    ClientClosedError,
    ConfigError,
    EndpointError,
    HTTPStatusError,
    LedgerError,
    RateLimitError,
    ResponseError,
    ServerError,
    StreamError,
    TransportError,
    UnknownPriceError,
)
from ._extractors import (
    AfterMarker,
    AnswerIs,
    Boxed,
    Extractor,
    JSONField,
    LastNumber,
    MultipleChoice,
    Regex,
    extractor_from_config,
)
from ._models import Completion, Message, Request, Response, Usage, ValidatedModel
from ._normalize import answers_equivalent, normalize_answer
from ._posterior import ConsistencyPrior
from ._prices import Price
from ._registry import Registry
from ._result import ChargeRecord, OverrunRecord, Result, SampleRecord, StopRecord, TraceEvent
from ._state import State
from ._stop import (
    Check,
    StopRule,
    ac_beta,
    budget_exhausted,
    confident,
    deadline,
    dirichlet,
    esc_window,
    low_marginal_gain,
    max_samples,
    score_threshold,
    stop_rule_from_config,
    vote_margin,
)
from ._strategy import (
    Call,
    Evidence,
    Final,
    Outcome,
    Plan,
    Sampling,
    SingleSample,
    Strategy,
    StrategyRun,
    Task,
    register_strategy,
    strategy_from_config,
    strategy_names,
)
from ._voting import majority_vote, weighted_vote
from .endpoints import (
    Anthropic,
    Endpoint,
    FunctionEndpoint,
    OpenAIChat,
    OpenAICompletions,
    ReplayEndpoint,
)

__version__ = "0.1.0"

# Grouped as the README presents them; tests/test_exports.py keeps this list curated (every
# name documented, no helper, at most 80 names).
__all__ = [  # noqa: RUF022 - grouped by topic, not sorted
    # the client and what a call returns
    "Client",
    "SyncClient",
    "Budget",
    "Result",
    "SampleRecord",
    "ChargeRecord",
    "StopRecord",
    "OverrunRecord",
    "TraceEvent",
    # errors (the tree is drawn in adaptive/_exceptions.py)
    "AdaptiveError",
    "ConfigError",
    "BudgetExceededError",
    "BudgetTooSmallError",
    "LedgerError",
    "ClientClosedError",
    "UnknownPriceError",
    "EndpointError",
    "HTTPStatusError",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "ResponseError",
    "StreamError",
    # endpoints (more in adaptive.endpoints)
    "Endpoint",
    "OpenAIChat",
    "OpenAICompletions",
    "Anthropic",
    "FunctionEndpoint",
    "ReplayEndpoint",
    # requests and responses
    "Request",
    "Response",
    "Completion",
    "Message",
    "Usage",
    # stop rules
    "StopRule",
    "State",
    "Check",
    "confident",
    "ac_beta",
    "dirichlet",
    "esc_window",
    "vote_margin",
    "score_threshold",
    "low_marginal_gain",
    "budget_exhausted",
    "deadline",
    "max_samples",
    "stop_rule_from_config",
    # the strategy contract
    "Strategy",
    "StrategyRun",
    "Task",
    "Plan",
    "Call",
    "Sampling",
    "Outcome",
    "Evidence",
    "Final",
    "SingleSample",
    "register_strategy",
    "strategy_from_config",
    "strategy_names",
    "Registry",
    "ValidatedModel",
    # reading and voting on answers
    "AnswerSpec",
    "Extractor",
    "AnswerIs",
    "Boxed",
    "LastNumber",
    "MultipleChoice",
    "Regex",
    "JSONField",
    "AfterMarker",
    "extractor_from_config",
    "normalize_answer",
    "answers_equivalent",
    "majority_vote",
    "weighted_vote",
    # prices, the controller's settings and its prior
    "Price",
    "ControllerConfig",
    "ConsistencyPrior",
]
