"""Where the next sample of a batch goes: the question with the highest expected gain per dollar.

`Allocator` is the pure decision half of `Client.run_many` (the I/O half draws the samples
and feeds them back with `Allocator.add`). It knows each question's votes, samples drawn and
dollars spent, and answers one question: which question's next sample is worth most?

- Every question first gets `first_round` samples (in input order), so every question has
  evidence before any gets more.
- After that a question's worth is the best, over batches of k = 1..`horizon` samples sent as
  one request, of `P(a sample votes) * expected_gain(k) / expected cost of the request`: the
  rise in P(our pick is the answer unlimited voting gives) that the controller's posterior
  (`ConsistencyPrior.expected_gain`) expects from k more samples, per dollar the request is
  expected to cost (its prompt once, plus k of this question's mean sample so far: hard
  questions have longer, dearer samples). One vote often cannot change a leader (at 3-1 one
  more never flips it) and the prompt is paid per request, so the best k may exceed 1. A
  question with no answer yet is worth what its first vote would bring, `confidence(1, 0)`,
  times the chance the next sample votes.
- A question stops (its stop rule) once the posterior is `confidence` sure of its leader,
  its best gain per sample (`expected_gain_per_sample`) is below `min_gain`, or it has
  `max_samples`.

The prior is learned from the batch itself (empirical Bayes on the questions' own vote counts,
label-free): refitted once the first round is in and then whenever the samples drawn have
grown by a tenth, so how consistent this model is on this dataset decides what a split vote
is worth. Fitting on counts that the allocation itself chose to extend is sound: the choice
depends only on votes already seen, so the likelihood ignores it (as for early stopping).

Choosing is a heap keyed by worth, not a scan: a question's worth only changes when its own
samples arrive or the prior is refitted, so each choice costs O(log n) on a dataset of n.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence

from ._exceptions import ConfigError
from ._posterior import ConsistencyPrior
from ._value import expected_gain_per_sample

__all__ = ["Allocator"]


class Allocator:
    """Pure allocation of samples across questions under one budget (see the module doc).

    Args:
        questions: How many questions (numbered 0..questions-1).
        first_round: Samples every question gets before any gets more.
        max_samples: Most samples for one question.
        confidence: A question stops once its leader is this likely the unlimited-vote answer.
        min_gain: A question stops once its next sample is expected to gain less than this.
        horizon: Largest batch the gain per sample is weighed over (`expected_gain_per_sample`).
        refit_growth: Refit the prior whenever the samples drawn grew by this share.
        prior: The prior to start from (default: uniform, AC's Beta rule); it is refitted on
            the batch's own votes, so pass a copy if it is shared.

    Raises:
        ConfigError: Bad arguments.
    """

    def __init__(
        self,
        questions: int,
        *,
        first_round: int = 2,
        max_samples: int = 16,
        confidence: float = 0.99,
        min_gain: float = 0.0005,
        horizon: int = 8,
        refit_growth: float = 0.1,
        prior: ConsistencyPrior | None = None,
    ) -> None:
        if not (1 <= first_round <= max_samples):
            raise ConfigError(f"need 1 <= first_round <= max_samples; got {first_round}, {max_samples}")
        if not (0 < confidence <= 1) or not min_gain >= 0 or not refit_growth > 0 or horizon < 1:
            raise ConfigError("need 0 < confidence <= 1, min_gain >= 0, refit_growth > 0, horizon >= 1")
        self.first_round = first_round
        self.max_samples = max_samples
        self.confidence = confidence
        self.min_gain = min_gain
        self.horizon = horizon
        self.refit_growth = refit_growth
        self.prior = prior if prior is not None else ConsistencyPrior(half_life=None)
        self.votes: list[Counter[str]] = [Counter() for _ in range(questions)]
        self.samples = [0] * questions
        self.cost = [0.0] * questions
        self.prompt_cost = [0.0] * questions  # of `cost`, what the prompts of its requests cost
        self.requests = [0] * questions
        #: Largest batch handed out (lowered to 1 by `run_many` once the budget refuses a batch).
        self.max_batch = horizon
        self.stop_reason: list[str | None] = [None] * questions
        self.busy = [False] * questions
        self._fresh = deque(range(questions))  # first rounds not handed out yet, in input order
        self._version = [0] * questions
        self._heap: list[tuple[float, int, int, int]] = []  # (-worth, question, version, k)
        self._fitted_at = 0  # total samples at the last refit (0: never fitted)
        self._started = False
        self._final: set[int] = set()  # stopped from outside: never judged again

    @property
    def total_samples(self) -> int:
        """Samples drawn over every question."""
        return sum(self.samples)

    def add(
        self, question: int, answers: Sequence[str | None], cost_usd: float, prompt_usd: float = 0.0
    ) -> None:
        """Record a request's drawn samples (None: a sample that gave no answer) and its cost.

        `prompt_usd` is the part of `cost_usd` its prompt cost (paid once per request).
        """
        self.votes[question].update(a for a in answers if a is not None)
        self.samples[question] += len(answers)
        self.cost[question] += cost_usd
        if answers:
            self.prompt_cost[question] += min(prompt_usd, cost_usd)
            self.requests[question] += 1
        self.busy[question] = False
        self._version[question] += 1
        if self._started:
            self._maybe_refit()
        self._requeue(question)

    def stop(self, question: int, reason: str) -> None:
        """Stop a question from outside (e.g. "error"): it is not sampled again."""
        self.stop_reason[question] = reason
        self._final.add(question)
        self.busy[question] = False
        self._version[question] += 1

    def release(self, question: int) -> None:
        """A handed-out question came back without samples: it may be chosen again."""
        self.busy[question] = False
        self._version[question] += 1
        self._requeue(question)

    def _requeue(self, question: int) -> None:
        if self._started:
            self._push(question)
        elif self.samples[question] < self.first_round and self.stop_reason[question] is None:
            self._fresh.appendleft(question)  # its first round is not complete: it goes first

    def worth(self, question: int) -> tuple[float, int] | None:
        """(expected confidence gain per dollar, batch size) of the question's next request.

        None: its stop rule says stop (the stop reason is then set).
        """
        if self.stop_reason[question] is not None:
            return None
        n = self.samples[question]
        room = self.max_samples - n
        if room <= 0:
            self.stop_reason[question] = "max_samples"
            return None
        counts = sorted(self.votes[question].values(), reverse=True)
        voted = sum(counts)
        # P(the next sample votes): Laplace's rule on this question's own abstentions.
        p_vote = (voted + 1) / (n + 2)
        requests = self.requests[question]
        per_request = self.prompt_cost[question] / requests if requests else 0.0
        per_sample = (self.cost[question] - self.prompt_cost[question]) / n if n else 0.0
        if not counts:
            return p_vote * self.prior.confidence(1, 0) / max(per_request + per_sample, 1e-15), 1
        v1, v2 = counts[0], counts[1] if len(counts) > 1 else 0
        if self.prior.confidence(v1, v2) >= self.confidence:
            self.stop_reason[question] = "confident"
            return None
        if p_vote * expected_gain_per_sample(self.prior, v1, v2, horizon=self.horizon) < self.min_gain:
            self.stop_reason[question] = "low_gain"
            return None
        best = (0.0, 1)
        for k in range(1, min(self.max_batch, room) + 1):
            value = p_vote * self.prior.expected_gain(v1, v2, k) / max(per_request + k * per_sample, 1e-15)
            if value > best[0]:
                best = (value, k)
        return best

    def next(self) -> tuple[int, int] | None:
        """The question to sample next and how many samples (None: nothing to hand out now).

        The question is marked busy until `add`, `release` or `stop` is called for it. None
        while questions are busy may change once they come back; None with none busy means
        every question's stop rule says stop.
        """
        while self._fresh:
            q = self._fresh.popleft()
            if self.stop_reason[q] is not None or self.busy[q]:
                continue
            if self.samples[q] >= self.first_round:
                continue  # resumed: already had its first round
            self.busy[q] = True
            return q, min(self.first_round - self.samples[q], self.max_batch)
        if not self._started:
            if any(self.busy):
                return None  # the first round is still coming in: the prior is fitted on it
            self._started = True
            self._refit()
        while self._heap:
            _, q, version, k = heapq.heappop(self._heap)
            if version != self._version[q] or self.busy[q] or self.stop_reason[q] is not None:
                continue  # stale: this question changed since it was pushed
            self.busy[q] = True
            self._version[q] += 1
            return q, min(k, self.max_batch)
        return None

    def _push(self, question: int) -> None:
        if self.busy[question]:
            return
        w = self.worth(question)
        if w is not None:
            heapq.heappush(self._heap, (-w[0], question, self._version[question], w[1]))

    def _maybe_refit(self) -> None:
        if self.total_samples >= self._fitted_at * (1 + self.refit_growth):
            self._refit()

    def _refit(self) -> None:
        """Refit the prior on every question's current top-two votes; re-weigh every question."""
        self.fit(self.votes)
        self._fitted_at = max(1, self.total_samples)
        self._heap = []
        for q in range(len(self.samples)):
            if q not in self._final and self.stop_reason[q] in ("confident", "low_gain"):
                self.stop_reason[q] = None  # judged under the old prior: judge it again
            self._version[q] += 1
            self._push(q)

    def fit(self, vote_maps: Iterable[Mapping[str, int]]) -> None:
        """Refit the prior on these questions' vote counts (replacing what it had observed)."""
        fresh = ConsistencyPrior(grid=len(self.prior.d), pseudo_count=self.prior.pseudo_count, half_life=None)
        fresh.weights = self.prior.weights.copy()  # EM starts from where it was
        for votes in vote_maps:
            top = sorted(votes.values(), reverse=True)
            if top:
                fresh.observe(top[0], top[1] if len(top) > 1 else 0)
        fresh.refit(iterations=50)
        self.prior = fresh
