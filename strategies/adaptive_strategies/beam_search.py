r"""Step-level search guided by a process reward model: beam search and DVTS.

A solution is built one step at a time (steps end at `step_delimiter`, a blank line by
default). Each round is one sequential round of requests:

1. **Expand**: every kept beam asks for its next steps in one request
   (`n = candidates / width`; the first round expands the question `candidates` times) with
   `stop=[step_delimiter]`, either by raw continuation on a completions endpoint
   (`Request(prompt=template(question) + partial)`, needs `endpoint.supports_raw`) or by
   continuing a chat answer (`Request(messages=..., prefill=partial)`, needs
   `endpoint.supports_prefill`). `mode="auto"` prefers prefill (the
   chat template stays intact), then raw.
2. **Score**, in the same round (`follow_up`, as best-of-n scores each candidate as it
   arrives): the new partial solutions of an expansion are sent to the PRM as soon as that
   expansion (and every one planned before it) is back, so their order, and with it the
   PRM's seeds and which of two identical continuations is scored, is the same however the
   expansions come back. With `reserve_for_scoring=False` (no budget held back for scoring)
   they are sent once every expansion of the round is back, so that they meet the budget a
   separate scoring round would. A beam keeps its per-step scores and aggregates them
   ("last", "min", "product" or "mean"). A PRM that returns one score per call scores the
   newest step; one that returns a score per step replaces the beam's list. What was paid
   for gets scored: steps whose expansion came back are scored even when a stop rule ends
   the call part-way through the round. Steps behind an expansion that never came back (the
   budget or `max_samples` refused it), or whose every scoring call the budget refused, are
   sent for scoring in a round of their own before pruning (if the budget refuses all of
   them again, the call stops there, as it did when steps were always scored that way).
3. **Prune**: the new candidates are ranked by aggregated score (ties: request order, then
   completion index) and the top `width` are kept; kept candidates that are finished leave
   the beam, the others are expanded next round.

A candidate is finished when a new step holds a final answer (`finish_marker`: `\\boxed{}`,
`####` or "the answer is" by default), when the model adds nothing (an empty step), or at
`max_depth` steps. Every finished candidate, kept or not, joins the pool of finished
solutions (it is already paid for). Identical continuations of the same beam are scored once.

The answer is the best finished solution by aggregated score (`select="best"`; solutions with
no extractable answer only when no other finished), or the
score-weighted vote over finished solutions (`select="weighted_majority"`, scores below 0
count as 0). Stop rules are consulted before each round and as each expansion and score
comes in: a stop part-way through a round cancels the expansions still out (charged what
they used) while the steps that came back are still scored; a round that ran to its end is
pruned as if the rules had stopped the call after it. If the search stops before anything
finished, the best-scored partial solution is answered (`details["finished"]` is False).

Never silently empty-handed: when the PRM scores none of a subtree's candidates in a round
(an unparseable judge reply, failed or refused calls), the search keeps them in generation
order instead of dropping them all; if no finished solution was ever scored, the answer is
the plain majority over the finished ones (or the first partial one). Either way
`details["fallback"]` gives the reason (None when no fallback was taken), `details["beams"]`
marks the rounds, and the result carries a warning. A round whose every PRM call failed
ends the call with the first call's error (a PRM endpoint that is down). A PRM that raises
is `VerifierError` (no more steps are sent for scoring once it has; the expansions already
out finish, are charged and are on the error's receipt), or with
`on_verifier_error="skip"` an unscored candidate recorded in `details["verifier_errors"]`.

`DVTS` (diverse verifier tree search) runs `subtrees` independent searches of width 1, each
expanding `width` candidates per round from its own PRM-best path; each subtree contributes
its best finished leaf and the answer is the score-weighted vote over the leaves.

Known limitation: Anthropic trims trailing whitespace from a prefill, so with a whitespace
delimiter ("\\n\\n") the model may re-emit the delimiter first and return an empty step (read
as "finished"); use raw mode or a delimiter that is not only whitespace there.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from adaptive import (
    AnswerSpec,
    Call,
    Completion,
    ConfigError,
    Evidence,
    Extractor,
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
    extractor_from_config,
    majority_vote,
)

from ._fields import AnswerSpecField, ExtractorField
from ._scoring import OnVerifierError, Scorer, pick, verifier_aggregation, weight_of
from .replies import Aggregation, ScoreValue, aggregate_steps
from .verifiers import (
    LLMJudge,
    VerifierField,
    scoring_calls,
)

__all__ = ["DVTS", "BeamSearch", "default_finish_marker"]

Key = tuple[int, int, int]


def default_finish_marker() -> Extractor:
    r"""Return the default finish marker: `\boxed{}`, then `####`, then "the answer is".

    These are the signs that a step gives the final answer (unlike `LastNumber`, which any
    arithmetic step would satisfy).
    """
    return extractor_from_config({"name": "first-of", "extractors": ["boxed", "after-marker", "answer-is"]})


@dataclasses.dataclass(slots=True)
class _Node:
    key: Key
    group: int
    steps: tuple[str, ...]
    history: tuple[float, ...]
    finished: bool = False
    answer: str | None = None
    new_steps: int = 0
    score: float | None = None
    done: bool = False

    @property
    def depth(self) -> int:
        return len(self.steps)


class _TreeSearch(ValidatedModel):
    """Settings shared by `BeamSearch` and `DVTS`."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    prm: VerifierField = Field(default_factory=LLMJudge)
    max_depth: int = Field(default=20, ge=1, le=1000)
    step_delimiter: str = Field(default="\n\n", min_length=1)
    aggregation: Aggregation | None = None
    mode: Literal["raw", "prefill", "auto"] = "auto"
    raw_template: str = "{question}\n\n"
    answer: AnswerSpecField = Field(default_factory=AnswerSpec)
    finish_marker: ExtractorField = Field(default_factory=default_finish_marker)
    sampling: Sampling = Field(default_factory=lambda: Sampling(max_tokens=512))
    reserve_for_scoring: bool = True
    on_verifier_error: OnVerifierError = "raise"

    @field_validator("raw_template")
    @classmethod
    def _template(cls, v: str) -> str:
        if "{question}" not in v:
            raise ValueError("raw_template must contain {question}")
        return v

    @model_validator(mode="after")
    def _template_applies(self) -> Self:
        if self.mode == "prefill" and "raw_template" in self.model_fields_set:
            raise ValueError(
                "raw_template is the prompt of mode='raw' and a prefill request has none: drop "
                "raw_template, or use mode='raw' (a completions endpoint) or 'auto'"
            )
        return self

    def step_aggregation(self) -> Aggregation:
        """Return the aggregation of per-step scores in use (the PRM's own when not set)."""
        return verifier_aggregation(self.prm, self.aggregation)

    def resolve_mode(self, task: Task) -> Literal["raw", "prefill"]:
        """Pick the continuation mode for this task's endpoint.

        Raises:
            ConfigError: The endpoint supports neither raw prompts nor prefill (or not the
                mode asked for).
        """
        ep = task.endpoint
        if self.mode == "raw" and not ep.supports_raw:
            raise ConfigError(
                f"mode='raw' needs a completions endpoint that accepts raw prompts; {ep.name} does "
                "not (supports_raw is False): use mode='prefill' or 'auto', or a completions endpoint"
            )
        if self.mode == "prefill" and not ep.supports_prefill:
            raise ConfigError(
                f"mode='prefill' needs a chat endpoint that continues an assistant prefill; {ep.name} "
                "does not (supports_prefill is False): use mode='raw' or 'auto'"
            )
        if self.mode != "auto":
            return self.mode
        if "raw_template" in self.model_fields_set:
            # A template given is a request for raw mode: prefill would silently ignore it.
            if ep.supports_raw:
                return "raw"
            raise ConfigError(
                f"raw_template is the prompt of raw mode, but {ep.name} does not accept raw prompts "
                "(supports_raw is False) and prefill mode has no template: drop raw_template, or "
                "use a completions endpoint"
            )
        if ep.supports_prefill:
            return "prefill"
        if ep.supports_raw:
            return "raw"
        raise ConfigError(
            f"step-level search must continue a partial solution, but {ep.name} supports neither "
            "raw prompts (supports_raw) nor assistant prefill (supports_prefill): use a completions "
            "endpoint, a chat endpoint with prefill, or a strategy such as BestOfN"
        )

    def default_stop(self) -> StopRule | None:
        """`budget_exhausted()`: search until done or the budget is spent."""
        return budget_exhausted()


