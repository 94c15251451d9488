"""Per-trace confidence from token log-probabilities, in the style of DeepConf.

DeepConf (Fu et al. 2025, "Deep Think with Confidence") scores a reasoning trace by how sure
the model was while writing it, and finds that the *least* sure stretch of a trace says more
about whether its answer is right than the average over the whole trace does: a wrong trace
usually contains a passage where the model wavers. This module computes those scores; it does
no I/O and knows nothing of endpoints or strategies.

Token confidence:
    The confidence of one token. With alternatives (`TokenLogprob.top`, asked for with
    `top_logprobs`) and `source="top"`, it is DeepConf's `-mean(top-k logprobs)` (a peaked
    distribution has very unlikely alternatives, so a large value). With `source="logprob"`
    (the default: it needs only `logprobs=True`, which more servers return) it is the sampled
    token's own log-probability. Both are "higher = surer"; never mix the two in one vote.

Trace measures (`TraceConfidence.measure`):
    - "lowest": the lowest group confidence, a group being the mean token confidence over a
      sliding window of `window` consecutive tokens (DeepConf's default: 2048 tokens).
    - "bottom10": the mean of the lowest 10% of the group confidences (`bottom` sets the share).
    - "tail": the mean token confidence over the last `window` tokens.
    - "mean": the mean over the whole trace (what `Completion.mean_logprob` gives).

A window longer than the trace is the whole trace; `window` below 1 is a share of the trace's
length (0.1: a tenth), so that short traces (a few hundred tokens) still have groups.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import Field, field_validator

from ._exceptions import ConfigError
from ._models import Completion, TokenLogprob, ValidatedModel

__all__ = [
    "ConfidenceMonitor",
    "TraceConfidence",
    "group_confidences",
    "threshold_from",
    "token_confidence",
    "top_share",
]

Measure = Literal["lowest", "bottom10", "tail", "mean"]
Source = Literal["logprob", "top"]


def token_confidence(token: TokenLogprob, source: Source = "logprob") -> float:
    """The confidence of one token (higher = surer); see the module docstring.

    Raises:
        ConfigError: `source="top"` but the token carries no alternatives (ask the endpoint
            for `top_logprobs`), or the source is unknown.
    """
    if source == "logprob":
        return token.logprob
    if source == "top":
        if not token.top:
            raise ConfigError(
                "source='top' needs each token's alternatives (TokenLogprob.top): request "
                "top_logprobs (e.g. Sampling(logprobs=True) with top_logprobs=5), or use source='logprob'"
            )
        finite = [lp for _, lp in token.top if math.isfinite(lp)]
        # A top-k list of only -inf entries is as sure as a token can be: clamp, do not divide by 0.
        return -math.fsum(finite) / len(finite) if finite else 0.0
    raise ConfigError(f"source must be 'logprob' or 'top', got {source!r}")


def _window(window: float, length: int) -> int:
    """The window in tokens for a trace of `length` tokens (a share when below 1)."""
    size = math.ceil(window * length) if window < 1 else int(window)
    return max(1, min(size, length))


def group_confidences(values: Sequence[float], window: int) -> list[float]:
    """The mean of every run of `window` consecutive values (one group when shorter).

    Example:
        >>> group_confidences([-1.0, -1.0, -3.0, -1.0], 2)
        [-1.0, -2.0, -2.0]
    """
    if not values:
        return []
    w = max(1, min(window, len(values)))
    out: list[float] = []
    running = math.fsum(values[:w])
    out.append(running / w)
    for i in range(w, len(values)):
        running += values[i] - values[i - w]
        out.append(running / w)
    return out


class TraceConfidence(ValidatedModel):
    """How one trace's confidence is computed from its token logprobs.

    Args:
        measure: "lowest", "bottom10", "tail" or "mean" (see the module docstring).
        window: Group (and tail) size in tokens; below 1, a share of the trace's length.
        bottom: For "bottom10": the share of the lowest groups averaged (0.1 = 10%).
        source: "logprob" (the sampled token's logprob) or "top" (DeepConf's -mean of the
            top-k alternatives; needs `top_logprobs`).
    """

    measure: Measure = "bottom10"
    window: float = Field(default=2048, gt=0, allow_inf_nan=False)
    bottom: float = Field(default=0.1, gt=0, le=1, allow_inf_nan=False)
    source: Source = "logprob"

    @field_validator("window")
    @classmethod
    def _whole_tokens(cls, v: float) -> float:
        if v >= 1 and v != int(v):
            raise ValueError(
                "a window of 1 or more is a token count: give a whole number (or a share below 1)"
            )
        return v

    def values(self, logprobs: Sequence[TokenLogprob]) -> list[float]:
        """The token confidences of a trace."""
        return [token_confidence(t, self.source) for t in logprobs]

    def of_values(self, values: Sequence[float]) -> float:
        """The trace confidence from token confidences.

        Raises:
            ConfigError: `values` is empty (a trace with no tokens has no confidence).
        """
        if not values:
            raise ConfigError("a trace with no token logprobs has no confidence")
        w = _window(self.window, len(values))
        if self.measure == "mean":
            return math.fsum(values) / len(values)
        if self.measure == "tail":
            return math.fsum(values[-w:]) / w
        groups = group_confidences(values, w)
        if self.measure == "lowest":
            return min(groups)
        groups.sort()
        k = max(1, math.ceil(self.bottom * len(groups)))
        return math.fsum(groups[:k]) / k

    def of(self, completion: Completion) -> float | None:
        """The confidence of a completion, or None when it came without logprobs."""
        if not completion.logprobs:
            return None
        return self.of_values(self.values(completion.logprobs))

    def weight(self, confidence: float) -> float:
        """A vote weight (finite, >= 0) from a trace confidence.

        With `source="logprob"` the confidence is a mean log-probability, so the weight is
        `exp(confidence)`, the geometric-mean token probability of the worst stretch, in
        [0, 1]. With `source="top"` (already positive) it is the confidence itself.
        """
        if self.source == "top":
            return max(0.0, confidence)
        return math.exp(min(confidence, 0.0))

    def monitor(self, threshold: float, *, window: int) -> ConfidenceMonitor:
        """An online monitor that says when a trace's running group confidence falls below `threshold`."""
        return ConfidenceMonitor(threshold=threshold, window=window, source=self.source)


