"""Best-of-n: sample candidates, score each with a verifier, keep the best (or vote by score).

Each round generates a batch of candidates (through `Plan.sample`, so the controller sizes the
batch within the budget and seeds each sample), then scores every new candidate with the
verifier as soon as it arrives, in the same round (scoring is never cut short: what was paid
for gets scored). Stop rules are consulted as each answer comes in, so `score_threshold(t)`
ends the call as soon as some candidate scored at least `t`; with `one_per_request=True` that
holds also with `batch=None` (all `n` candidates in one round: the lowest latency), the
candidates still being generated then cancelled (charged what they used).

When the budget is limited, each generation batch is capped so that scoring its candidates
still fits (an estimate from the verifier's calls for a candidate of `max_tokens` tokens);
the ledger still enforces every limit exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from adaptive import (
    AnswerSpec,
    Call,
    Completion,
    Evidence,
    Final,
    Outcome,
    Plan,
    Request,
    Sampling,
    State,
    StopRule,
    StrategyRun,
    Task,
    ValidatedModel,
    budget_exhausted,
    majority_vote,
)

from ._fields import AnswerSpecField
from ._scoring import OnVerifierError, Scorer, pick, verifier_aggregation, weight_of
from .replies import Aggregation, read_score
from .verifiers import (
    LLMJudge,
    VerifierField,
    scoring_calls,
)

__all__ = ["BestOfN"]


@dataclasses.dataclass(slots=True)
class _Candidate:
    key: tuple[int, int, int]
    text: str
    answer: str | None
    submitted: bool = False  # handed to the verifier (its score may still be out)
    score: float | None = None


def _rank(c: _Candidate) -> tuple[float, tuple[int, int, int]]:
    # Highest score first; ties go to the earliest candidate.
    return (-c.score if c.score is not None else float("inf"), c.key)


class BestOfN(ValidatedModel):
    """Best-of-n with a pluggable verifier.

    Args:
        n: Candidates to generate (at most; the budget or a stop rule may end it sooner).
        verifier: A `Verifier` (`RewardModel`, `LLMJudge`, `ExactChecker`, ...), its config, or a
            function `(question, solution) -> score`. Default: `LLMJudge()`, the generation
            model judging its own candidates.
        select: "max" picks the candidate with the highest score (ties: the earliest);
            "weighted_majority" sums scores per extracted answer and picks the heaviest
            (scores below 0 count as 0).
        answer: How answers are extracted and normalized (anything `AnswerSpec.of` takes).
        sampling: Sampling parameters of the generation requests.
        batch: Candidates per generation round; None generates all `n` in one round.
        reserve_for_scoring: Under a budget, cap each batch so that its scoring still fits.
        aggregation: How per-step scores (a process reward model) become one score; None uses
            the verifier's own `aggregation` when it has one, else "last".
        on_verifier_error: When the verifier raises (a bug, not a low score): "raise" (the
            default) raises `VerifierError` before anything more is sent; "skip" leaves that
            candidate unscored and records the failure (`details["verifier_errors"]`, a warning).
        one_per_request: Ask for each candidate in its own request (each bills its prompt),
            so that each is scored as soon as it comes back and a stop rule such as
            `score_threshold` can end the call at the first good enough score, cancelling the
            candidates still being generated. False (the default) asks for a batch in one
            request with `n` where the endpoint supports it (prompt billed once; on the
            simulator also the lower latency) and scores its candidates as soon as it is back.

    Candidates the verifier could not score (unparseable judge reply, failed or refused call)
    are never picked over scored ones; if none was scored, the answer is the plain majority
    over all candidates: `details["fallback"]` gives the reason (None when no fallback was
    taken) and the result carries a warning.

    The default stop rule is `budget_exhausted()`: generate and score all `n` candidates or
    until the budget is spent. Pass `stop=score_threshold(t)` to stop at a good enough score.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    kind: ClassVar[str] = "best-of-n"

    n: int = Field(default=8, ge=1, le=4096)
    verifier: VerifierField = Field(default_factory=LLMJudge)
    select: Literal["max", "weighted_majority"] = "max"
    answer: AnswerSpecField = Field(default_factory=AnswerSpec)
    sampling: Sampling = Field(default_factory=Sampling)
    batch: int | None = Field(default=None, ge=1)
    reserve_for_scoring: bool = True
    aggregation: Aggregation | None = None
    on_verifier_error: OnVerifierError = "raise"
    one_per_request: bool = False

    @property
    def name(self) -> str:
        """Short name shown on receipts."""
        return "best-of-n"

    def start(self, task: Task) -> StrategyRun:
        """Begin one call."""
        return _BestOfNRun(self, task)

    def default_stop(self) -> StopRule | None:
        """`budget_exhausted()`: run all `n` candidates unless the budget ends first."""
        return budget_exhausted()

    def step_aggregation(self) -> Aggregation:
        """Return the aggregation of per-step scores in use."""
        return verifier_aggregation(self.verifier, self.aggregation)


