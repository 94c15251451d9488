"""A strategy of your own: sample a cheap model until two answers agree, else ask a strong one.

A strategy is a small protocol (all public names of `adaptive`):

- `Strategy`: `name`, `start(task) -> StrategyRun`, `default_stop() -> StopRule | None`.
- `StrategyRun`, one per call: `plan(state)` says what to ask next (`Plan(sample=request)`
  for more samples, sized by the controller; `Plan(calls=(Call(...),))` for exact calls, on
  any endpoint), `observe(outcome)` takes each response, `evidence()` reports votes for the
  stop rules, `finish(state)` gives the answer.

The strategy never sends anything: the controller reserves every request against the budget
first, so a user strategy cannot overspend either. The run's `answer_of(completion)` says
which answer it counted for a sample: the receipt shows it beside each one.

Runs offline with two simulated models (a cheap, weaker one and a strong, pricey one)::

    python examples/custom_strategy.py

On real models: `Client(OpenAIChat("gpt-4o-mini"))` and
`AgreeOrEscalate(strong=Anthropic("claude-sonnet-4-5"))`.
"""

from __future__ import annotations

from collections import Counter

import anyio
from adaptive_strategies import SelfConsistency

from adaptive import (
    AnswerSpec,
    Budget,
    Call,
    Client,
    Completion,
    Endpoint,
    Evidence,
    Final,
    Outcome,
    Plan,
    Price,
    Result,
    Sampling,
    State,
    StopRule,
    Strategy,
    Task,
)
from adaptive.sim import SimEndpoint, SimModel, demo_problems


class AgreeOrEscalate:
    """Sample the client's (cheap) model until two answers agree; if none do, ask `strong`.

    Args:
        strong: The endpoint to escalate to.
        max_cheap: Cheap samples to try before escalating.
        answer: How answers are read from a sample (the default: "The answer is ...", boxed,
            the last number...).
    """

    def __init__(self, strong: Endpoint, max_cheap: int = 4, answer: AnswerSpec | None = None) -> None:
        self.strong = strong
        self.max_cheap = max_cheap
        self.answer = answer or AnswerSpec()

    @property
    def name(self) -> str:
        return "agree-or-escalate"

    def start(self, task: Task) -> AgreeOrEscalateRun:
        return AgreeOrEscalateRun(self, task)

    def default_stop(self) -> StopRule | None:
        return None  # the run decides when it is done; the budget still caps it


class AgreeOrEscalateRun:
    def __init__(self, config: AgreeOrEscalate, task: Task) -> None:
        self.cfg = config
        self.task = task
        self.cheap = Sampling(temperature=0.8, max_tokens=512)
        self.answers: list[str | None] = []
        self.texts: list[str] = []
        self.escalated = False
        self.strong_answer: tuple[str | None, str] | None = None

    def answer_of(self, completion: Completion) -> str | None:
        return self.cfg.answer.read(completion.text)

    def agreed(self) -> str | None:
        """The first answer given twice, if any."""
        seen: set[str] = set()
        for a in self.answers:
            if a is not None and a in seen:
                return a
            if a is not None:
                seen.add(a)
        return None

    def plan(self, state: State) -> Plan | None:
        if self.agreed() is not None or self.strong_answer is not None:
            return None
        left = self.cfg.max_cheap - len(self.answers)
        if left > 0:
            # Two at first (agreement needs two), then one at a time; the controller seeds them.
            k = 2 if not self.answers else 1
            return Plan(sample=self.task.request(self.cheap), max_batch=min(k, left), note="cheap")
        if not self.escalated:
            self.escalated = True
            request = self.task.request(Sampling(temperature=0.0, max_tokens=512), seed=self.task.seed)
            return Plan(calls=(Call(request, endpoint=self.cfg.strong),), stoppable=False, note="escalate")
        return None  # the escalation was refused by the budget or failed: answer with what we have

    def observe(self, outcome: Outcome) -> None:
        if outcome.response is None:
            return
        for completion in outcome.response.completions:
            answer = self.answer_of(completion)
            if outcome.call.endpoint is self.cfg.strong:
                self.strong_answer = (answer, completion.text)
            else:
                self.answers.append(answer)
                self.texts.append(completion.text)

    def evidence(self) -> Evidence:
        votes = Counter(a for a in self.answers if a is not None)
        return Evidence(
            votes=dict(votes.most_common()),
            abstentions=self.answers.count(None),
            history=tuple(self.answers),
            samples=len(self.answers),
        )

    def finish(self, state: State) -> Final:
        if self.strong_answer is not None:
            answer, text = self.strong_answer
            return Final(answer=answer, text=text, details={"escalated": True})
        agreed = self.agreed()
        if agreed is None:  # no agreement and no escalation: the most common cheap answer
            votes = self.evidence().votes
            agreed = next(iter(votes), None)
        chosen = next((t for a, t in zip(self.answers, self.texts, strict=True) if a == agreed), None)
        return Final(answer=agreed, text=chosen, details={"escalated": False})


CHEAP = SimModel(name="sim-small", price=Price(input=0.05, output=0.20))
STRONG = SimModel(
    name="sim-large", seed=1, base_error_rate=0.01, difficulty_scale=2.0, trap_error_rate=0.2,
    price=Price(input=2.50, output=10.00),
)  # fmt: skip
BUDGET = Budget(usd=0.02)
PROBLEMS = demo_problems(12)


async def compare(label: str, client: Client, strategy: Strategy) -> list[Result]:
    results = [
        await client.run(problem.question, strategy=strategy, budget=BUDGET, seed=i)
        for i, problem in enumerate(PROBLEMS)
    ]
    correct = sum(r.answer == p.answer for r, p in zip(results, PROBLEMS, strict=True))
    escalated = sum(bool(r.details.get("escalated")) for r in results)
    cost = sum(r.cost_usd for r in results)
    worst = max(r.cost_usd for r in results)
    print(
        f"{label:<26} {correct:>2}/{len(PROBLEMS)} right  escalated {escalated:>2}  ${cost:.5f} total  "
        f"max ${worst:.6f} per call"
    )
    return results


async def main() -> None:
    strong = SimEndpoint(STRONG)
    greedy = SelfConsistency(n=1, sampling=Sampling(temperature=0.0, max_tokens=512))
    print(f"{len(PROBLEMS)} problems, budget ${BUDGET.usd} per call\n")
    async with Client(SimEndpoint(CHEAP)) as cheap_client, Client(strong) as strong_client:
        await compare("cheap model, one sample", cheap_client, greedy)
        await compare("strong model, one sample", strong_client, greedy)
        results = await compare("agree-or-escalate", cheap_client, AgreeOrEscalate(strong=strong))

    # The receipt of a call that escalated: both endpoints' charges, one budget.
    i, result = next(((i, r) for i, r in enumerate(results) if r.details["escalated"]), (0, results[0]))
    print(f"\nquestion {i + 1} (expected {PROBLEMS[i].answer}):")
    print(result.receipt())
    for charge in result.charges:
        print(f"  {charge.endpoint:<24} {charge.samples} sample(s)  ${charge.usd:.6f}  {charge.status}")


if __name__ == "__main__":
    anyio.run(main)