def top_share(confidences: Sequence[float | None], keep: float) -> list[bool]:
    """Which traces are among the `keep` share most confident (at least one is kept).

    Traces without a confidence (None) are never kept while any has one. Ties at the cut
    keep the earlier trace, so the choice does not depend on anything but the order.

    Raises:
        ConfigError: `keep` is not in (0, 1].
    """
    if not 0 < keep <= 1:
        raise ConfigError(f"keep must be a share in (0, 1], got {keep!r}")
    known = [(c, i) for i, c in enumerate(confidences) if c is not None]
    if not known:
        return [False] * len(confidences)
    k = max(1, math.ceil(keep * len(confidences)))
    ranked = sorted(known, key=lambda ci: (-ci[0], ci[1]))[:k]
    chosen = {i for _, i in ranked}
    return [i in chosen for i in range(len(confidences))]


def threshold_from(confidences: Iterable[float], keep: float) -> float:
    """The stopping threshold from warmup traces: the `1 - keep` quantile of their confidences.

    A later trace whose running confidence falls below it is less confident than all but the
    `keep` share of the warmup (DeepConf-high keeps 0.9, DeepConf-low 0.1). Nearest-rank
    quantile, so the threshold is one of the warmup's own values.

    Raises:
        ConfigError: No confidences, or `keep` not in (0, 1].
    """
    values = sorted(confidences)
    if not values:
        raise ConfigError("a threshold needs at least one warmup trace with logprobs")
    if not 0 < keep <= 1:
        raise ConfigError(f"keep must be a share in (0, 1], got {keep!r}")
    rank = max(1, math.ceil((1 - keep) * len(values)))
    return values[min(rank, len(values)) - 1] if keep < 1 else values[0]


class ConfidenceMonitor:
    """Watches a trace token by token; says when its group confidence falls below a threshold.

    A group is judged only once `window` tokens have arrived (a shorter stretch is too noisy
    to cut on), which is also why a short trace can never be cut.

    Attributes:
        threshold: The cut-off (see `threshold_from`).
        window: Group size in tokens.
        tokens: Tokens seen so far.
        lowest: The lowest full-window group confidence so far (None before a window filled).
        cut_at: The token count at which the trace fell below the threshold (None: not cut).
    """

    def __init__(self, *, threshold: float, window: int, source: Source = "logprob") -> None:
        if window < 1:
            raise ConfigError(f"window must be at least 1 token, got {window!r}")
        self.threshold = threshold
        self.window = window
        self.source: Source = source
        self._recent: deque[float] = deque(maxlen=window)
        self._sum = 0.0
        self.tokens = 0
        self.lowest: float | None = None
        self.cut_at: int | None = None

    def push(self, tokens: Iterable[TokenLogprob]) -> bool:
        """Take in newly arrived tokens; True once the trace should be cut (and from then on)."""
        for t in tokens:
            if self.cut_at is not None:
                return True
            value = token_confidence(t, self.source)
            if len(self._recent) == self.window:
                self._sum -= self._recent[0]
            self._recent.append(value)
            self._sum += value
            self.tokens += 1
            if len(self._recent) == self.window:
                group = self._sum / self.window
                self.lowest = group if self.lowest is None else min(self.lowest, group)
                if group < self.threshold:
                    self.cut_at = self.tokens
        return self.cut_at is not None
