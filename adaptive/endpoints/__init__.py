"""Model endpoints: one file per provider, all behind the one-method `Endpoint` contract."""

from .._models import TokenLogprob
from ._base import (
    BaseEndpoint,
    Endpoint,
    RetryPolicy,
    UsageMeter,
    current_meter,
    merge_responses,
    prompt_copies,
    retry_after,
)
from ._openai_common import OpenAIEndpoint, StreamEvent, StreamEvents, parse_usage
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
    "Anthropic",
    "BaseEndpoint",
    "Endpoint",
    "FunctionEndpoint",
    "FunctionResult",
    "OpenAIChat",
    "OpenAICompletions",
    "OpenAIEndpoint",
    "RecordedQuestion",
    "RecordedSample",
    "ReplayEndpoint",
    "RetryPolicy",
    "StreamEvent",
    "StreamEvents",
    "TokenLogprob",
    "UsageMeter",
    "current_meter",
    "jsonl_rows",
    "load_recorded",
    "merge_responses",
    "parse_usage",
    "prompt_copies",
    "recorded_question",
    "retry_after",
]
