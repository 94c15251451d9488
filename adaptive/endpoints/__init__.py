"""Model endpoints: one file per provider, all behind the one-method `Endpoint` contract."""

from ._base import BaseEndpoint, Endpoint, RetryPolicy, UsageMeter, current_meter, merge_responses
from .anthropic import Anthropic
from .function import FunctionEndpoint

__all__ = [
    "Anthropic",
    "BaseEndpoint",
    "Endpoint",
    "FunctionEndpoint",
    "RetryPolicy",
    "UsageMeter",
    "current_meter",
    "merge_responses",
]