class BeamSearch(_TreeSearch):
    """Verifier-guided step-level beam search.

    Args:
        width: Beams kept after each round (w).
        candidates: Candidates generated per round (N); each kept beam is expanded N / w
            times. Must be a multiple of `width`.
        max_depth: Steps at most; a candidate reaching it is finished.
        step_delimiter: What ends a step (sent as a stop sequence).
        aggregation: "last" | "min" | "product" | "mean" over a beam's step scores; None uses
            the PRM's own (`ProcessRewardModel.aggregation`), else "last".
        prm: The verifier that scores partial solutions (a `ProcessRewardModel`, or any
            `Verifier`, whose single score is taken as the newest step's), its config, or a
            function `(question, solution) -> score`. Default: `LLMJudge()`, the generation
            model rating each partial solution.
        mode: "raw" (completions endpoint), "prefill" (chat endpoint) or "auto".
        raw_template: The raw prompt before the partial solution; `{question}` is replaced.
            Given, it selects raw mode under mode="auto" (a ConfigError on an endpoint without
            raw prompts, and with mode="prefill"), since prefill requests have no template.
        answer: How the final answer is extracted and normalized.
        finish_marker: Extractor telling that a step gives the final answer.
        select: "best" (highest aggregated score) or "weighted_majority" over finished beams.
        sampling: Sampling of the step requests (`max_tokens` is per step).
        reserve_for_scoring: Under a budget, expand only the beams whose new steps can also
            be scored (an estimate; the ledger enforces the limits exactly).
        on_verifier_error: When the PRM raises (a bug, not a low score): "raise" (default)
            raises `VerifierError` before anything more is sent; "skip" leaves the candidate
            unscored and records it (`details["verifier_errors"]`, a warning).
    """

    kind: ClassVar[str] = "beam-search"
    width: int = Field(default=4, ge=1, le=128)
    candidates: int = Field(default=16, ge=1, le=1024)
    select: Literal["best", "weighted_majority"] = "best"

    @model_validator(mode="after")
    def _divisible(self) -> BeamSearch:
        if self.candidates % self.width:
            raise ValueError(
                f"candidates ({self.candidates}) must be a multiple of width ({self.width}): each beam "
                "is expanded candidates / width times"
            )
        if self.candidates // self.width > 128:
            raise ValueError("candidates / width must be at most 128 (the largest n of one request)")
        return self

    @property
    def name(self) -> str:
        """Short name shown on receipts."""
        return "beam-search"

    def start(self, task: Task) -> StrategyRun:
        """Begin one call."""
        return _TreeRun(
            self,
            task,
            groups=1,
            keep=self.width,
            expand=self.candidates // self.width,
            select=self.select,
            leaves=False,
        )


