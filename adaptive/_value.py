"""What one more sample is worth and what it costs: pure functions the controller weighs.

The controller (and anything allocating samples across calls, such as a batch runner) asks
two questions before another batch:

- `expected_gain_per_sample`: by how much is P(our pick is the answer unlimited voting
  gives) expected to rise per extra sample, under the consistency prior?
- `expected_sample_cost_usd`: what is the next batch expected to cost? Its prompt is priced
  at the worst case (known before sending), its completions at this call's mean observed
  sample length; before the first sample, at `max_tokens` (the worst case), so a call whose
  samples run to 10,000 tokens is judged on what its samples actually cost.

Both are pure: same arguments, same answer, nothing read or written elsewhere.
"""

from __future__ import annotations

import math

from ._exceptions import ConfigError
from ._posterior import ConsistencyPrior
from ._prices import Price

__all__ = ["expected_gain_per_sample", "expected_sample_cost_usd", "mean_sample_tokens"]


def expected_gain_per_sample(prior: ConsistencyPrior, v1: int, v2: int, *, horizon: int = 8) -> float:
    """The best expected rise in confidence per extra sample, over batches of 1..`horizon`.

    One extra vote alone often cannot change the leader (at 3-1, one more vote never
    flips it), so the gain of a batch of k is divided by k and the best k taken.

    Args:
        prior: The consistency prior (uniform: AC's Beta model).
        v1: The leader's votes.
        v2: The runner-up's votes (v2 <= v1).
        horizon: The largest batch considered.
    """
    if horizon < 1:
        raise ConfigError(f"horizon must be at least 1 (got {horizon})")
    if v1 <= 0:
        return 0.0
    return max(prior.expected_gain(v1, v2, k) / k for k in range(1, horizon + 1))


def mean_sample_tokens(completion_tokens: int, samples: int, max_tokens: int) -> float:
    """The expected completion tokens of the next sample: this call's mean so far.

    Before the first sample (`samples` 0) it is `max_tokens`, the worst case. The mean is
    capped at `max_tokens` (no sample can run past it).
    """
    if samples < 0 or completion_tokens < 0 or max_tokens < 1:
        raise ConfigError(
            f"need samples >= 0, completion_tokens >= 0 and max_tokens >= 1 "
            f"(got {samples}, {completion_tokens}, {max_tokens})"
        )
    if samples == 0:
        return float(max_tokens)
    return min(float(max_tokens), completion_tokens / samples)


def expected_sample_cost_usd(
    price: Price,
    *,
    prompt_tokens: int,
    sample_tokens: float,
    k: int = 1,
    prompt_copies: int = 1,
) -> float:
    """Expected dollars of a batch of k samples.

    Args:
        price: The endpoint's price.
        prompt_tokens: The prompt's tokens (billed `prompt_copies` times: once for a batch
            sent as one request with `n`, k times for k single requests).
        sample_tokens: Expected completion tokens per sample (`mean_sample_tokens`).
        k: Samples in the batch.
        prompt_copies: How many times the prompt is billed.
    """
    if (
        k < 0
        or prompt_tokens < 0
        or prompt_copies < 0
        or not (math.isfinite(sample_tokens) and sample_tokens >= 0)
    ):
        raise ConfigError("k, prompt_tokens, prompt_copies and sample_tokens must be finite and >= 0")
    if k == 0:
        return 0.0
    completion = math.ceil(k * sample_tokens)
    return price.worst_case_pico(prompt_tokens * prompt_copies, completion) / 1e12