class _BestOfNRun:
    def __init__(self, config: BestOfN, task: Task) -> None:
        self.cfg = config
        self.task = task
        self.how = config.step_aggregation()
        self.candidates: list[_Candidate] = []
        self.asked = 0
        self.arrivals = 0
        self.scorer: Scorer[int] = Scorer(config.verifier, task, config.on_verifier_error)
        self._scoring: tuple[Call, ...] | None = None  # what scoring one candidate takes

    # -- the protocol ----------------------------------------------------------------------
    def answer_of(self, completion: Completion) -> str | None:
        """Return the answer of a candidate: the endpoint's own, else the one in its text."""
        if completion.answer is not None:
            return completion.answer
        return self.cfg.answer.read(completion.text)

    def plan(self, state: State) -> Plan | None:
        for i in self.scorer.unfinished():
            self._settle(i)  # calls the budget refused (or a stop cancelled) never come back
        self.scorer.raise_failures()  # before anything more is sent
        new = [i for i, c in enumerate(self.candidates) if not c.submitted]
        if new:
            calls = self._scoring_calls(new)
            self.scorer.raise_failures()  # a local verifier raised just now
            if calls:
                return Plan(calls=tuple(calls), stoppable=False, note=f"score {len(new)} candidate(s)")
        left = self.cfg.n - len(self.candidates)
        if left <= 0 or self.asked >= 2 * self.cfg.n:  # the second cap: endpoints that keep failing
            return None
        k = left if self.cfg.batch is None else min(left, self.cfg.batch)
        request = self.task.request(self.cfg.sampling)
        if self.cfg.reserve_for_scoring:
            fit = self._fits(state, request)
            if fit is not None:
                if fit < 1 and self.candidates:
                    return None  # another candidate could not be scored: stop here
                k = max(1, min(k, fit))
        # Candidates are scored as soon as they arrive (`follow_up`); with one per request a
        # stop rule (score_threshold) can end the call at the first good enough score.
        return Plan(
            sample=request,
            min_batch=1,
            max_batch=k,
            singles=self.cfg.one_per_request,
            note=f"generate up to {k} candidate(s)",
        )

    def follow_up(self, outcome: Outcome) -> tuple[Call, ...]:
        """Score the candidates `outcome` brought, in the round that generated them."""
        if outcome.call.purpose != "generate" or outcome.response is None:
            return ()
        if self.scorer.failures and self.cfg.on_verifier_error == "raise":
            return ()  # the next plan raises it before anything more is sent
        new = [i for i, c in enumerate(self.candidates) if not c.submitted]
        return tuple(self._scoring_calls(new)) if new else ()

    def observe(self, outcome: Outcome) -> None:
        call = outcome.call
        if call.purpose == "generate":
            self.asked += call.request.n
            if outcome.response is None:
                return
            seed = call.request.seed
            for comp in outcome.response.completions:
                self.arrivals += 1
                order = seed if seed is not None else self.arrivals
                self._add(comp, (outcome.round, order, comp.index))
            return
        done = self.scorer.observe(outcome)
        if done is not None:
            self._settle(done)

    def evidence(self) -> Evidence:
        ordered = self._ordered()
        return Evidence.tally(
            [c.answer for c in ordered],
            [weight_of(c.score) if c.score is not None else None for c in ordered],
            scores=[c.score for c in ordered if c.score is not None],
        )

    def finish(self, state: State) -> Final:
        self.scorer.raise_failures()  # one that came back in the last round
        ordered = self._ordered()
        scored = [c for c in ordered if c.score is not None]
        details: dict[str, Any] = {
            "verifier": self.cfg.verifier.name,
            "select": self.cfg.select,
            "candidates": len(ordered),
            "scored": len(scored),
            "scores": [c.score for c in ordered],
            "answers": [c.answer for c in ordered],
            "fallback": None,
        }
        warnings = self.scorer.report("best-of-n", details)
        if not scored:
            if not ordered:
                return Final(answer=None, details=details, warnings=warnings)
            vote = majority_vote([c.answer for c in ordered])
            chosen = next((c for c in ordered if c.answer == vote.winner), ordered[0])
            details["fallback"] = (
                f"majority: verifier {self.cfg.verifier.name!r} scored none of the {len(ordered)} "
                "candidates (unparseable replies, failed or refused calls, or errors)"
            )
            warnings += (
                f"best-of-n: {details['fallback']}, so the answer is their plain majority vote, not "
                "the best-scored one: use a verifier that can score them (LLMJudge on a stronger "
                "endpoint, a RewardModel, a function)",
            )
            return Final(answer=vote.winner, text=chosen.text, details=details, warnings=warnings)
        best, confidence = pick(scored, self.cfg.select, _rank, details)
        return Final(
            answer=best.answer, text=best.text, confidence=confidence, details=details, warnings=warnings
        )

    # -- helpers ---------------------------------------------------------------------------
    def _ordered(self) -> list[_Candidate]:
        # Decisions never depend on arrival order: candidates are ranked by (round, seed, index).
        return sorted(self.candidates, key=lambda c: c.key)

    def _add(self, comp: Completion, key: tuple[int, int, int]) -> None:
        self.candidates.append(_Candidate(key=key, text=comp.text, answer=self.answer_of(comp)))

    def _scoring_calls(self, indices: list[int]) -> list[Call]:
        calls: list[Call] = []
        # Score in candidate order so that a budget refusal hits the latest ones.
        for i in sorted(indices, key=lambda j: self.candidates[j].key):
            c = self.candidates[i]
            c.submitted = True
            local, verify_calls = self.scorer.submit(i, c.text, index=self._index(c))
            if verify_calls:
                calls.extend(verify_calls)
            else:
                c.score = read_score(local, self.how)
        return calls

    def _index(self, c: _Candidate) -> int | None:
        """The candidate's sample index in the call (from its seed), for its verifier seeds.

        Scored as they arrive, candidates would otherwise take verifier seeds in arrival
        order; by index, a seeded call scores alike however its requests come back.
        """
        if self.task.seed is None:
            return None
        _, seed, within = c.key
        index = seed - self.task.seed + within
        return index if index >= 0 else None  # not seeded by the controller: by submission

    def _settle(self, i: int) -> None:
        self.candidates[i].score = read_score(self.scorer.finish(i), self.how)

    def _fits(self, state: State, request: Request) -> int | None:
        """How many candidates, each generated alone and then scored, the budget still holds."""
        if self._scoring is None:
            size = Task.candidate_bytes(request.max_tokens)
            self._scoring = scoring_calls(self.cfg.verifier, self.task.question, size)
        work = [(Call(request=request), self._scoring)]
        return self.task.affordable(state, work)
