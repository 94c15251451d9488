"""Scoring candidates with a verifier and picking one by score (best-of-n, tree searches).

`Scorer` sends the verifier's calls for each candidate (tagged `("verify", key, j)`, seeded
one after another from the task's seed) and reads their responses back into a score; `pick`
chooses the answer from scored candidates, by best score or by score-weighted vote.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, Literal, Protocol, TypeVar, cast

from adaptive import Call, Outcome, Response, Task, weighted_vote

from .replies import Aggregation, ScoreValue
from .verifiers import Verification, Verifier, VerifierError

#: What a strategy does when its verifier raises: raise `VerifierError` (the default), or
#: leave the candidate unscored and record the failure on the result.
OnVerifierError = Literal["raise", "skip"]

__all__: list[str] = []


def weight_of(score: float) -> float:
    """Turn a score into a vote weight: scores below 0 count as 0."""
    return max(score, 0.0)


def verifier_aggregation(verifier: Verifier, chosen: Aggregation | None) -> Aggregation:
    """Return the aggregation of per-step scores: `chosen`, else the verifier's own, else "last"."""
    if chosen is not None:
        return chosen
    own = getattr(verifier, "aggregation", None)
    return own if own in ("last", "min", "product", "mean") else "last"


_K = TypeVar("_K", bound=Hashable)


@dataclasses.dataclass(slots=True)
class _Pending:
    verification: Verification
    responses: list[Response | None]
    outstanding: int


class Scorer(Generic[_K]):
    """Asks a verifier about candidates and collects the replies to its calls.

    Candidates are named by any hashable key. The n-th candidate submitted gets seed
    `task.seed + n` for the verifier's calls (None without a task seed).
    """

    def __init__(self, verifier: Verifier, task: Task, on_error: OnVerifierError = "raise") -> None:
        self.verifier = verifier
        self.task = task
        self.on_error = on_error
        self.submitted = 0
        self._pending: dict[_K, _Pending] = {}
        # Candidates the verifier raised on: {"candidate": key, "error": "Type: message"}.
        self.failures: list[dict[str, Any]] = []

    def submit(
        self, key: _K, solution: str, *, steps: Sequence[str] | None = None, index: int | None = None
    ) -> tuple[ScoreValue, list[Call]]:
        """Ask for the score of one candidate.

        `index` seeds the verifier's calls `task.seed + index` instead of by submission
        order: candidates submitted as they arrive are then scored alike in any arrival order.

        Returns:
            `(score, [])` when the verifier scored it locally; otherwise `(None, calls)`, the
            calls to send, whose responses go to `observe` and whose score `finish` gives.
        """
        order = self.submitted if index is None else index
        seed = None if self.task.seed is None else self.task.seed + order
        self.submitted += 1
        v = self.verifier.verification(self.task.question, solution, steps=steps, seed=seed)
        if not v.calls:
            score, error = v.outcome([])
            if error is not None:
                self.failures.append({"candidate": key, "error": error})
            return score, []
        self._pending[key] = _Pending(v, [None] * len(v.calls), len(v.calls))
        tagged = [
            dataclasses.replace(c, purpose="verify", tag=("verify", key, j)) for j, c in enumerate(v.calls)
        ]
        return None, tagged

    def observe(self, outcome: Outcome) -> _K | None:
        """Record a verify call's response; return its candidate's key once all are in."""
        tag = outcome.call.tag
        if not (isinstance(tag, tuple) and len(tag) == 3 and tag[0] == "verify"):
            return None
        key = cast(_K, tag[1])  # only this scorer's calls carry a "verify" tag
        pending = self._pending.get(key)
        if pending is None:  # already finished (a late reply after a refusal was settled)
            return None
        pending.responses[tag[2]] = outcome.response
        pending.outstanding -= 1
        return key if pending.outstanding == 0 else None

    def unfinished(self) -> list[_K]:
        """Return the keys of candidates with calls still out (or refused by the budget)."""
        return list(self._pending)

    def finish(self, key: _K) -> ScoreValue:
        """Return a candidate's score from the responses so far (missing ones count as None)."""
        pending = self._pending.pop(key)
        score, error = pending.verification.outcome(pending.responses)
        if error is not None:
            self.failures.append({"candidate": key, "error": error})
        return score

    def raise_failures(self) -> None:
        """Raise `VerifierError` if the verifier raised and `on_error` is "raise".

        Strategies call it from `plan` (where the controller attaches the receipt to the
        error) and from `finish`, for a failure that came back in the last round.
        """
        if not self.failures or self.on_error != "raise":
            return
        first = self.failures[0]
        more = f" (and on {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        raise VerifierError(
            f"verifier {self.verifier.name!r} raised on candidate {first['candidate']!r}{more}: "
            f"{first['error']}; fix the verifier, or pass on_verifier_error='skip' to leave such "
            "candidates unscored (recorded in details['verifier_errors'] and as a warning)",
            verifier=self.verifier.name,
            failures=self.failures,
        )

    def report(self, strategy: str, details: dict[str, Any]) -> tuple[str, ...]:
        """Put the failures (skipped ones) in `details["verifier_errors"]`; return the warnings."""
        details["verifier_errors"] = list(self.failures)
        if not self.failures:
            return ()
        return (
            f"{strategy}: verifier {self.verifier.name!r} raised on {len(self.failures)} "
            f"candidate(s) (first: {self.failures[0]['error']}); they were left unscored "
            "(on_verifier_error='skip')",
        )


class Scored(Protocol):
    """A candidate that `pick` can choose: its answer and its (aggregated) score."""

    @property
    def answer(self) -> str | None: ...

    @property
    def score(self) -> float | None: ...


_C = TypeVar("_C", bound=Scored)


def pick(
    candidates: Sequence[_C],
    select: Literal["best", "max", "weighted_majority"],
    rank: Callable[[_C], Any],
    details: dict[str, Any],
) -> tuple[_C, float | None]:
    """Choose among scored candidates; return the choice and the confidence in it.

    "best" / "max": the first by `rank` (lowest first), preferring candidates that give an
    answer. "weighted_majority": the best-ranked candidate of the answer with the largest sum
    of `weight_of(score)` (the confidence is its share), falling back on "best" when nothing
    has weight. Otherwise the confidence is the best score when it lies in [0, 1].
    `details` receives "best_score" (and "weights" for a weighted vote).
    """
    best = min([c for c in candidates if c.answer is not None] or candidates, key=rank)
    confidence: float | None = None
    if select == "weighted_majority":
        vote = weighted_vote([c.answer for c in candidates], [weight_of(c.score or 0.0) for c in candidates])
        if vote.winner is not None:
            best = min((c for c in candidates if c.answer == vote.winner), key=rank)
            confidence = vote.share
            details["weights"] = dict(vote.tally.weights)
    elif best.score is not None and 0.0 <= best.score <= 1.0:
        confidence = best.score
    details["best_score"] = best.score
    return best, confidence
