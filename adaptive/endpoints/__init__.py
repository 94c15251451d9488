"""Model endpoints: one file per provider, all behind the `Endpoint` contract.

The HTTP providers (OpenAI chat and completions, Anthropic) are thin adapters over one HTTP
layer (`_http`: settings, auth, errors, retries, pool; `_sse`: event streams; `_checks`: the
validation every answer passes before it counts).
"""

from .._callables import is_async_callable
from .._models import TokenLogprob
from ._base import (
    BaseEndpoint,
    Endpoint,
    PartialResponseError,
    RetryPolicy,
    UsageMeter,
    current_meter,
    detach,
    merge_responses,
    prompt_copies,
    retry_after,
)
from ._checks import PLAUSIBLE_FACTOR, PLAUSIBLE_SLACK, check_indices, check_usage, count
from ._http import HTTPEndpoint, HTTPSettings, HTTPSettingsArgs, WireError
from ._openai import OpenAIEndpoint
from ._openai_wire import parse_usage
from ._sse import ServerSaid, StreamDecoder, StreamEvent, StreamEvents
from .anthropic import Anthropic
from .function import FunctionEndpoint, FunctionResult
from .openai_chat import OpenAIChat
from .openai_completions import OpenAICompletions
from .replay import (
    RecordedQuestion,
    RecordedSample,
    ReplayEndpoint,
    jsonl_rows,
    load_recorded,
    recorded_question,
)

__all__ = [
    "PLAUSIBLE_FACTOR",
    "PLAUSIBLE_SLACK",
    "Anthropic",
    "BaseEndpoint",
    "Endpoint",
    "FunctionEndpoint",
    "FunctionResult",
    "HTTPEndpoint",
    "HTTPSettings",
    "HTTPSettingsArgs",
    "OpenAIChat",
    "OpenAICompletions",
    "OpenAIEndpoint",
    "PartialResponseError",
    "RecordedQuestion",
    "RecordedSample",
    "ReplayEndpoint",
    "RetryPolicy",
    "ServerSaid",
    "StreamDecoder",
    "StreamEvent",
    "StreamEvents",
    "TokenLogprob",
    "UsageMeter",
    "WireError",
    "check_indices",
    "check_usage",
    "count",
    "current_meter",
    "detach",
    "is_async_callable",
    "jsonl_rows",
    "load_recorded",
    "merge_responses",
    "parse_usage",
    "prompt_copies",
    "recorded_question",
    "retry_after",
]
