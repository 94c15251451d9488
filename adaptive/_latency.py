"""Latency versus dollars: how a plan's batch size follows from how long the caller can wait.

Every round of an adaptive call is one more wait for the slowest sample of its batch, so the
number of sequential rounds, not the number of samples, sets the wall time. A plan says how
to trade the two with `Plan.latency`:

* "cheap": every batch is the fewest samples that could let the stop rules stop, were they
  all to agree with the leader (the best case). Fewest samples; a split vote takes several
  rounds.
* "balanced": the first batch as "cheap"; a later one is `BALANCED_MARGIN` (1.5) times the
  fewest samples that could let the rules stop were they to split like the votes so far (the
  expected case), up to the controller's `max_batch`. The expected case alone is about an
  even chance: a vote that then splits a little worse takes a third round, and the 4% of
  calls that did set the p95 (demo mix, 1,000 questions at zero delay). With the margin 3%
  do, for about 10% more samples.
* "fast": the first batch is twice the "cheap" one, a later one the cap, all sent as
  single requests, topped up while the round runs when those in flight could not be enough
  (the controller's `top_up`): the rules are asked as each sample arrives and the rest is
  cancelled as soon as they say stop (cancelled requests are charged what they used: on a
  parallel batch most of a sample, the worst case on an endpoint that does not stream).
  If no sample of the first round is back by the median of this endpoint's recent waits for
  a "fast" round's first sample (`FAST_WAIT_QUANTILE`, learned by `RoundClock`), the round
  is topped up to the cap at once: slow samples are long ones, long ones come from hard
  questions, and a hard question's votes split, so waiting for them to come back split
  before topping up would add a second sample's time to exactly the calls that set the p95.
  One round, at 1.2-1.5x the dollars of "balanced" (see the README's latency table).

With a `seconds` budget, whatever the setting, a batch that is the last to fit the deadline
(the time per round learned from this endpoint's past rounds) asks for everything the rules
may still need (the cap), instead of leaving the deadline to cut the call between rounds.

`batch_for`, `singles_for` and `rounds_that_fit` are pure; `RoundClock` learns the time per round.
"""

from __future__ import annotations

import collections
import math
from typing import Literal

# The controller's own machinery: nothing here is public API (see `Plan.latency`).
__all__: list[str] = []

Latency = Literal["fast", "balanced", "cheap"]

# "fast"'s first batch is this many times the fewest samples that could stop. It was 3 before
# the timed top-up (below); with that covering the slow, hard questions, 2 kept the p95 for
# 7% fewer dollars over HTTP (p50 0.96x -> 1.00x a single call; README, "Latency").
FAST_OVERDRAW = 2
# "balanced" draws this many times the samples of the expected case in a later batch: a
# latency-for-dollars choice, measured on the simulator (`benchmarks/latency.py`, README).
BALANCED_MARGIN = 1.5
# "fast" tops its first round up to the cap when no sample is back by this quantile of the
# endpoint's recent waits for a "fast" round's first sample: the median, so that about half
# of calls never top up on time alone (measured against 0.6 and 0.75 on the simulator).
FAST_WAIT_QUANTILE = 0.5


def singles_for(latency: Latency | None, *, first: bool) -> bool:
    """Whether a batch goes out as single requests, so the rules can stop at each arrival.

    "fast" only. A request cancelled part-way is charged what it used only where the
    endpoint counts it (a stream, the simulator); elsewhere it is charged its worst case, so
    "balanced" (the default) never relies on cancelling: its batches go as one request with
    `n`, like "cheap"'s (`first` is kept for settings that would differ by round).
    """
    return latency == "fast"


def rounds_that_fit(remaining_seconds: float | None, seconds_per_round: float | None) -> int | None:
    """Whole rounds that fit in what is left of the deadline (None: no deadline, or no estimate yet)."""
    if remaining_seconds is None or seconds_per_round is None or seconds_per_round <= 0:
        return None
    return max(0, math.floor(remaining_seconds / seconds_per_round))


def batch_for(
    latency: Latency | None,
    *,
    least: int,
    expected: int,
    cap: int,
    first: bool,
    rounds_left: int | None = None,
) -> int:
    """The batch size of one round.

    Args:
        latency: The plan's setting (None: "cheap", the sizing of plans that do not say).
        least: The fewest samples that could let the rules stop if all agree with the leader.
        expected: The fewest that could let them stop if they split like the votes so far
            (`cap` when no batch up to it could); "balanced" asks for `BALANCED_MARGIN`
            times as many.
        cap: The most samples this round may ask for.
        first: Whether this is the call's first batch (no votes yet: `expected` is `least`).
        rounds_left: Rounds that still fit the deadline (None: no deadline or no estimate).

    Returns:
        A size between `least` and `cap` (`least` when it is above `cap`: the caps are the
        caller's to apply).
    """
    if least >= cap:
        return least
    if rounds_left is not None and rounds_left <= 1:
        return cap  # the last round the deadline allows: ask for all the rules may need
    if latency is None or latency == "cheap":
        return least
    if latency == "balanced":
        return least if first else max(least, min(math.ceil(BALANCED_MARGIN * expected), cap))
    return min(cap, FAST_OVERDRAW * least) if first else cap


class RoundClock:
    """The time one round takes on each endpoint, learned from rounds already run.

    An exponentially weighted mean (recent rounds count more: a server's load changes), kept
    per endpoint name by the controller across its calls; and, for "fast" rounds, the last
    `window` waits for a round's first sample, whose quantile times the round's top-up.
    """

    def __init__(self, weight: float = 0.3, window: int = 64) -> None:
        self.weight = weight
        self.seconds: dict[str, float] = {}
        self.window = window
        self.firsts: dict[str, collections.deque[float]] = {}

    def observe(self, endpoint: str, seconds: float) -> None:
        """Take in the wall time of one finished round on `endpoint`."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        old = self.seconds.get(endpoint)
        self.seconds[endpoint] = seconds if old is None else old + self.weight * (seconds - old)

    def observe_first(self, endpoint: str, seconds: float) -> None:
        """Take in how long a "fast" round on `endpoint` waited for its first sample."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        self.firsts.setdefault(endpoint, collections.deque(maxlen=self.window)).append(seconds)

    def first_wait(self, endpoint: str, q: float) -> float | None:
        """The q-quantile (nearest rank) of the last `window` waits for a round's first sample.

        None before any wait on `endpoint` was seen: a client's first "fast" call has no
        timed top-up.
        """
        seen = self.firsts.get(endpoint)
        if not seen:
            return None
        ordered = sorted(seen)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    def per_round(self, endpoint: str) -> float | None:
        """The expected time of one round on `endpoint` (None before any was seen)."""
        return self.seconds.get(endpoint)
