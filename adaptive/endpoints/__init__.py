"""Model endpoints: one file per provider, all behind the one-method `Endpoint` contract."""

from ._base import BaseEndpoint, Endpoint, RetryPolicy, UsageMeter, current_meter, merge_responses

__all__ = [
    "BaseEndpoint",
    "Endpoint",
    "RetryPolicy",
    "UsageMeter",
    "current_meter",
    "merge_responses",
]
