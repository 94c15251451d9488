"""Per-trace confidence from token logprobs (DeepConf style): the public names.

See `adaptive._confidence` for the measures. Reached as `adaptive.confidence` (not re-exported
from `adaptive` itself, whose top-level names are kept few).
"""

from ._confidence import (
    ConfidenceMonitor,
    TraceConfidence,
    group_confidences,
    threshold_from,
    token_confidence,
    top_share,
)
from ._models import TokenLogprob

__all__ = [
    "ConfidenceMonitor",
    "TokenLogprob",
    "TraceConfidence",
    "group_confidences",
    "threshold_from",
    "token_confidence",
    "top_share",
]