class DVTS(_TreeSearch):
    """Diverse verifier tree search: independent greedy subtrees, then a weighted vote.

    Args:
        subtrees: Independent subtrees (M).
        width: Candidates per subtree per round (N / M); the best one by aggregated score is
            kept and expanded next. Each subtree's best finished leaf votes.
        select: "weighted_majority" (default, score-weighted vote over the leaves) or "best"
            (the best-scored leaf).
        Other arguments: as for `BeamSearch`. Diversity comes from sampling: use a
            temperature above 0.
    """

    kind: ClassVar[str] = "dvts"
    subtrees: int = Field(default=4, ge=1, le=256)
    width: int = Field(default=4, ge=1, le=128)
    select: Literal["best", "weighted_majority"] = "weighted_majority"

    @property
    def name(self) -> str:
        """Short name shown on receipts."""
        return "dvts"

    def start(self, task: Task) -> StrategyRun:
        """Begin one call."""
        return _TreeRun(
            self, task, groups=self.subtrees, keep=1, expand=self.width, select=self.select, leaves=True
        )


class _TreeRun:
    """One tree search: `groups` independent searches, each keeping `keep` beams."""

    def __init__(
        self,
        cfg: _TreeSearch,
        task: Task,
        *,
        groups: int,
        keep: int,
        expand: int,
        select: Literal["best", "weighted_majority"],
        leaves: bool,
    ) -> None:
        self.cfg = cfg
        self.task = task
        self.mode = cfg.resolve_mode(task)
        self.how = cfg.step_aggregation()
        self.keep = keep
        self.expand = expand
        self.select = select
        self.leaves = leaves
        self.delimiter = cfg.step_delimiter
        stops = (self.delimiter, *(cfg.sampling.stop or ()))
        self.stops = tuple(dict.fromkeys(stops))[:16]
        root = _Node(key=(-1, 0, 0), group=0, steps=(), history=())
        self.active: list[list[_Node]] = [[dataclasses.replace(root, group=g)] for g in range(groups)]
        self.pool: list[_Node] = []
        self.children: dict[Key, _Node] = {}
        self.parents: dict[int, _Node] = {}
        self.phase: Literal["expand", "expanded", "score"] = "expand"
        self.round = 0
        self.seed_offset = 0
        self.generated = 0
        self.scorer: Scorer[Key] = Scorer(cfg.prm, task, cfg.on_verifier_error)
        # This round's expansions: how many were planned, which came back (in any way), and
        # the first position whose children are not submitted for scoring yet. Children are
        # submitted in position order, so that they are deduplicated and seeded exactly as if
        # all of them were scored after the round, however the expansions come back.
        self.planned = 0
        self.arrived: set[int] = set()
        self.cursor = 0
        self.seen: set[tuple[int, tuple[str, ...]]] = set()  # (group, steps) submitted this round
        # PRM calls sent for scoring in this round, those that came back, and the errors
        # among them.
        self.scoring: list[Call] = []
        self.verified = 0
        self.verify_errors: list[BaseException] = []
        self.cut = False  # a call of this round was cancelled (a stop rule, the deadline)
        self.log: list[dict[str, Any]] = []
        self.last_kept: list[_Node] = []
        self.unscored_rounds: list[tuple[int, int]] = []  # (round, group) kept unscored
        self.label = "dvts" if leaves else "beam-search"  # for warnings

    # -- the protocol ----------------------------------------------------------------------
    def answer_of(self, completion: Completion) -> str | None:
        """Return the answer in an expansion, for the receipt: the endpoint's own, else its text's."""
        if completion.answer is not None:
            return completion.answer
        return self.cfg.answer.read(completion.text)

    def plan(self, state: State) -> Plan | None:
        if self.phase == "expanded" and self.scoring and not self.verified:
            # The budget refused every scoring call of the round: asked again in a round of
            # their own, they meet what a separate scoring round would (the call stops for the
            # budget, the round unpruned, if they are refused again).
            calls = [*self.scoring, *self._release(self.planned)]
            self.scoring = []
            self.phase = "score"
            return Plan(
                calls=tuple(calls), stoppable=False, note=f"score the steps left ({len(calls)} PRM call(s))"
            )
        if self.phase != "expand":
            for key in self.scorer.unfinished():
                self._settle(key)  # calls the budget refused never come back
            self.scorer.raise_failures()  # before anything more is sent
            self._raise_if_prm_failed()
            if self.phase == "expanded":
                # Children not scored in the round: behind an expansion that never came back
                # (refused by the budget or max_samples), or expanded by a run without
                # follow-ups (a wrapper that only forwards the protocol's methods).
                calls = self._release(self.planned)
                self.scorer.raise_failures()  # a local verifier raised just now
                if calls:
                    self.phase = "score"
                    return Plan(
                        calls=tuple(calls),
                        stoppable=False,
                        note=f"score the steps left ({len(calls)} PRM call(s))",
                    )
            self._prune()
        return self._expansion(state)

    def follow_up(self, outcome: Outcome) -> tuple[Call, ...]:
        """Score the new steps `outcome` brought, in the round that expanded them."""
        tag = outcome.call.tag
        if not (isinstance(tag, tuple) and len(tag) == 3 and tag[0] == "expand"):
            return ()
        if self.scorer.failures and self.cfg.on_verifier_error == "raise":
            return ()  # the next plan raises it before anything more is sent
        if not self.cfg.reserve_for_scoring:
            # No budget is held back for scoring: it starts once every expansion of the round
            # is back and booked, so the scoring calls meet the budget a round of their own
            # would (none is refused for an expansion's worst case still being held).
            return tuple(self._release(self.planned)) if len(self.arrived) == self.planned else ()
        # Only up to the first expansion still out: children are submitted in position order.
        end = self.cursor
        while end < self.planned and end in self.arrived:
            end += 1
        return tuple(self._release(end))

    def observe(self, outcome: Outcome) -> None:
        tag = outcome.call.tag
        if not isinstance(tag, tuple) or len(tag) != 3:
            return
        if tag[0] == "expand":
            self.generated += outcome.call.request.n
            self.arrived.add(tag[1])  # answered, failed or cancelled: nothing more will come
            self.cut |= outcome.cancelled
            if outcome.response is not None:
                parent = self.parents[tag[1]]
                for comp in outcome.response.completions:
                    self._child(parent, comp.text, (self.round, tag[2], comp.index))
        else:
            if self.phase == "expanded":
                self.verified += 1
                self.cut |= outcome.cancelled
                if outcome.error is not None:
                    self.verify_errors.append(outcome.error)
            done = self.scorer.observe(outcome)
            if done is not None:
                self._settle(done)

    def evidence(self) -> Evidence:
        finals = self._finals()
        return Evidence.tally(
            [n.answer for n in finals],
            [weight_of(n.score or 0.0) for n in finals],
            scores=[n.score for n in finals if n.score is not None],
            samples=self.generated,
        )

    def finish(self, state: State) -> Final:
        self.scorer.raise_failures()  # one that came back in the last round
        if self.phase == "expanded" and not self.cut and len(self.arrived) == self.planned:
            # The rules stopped the call in a round that still ran to its end (nothing was
            # cancelled): it is pruned, as the next plan would have done, so the answer and
            # details are those of a stop between rounds.
            for key in self.scorer.unfinished():
                self._settle(key)  # calls the budget refused never come back
            self.scorer.raise_failures()
            self._raise_if_prm_failed()
            self._prune()
        finals = self._finals()
        details: dict[str, Any] = {
            "mode": self.mode,
            "prm": self.cfg.prm.name,
            "aggregation": self.how,
            "select": self.select,
            "rounds": self.round,
            "finished": bool(finals),
            "solutions": [
                {"answer": n.answer, "score": n.score, "depth": n.depth, "group": n.group} for n in finals
            ],
            "beams": self.log,
            "fallback": None,
        }
        warnings = list(self.scorer.report(self.label, details))
        reasons: list[str] = []
        if self.unscored_rounds:
            reasons.append(
                f"in {len({r for r, _ in self.unscored_rounds})} round(s) the PRM "
                f"{self.cfg.prm.name!r} scored none of a subtree's candidates "
                f"({len(self.unscored_rounds)} subtree-round(s): unparseable replies, failed or "
                "refused calls, or errors), so they were kept in generation order"
            )
        if not finals:
            # Stopped before anything finished: answer from the best partial solution.
            partial = [n for g in self.active for n in g if n.steps]
            partial += [n for n in self.last_kept if n.steps]
            scored = [n for n in partial if n.score is not None]
            if not scored and partial:
                reasons.append("no partial solution was scored, so the first one generated is answered")
            if not partial:
                return self._final(None, None, None, details, reasons, warnings)
            best = min(scored or partial, key=self._rank if scored else lambda n: n.key)
            text = self._text(best.steps)
            details["best_score"] = best.score
            return self._final(self.cfg.answer.read(text), text, None, details, reasons, warnings)
        if all(n.score is None for n in finals):
            vote = majority_vote([n.answer for n in finals])
            chosen = next((n for n in finals if n.answer == vote.winner), finals[0])
            reasons.append("no finished solution was scored, so the answer is their plain majority vote")
            text = self._text(chosen.steps)
            return self._final(vote.winner, text, None, details, reasons, warnings)
        # A solution that gives an answer beats a better-scored one that gives none.
        best, confidence = pick(finals, self.select, self._rank, details)
        return self._final(best.answer, self._text(best.steps), confidence, details, reasons, warnings)

    def _final(
        self,
        answer: str | None,
        text: str | None,
        confidence: float | None,
        details: dict[str, Any],
        reasons: list[str],
        warnings: list[str],
    ) -> Final:
        if reasons:
            details["fallback"] = "; ".join(reasons)
            warnings.append(
                f"{self.label}: {details['fallback']}: use a PRM or judge that can score these "
                "candidates (a ProcessRewardModel, an LLMJudge on a stronger endpoint, a function)"
            )
        return Final(
            answer=answer, text=text, confidence=confidence, details=details, warnings=tuple(warnings)
        )

    # -- building requests -----------------------------------------------------------------
    def _text(self, steps: tuple[str, ...]) -> str:
        return self.delimiter.join(steps)

    def _partial(self, steps: tuple[str, ...]) -> str:
        return self._text(steps) + self.delimiter if steps else ""

    def _request(self, node: _Node) -> Request:
        # The root stands for all `keep` beams of its tree: it gets their expansions at once.
        n = min(128, self.expand * (self.keep if not node.steps else 1))
        seed = None if self.task.seed is None else self.task.seed + self.seed_offset
        self.seed_offset += n
        partial = self._partial(node.steps)
        changes: dict[str, Any] = {"n": n, "stop": self.stops, "seed": seed}
        if self.mode == "raw":
            changes["prompt"] = self.cfg.raw_template.replace("{question}", self.task.question) + partial
        else:
            changes["prefill"] = partial or None
        return self.task.request(self.cfg.sampling, **changes)

    def _expansion(self, state: State) -> Plan | None:
        # Best beams first, subtrees interleaved, so a budget refusal drops the weakest.
        beams = [
            beam for rank in range(self.keep) for group in self.active for beam in group[rank : rank + 1]
        ]
        if not beams:
            return None
        calls: list[Call] = []
        work: list[tuple[Call, tuple[Call, ...]]] = []  # each expansion and its steps' scoring
        self.parents = {}
        for position, beam in enumerate(beams):
            call = Call(request=self._request(beam), purpose="generate", tag=("expand", position, position))
            if self.cfg.reserve_for_scoring:
                size = Task.candidate_bytes(call.request.max_tokens, self._partial(beam.steps))
                work.append((call, scoring_calls(self.cfg.prm, self.task.question, size)))
                fit = self.task.affordable(state, work)
                if fit is not None and fit < 1:
                    break  # the weakest beams go: what is expanded can still be scored
            self.parents[position] = beam
            calls.append(call)
        if not calls:
            return None
        self.children = {}
        self.planned, self.arrived, self.cursor, self.seen = len(calls), set(), 0, set()
        self.scoring, self.verified, self.verify_errors, self.cut = [], 0, [], False
        self.phase = "expanded"
        return Plan(
            calls=tuple(calls),
            stoppable=True,
            note=f"round {self.round}: expand {len(calls)} beam(s) x {self.expand}",
        )

    # -- reading steps -----------------------------------------------------------------------
    def _child(self, parent: _Node, text: str, key: Key) -> None:
        parts = [p.strip() for p in text.split(self.delimiter)]
        new = [p for p in parts if p]
        if not new and not parent.steps:
            return  # nothing written at all: no candidate
        finished = not new
        for i, step in enumerate(new):
            if self.cfg.finish_marker.extract(step) is not None:
                new, finished = new[: i + 1], True  # anything after the answer is noise
                break
        steps = (*parent.steps, *new)
        if len(steps) >= self.cfg.max_depth:
            steps, finished = steps[: self.cfg.max_depth], True
        node = _Node(
            key=key,
            group=parent.group,
            steps=steps,
            history=parent.history,
            finished=finished,
            new_steps=len(steps) - len(parent.steps),
            score=parent.score,
        )
        if finished:
            node.answer = self.cfg.answer.read(self._text(steps))
        self.children[key] = node

    def _release(self, end: int) -> list[Call]:
        """Submit for scoring the children of positions `cursor` to `end`, in key order."""
        calls: list[Call] = []
        keys = sorted(k for k in self.children if self.cursor <= k[1] < end)
        self.cursor = max(self.cursor, end)
        for key in keys:
            node = self.children[key]
            ident = (node.group, node.steps)
            if ident in self.seen:  # the same continuation twice: score it once
                del self.children[key]
                continue
            self.seen.add(ident)
            if node.new_steps == 0:
                node.done = True  # nothing new to score: it keeps its parent's scores
                continue
            local, verify_calls = self.scorer.submit(key, self._text(node.steps), steps=node.steps)
            if verify_calls:
                calls.extend(verify_calls)
            else:
                self._apply(node, local)
        if self.phase == "expanded":
            self.scoring.extend(calls)
        return calls

    def _raise_if_prm_failed(self) -> None:
        """A round whose every PRM call failed ends the call with the first error.

        As when the steps were scored in a round of their own (the controller ends a call on
        a round whose every call failed): a PRM endpoint that is down is an error, not a
        search that goes on unscored.
        """
        if self.verified and len(self.verify_errors) == self.verified:
            raise self.verify_errors[0]

    def _settle(self, key: Key) -> None:
        self._apply(self.children[key], self.scorer.finish(key))

    def _apply(self, node: _Node, value: ScoreValue) -> None:
        node.done = True
        if value is None:
            node.score = None
            return
        if isinstance(value, tuple):
            history = value if len(value) == len(node.steps) else (*node.history, value[-1])
        else:
            history = (*node.history, value)
        node.history = history
        node.score = aggregate_steps(history, self.how)

    # -- pruning -----------------------------------------------------------------------------
    @staticmethod
    def _rank(node: _Node) -> tuple[float, Key]:
        return (-(node.score if node.score is not None else float("-inf")), node.key)

    def _prune(self) -> None:
        kept_all: list[_Node] = []
        for group in range(len(self.active)):
            mine = [n for n in self.children.values() if n.group == group]
            scored = [n for n in mine if n.score is not None]
            fallback = bool(mine) and not scored
            if fallback:
                # Nothing to rank by: keep them in generation order rather than end with
                # nothing (finish says so, on details["fallback"] and as a warning).
                kids = sorted(mine, key=lambda n: n.key)
                self.unscored_rounds.append((self.round, group))
            else:
                kids = sorted(scored, key=self._rank)
            kept = kids[: self.keep]
            self.pool.extend(n for n in kids if n.finished)
            self.active[group] = [n for n in kept if not n.finished]
            kept_all.extend(kept)
            self.log.append(
                {
                    "round": self.round,
                    "group": group,
                    "kept": [{"score": n.score, "depth": n.depth, "finished": n.finished} for n in kept],
                    "candidates": len(kids),
                    "unscored_fallback": fallback,
                }
            )
        if kept_all:
            self.last_kept = kept_all
        self.children = {}
        self.round += 1
        self.phase = "expand"

    def _finals(self) -> list[_Node]:
        # Finished children scored this round count at once (stop rules read them before the
        # next plan prunes them into the pool).
        fresh = [n for n in self.children.values() if n.finished and n.done and n.score is not None]
        pool = sorted([*self.pool, *fresh], key=lambda n: n.key)
        if not self.leaves:
            return pool
        best: dict[int, _Node] = {}
        for node in pool:
            if node.group not in best or self._rank(node) < self._rank(best[node.group]):
                best[node.group] = node
        return [best[g] for g in sorted(best)]
