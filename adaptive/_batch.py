"""A dataset under one total budget: samples go where they are expected to change answers.

`Client.run_many` answers many questions with one total dollar budget. Every question gets a
first round (`first_round` samples); after that each further request (of one or a few
samples, sent with `n`) goes to the question whose next batch has the highest expected gain
in confidence per expected dollar (the controller's posterior, `ConsistencyPrior`, with the
prior learned from the batch's own votes; the request's prompt paid once, its samples at the
question's mean cost per sample so far),
until the budget is spent or every question's stop rule says stop (confident enough, gain
below `min_gain`, or `max_samples` drawn). The decisions are `adaptive._allocation.Allocator`'s
(pure); this module does the I/O.

The total is never exceeded: every sample is a `client.run` call held against a run-scope
`adaptive.ledger.Account` with the budget (in memory, or on Redis to share it between worker
processes), besides the call's own checks. A refusal by that account means the budget is
spent; the run ends once nothing is in flight.

Resumable: `previous` takes the records of an earlier run (the lines of its output); their
drawn samples are kept and counted, their cost counts against the budget, and finished
questions are not sampled again.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ._allocation import Allocator
from ._answer_spec import AnswerSpec
from ._budget import Budget
from ._exceptions import AdaptiveError, BudgetExceededError, ConfigError
from ._models import as_messages
from ._normalize import answers_equivalent
from .ledger._accounts import Account, LedgerBackend, MemoryBackend

if TYPE_CHECKING:
    from ._client import Client, Prompt

__all__ = ["BatchItem", "BatchReport", "as_batch_item", "run_many"]

#: Stop reasons of a question that is not sampled again on a resumed run.
FINAL = frozenset({"confident", "low_gain", "max_samples", "error"})


@dataclasses.dataclass(frozen=True, slots=True)
class BatchItem:
    """One question of a batch.

    Attributes:
        id: Its identifier (unique in the batch).
        prompt: A question string or chat messages.
        gold: The reference answer, if known (accuracy is then reported).
    """

    id: str
    prompt: Prompt
    gold: str | None = None


def as_batch_item(value: BatchItem | Mapping[str, Any], line: int | None = None) -> BatchItem:
    """A `BatchItem` from one input object: `{"id", "prompt"}` or `{"id", "messages"}`, optional "gold".

    Raises:
        ConfigError: Anything else (the message names `line` when given).
    """
    if isinstance(value, BatchItem):
        return value
    where = f"line {line}: " if line is not None else ""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}a question is a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - {"id", "prompt", "messages", "gold"})
    if unknown:
        raise ConfigError(f"{where}unknown keys {unknown}: a question has id, prompt or messages, gold")
    qid = value.get("id")
    if not isinstance(qid, str | int) or isinstance(qid, bool) or str(qid) == "":
        raise ConfigError(f"{where}'id' must be a non-empty string or integer; got {qid!r}")
    has_prompt, has_messages = "prompt" in value, "messages" in value
    if has_prompt == has_messages:
        raise ConfigError(f"{where}give exactly one of 'prompt' and 'messages'")
    prompt = value["prompt"] if has_prompt else value["messages"]
    if has_prompt and (not isinstance(prompt, str) or not prompt.strip()):
        raise ConfigError(f"{where}'prompt' must be a non-empty string")
    if has_messages:
        try:
            as_messages(prompt)
        except ConfigError as exc:
            raise ConfigError(f"{where}'messages': {exc}") from None
    gold = value.get("gold")
    if gold is not None and not isinstance(gold, str | int | float):
        raise ConfigError(f"{where}'gold' must be a string or a number; got {type(gold).__name__}")
    return BatchItem(str(qid), prompt, None if gold is None else str(gold))


@dataclasses.dataclass(slots=True)
class _Question:
    item: BatchItem
    index: int
    draws: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    stop_reason: str | None = None
    errors: int = 0
    # The last record and what it was built from: a report after every draw rebuilds only
    # the question that changed (else checkpointing a large batch is quadratic).
    _cached: tuple[tuple[int, str | None], dict[str, Any]] | None = None
    _cost: tuple[int, float] = (0, 0.0)

    @property
    def votes(self) -> dict[str, int]:
        counts = Counter(d["answer"] for d in self.draws if d.get("answer") is not None)
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    @property
    def cost(self) -> float:
        n, total = self._cost
        if n != len(self.draws):
            total = sum(float(d.get("cost_usd", 0.0)) for d in self.draws)
            self._cost = (len(self.draws), total)
        return total

    @property
    def samples(self) -> int:
        return sum(1 for d in self.draws if d.get("sample", True))

    def record(self) -> dict[str, Any]:
        key = (len(self.draws), self.stop_reason)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        out = self._build()
        self._cached = (key, out)
        return out

    def _build(self) -> dict[str, Any]:
        votes = self.votes
        answer = next(iter(votes), None)
        out: dict[str, Any] = {
            "id": self.item.id,
            "answer": answer,
            "samples": self.samples,
            "cost_usd": round(self.cost, 12),
            "stop_reason": self.stop_reason or "budget",
            "votes": votes,
            "draws": self.draws,
        }
        if self.item.gold is not None:
            out["gold"] = self.item.gold
            out["correct"] = answer is not None and answers_equivalent(answer, self.item.gold)
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class BatchReport:
    """What a batch did.

    Attributes:
        records: One per question (id, answer, samples, cost_usd, stop_reason, votes, draws,
            and gold / correct when gold was given), in input order.
        budget_usd: The total budget.
        spent_usd: Dollars recorded over the whole batch (earlier runs it resumed included).
    """

    records: list[dict[str, Any]]
    budget_usd: float
    spent_usd: float

    @property
    def summary(self) -> dict[str, Any]:
        """`{"questions", "settled", "spent_usd", "budget_usd", "mean_samples", "accuracy"}`."""
        n = len(self.records)
        graded = [r for r in self.records if "correct" in r]
        return {
            "questions": n,
            "settled": sum(1 for r in self.records if r["stop_reason"] in FINAL),
            "spent_usd": round(self.spent_usd, 9),
            "budget_usd": self.budget_usd,
            "mean_samples": round(sum(r["samples"] for r in self.records) / n, 4) if n else 0.0,
            "accuracy": round(sum(r["correct"] for r in graded) / len(graded), 4) if graded else None,
        }

    def histogram(self) -> dict[int, int]:
        """Questions by the number of samples drawn for them."""
        return dict(sorted(Counter(r["samples"] for r in self.records).items()))


async def run_many(
    client: Client,
    items: Sequence[BatchItem],
    *,
    budget_usd: float,
    first_round: int = 2,
    max_samples: int = 16,
    confidence: float = 0.99,
    min_gain: float = 0.0005,
    concurrency: int = 16,
    max_tokens: int | None = None,
    seed: int = 0,
    previous: Mapping[str, Mapping[str, Any]] | None = None,
    backend: LedgerBackend | None = None,
    run_name: str | None = None,
    limit_usd: float | None = None,
    answer: AnswerSpec | None = None,
    on_update: Callable[[BatchReport], None] | None = None,
) -> BatchReport:
    """Answer `items` under one total budget; see the module docstring (`Client.run_many`).

    Args:
        client: Where the samples are drawn (its endpoint, controller and accounts).
        items: The questions.
        budget_usd: The total budget of the batch (earlier runs it resumes included).
        first_round: Samples every question gets before any gets more.
        max_samples: Most samples for one question.
        confidence: A question stops once the posterior (the controller's model, its prior
            learned from the batch's own votes) is this sure of its leader.
        min_gain: A question stops once its next sample is expected to gain less confidence.
        concurrency: Calls in flight at once.
        max_tokens: `max_tokens` of each sample (None: the strategy's).
        seed: Base seed; each sample's seed comes from it, its question and its index.
        previous: Records of an earlier run by id, to resume from.
        backend: Where the run's account lives (a fresh `MemoryBackend` when None; a
            `RedisBackend` shares it between worker processes).
        run_name: The run account's name (workers sharing a run give the same one).
        limit_usd: The run account's limit (default: `budget_usd` less what `previous` spent).
        answer: How answers are read from samples (default: the strategy's own `AnswerSpec`).
        on_update: Called with the report so far after every draw (e.g. to checkpoint).

    Raises:
        ConfigError: Bad arguments (nothing is spent).
    """
    if not isinstance(budget_usd, int | float) or not budget_usd > 0:
        raise ConfigError(f"budget_usd must be a positive number of dollars; got {budget_usd!r}")
    if not (1 <= first_round <= max_samples):
        raise ConfigError(f"need 1 <= first_round <= max_samples; got {first_round}, {max_samples}")
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1; got {concurrency}")
    ids = [it.id for it in items]
    twice = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if twice:
        raise ConfigError(f"question ids must be unique; repeated: {twice[:5]}")
    questions = [_Question(it, i) for i, it in enumerate(items)]
    alloc = Allocator(
        len(questions),
        first_round=first_round,
        max_samples=max_samples,
        confidence=confidence,
        min_gain=min_gain,
        horizon=client.controller.config.gain_horizon,
    )
    before = 0.0
    for q in questions:
        old = (previous or {}).get(q.item.id)
        if old:
            q.draws = [dict(d) for d in old.get("draws", [])]
            reason = old.get("stop_reason")
            alloc.add(q.index, [d.get("answer") for d in q.draws if d.get("sample", True)], q.cost)
            if reason in FINAL:
                alloc.stop(q.index, reason)
            before += q.cost
    # What the run may still spend; workers sharing one run account all pass the same limit.
    left = limit_usd if limit_usd is not None else budget_usd - before
    # The run's scope: every sample of the batch is held against what is left of the total.
    shared = backend if backend is not None else MemoryBackend()
    name = run_name or f"run:{uuid.uuid4().hex}"
    run_account = Account(name, Budget(usd=left), backend=shared) if left > 0 else None
    exhausted = run_account is None
    wake = anyio.Event()
    in_flight = 0
    retried = False  # after a refusal, one more try once nothing is in flight (holds freed)

    def report() -> BatchReport:
        for q in questions:
            q.stop_reason = alloc.stop_reason[q.index]
        return BatchReport([q.record() for q in questions], budget_usd, sum(q.cost for q in questions))

    def prompt_usd(result: Any) -> float:
        """What the prompt of a call's request cost (the allocator amortizes it over a batch)."""
        price = client.endpoint.price
        if price is None:  # unpriced: every sample costs 0, there is nothing to amortize
            return 0.0
        return float(price.worst_case_pico(result.usage.prompt_tokens, 0)) / 1e12

    def refused() -> None:
        """The run account refused a hold: single samples from now on, then the end."""
        nonlocal exhausted
        if alloc.max_batch > 1:
            alloc.max_batch = 1
        else:
            exhausted = True

    async def sample(q: _Question, k: int) -> None:
        nonlocal in_flight, exhausted, retried
        assert run_account is not None
        base = seed + q.index * 1_000_003 + len(q.draws) * 17
        strategy: Any = {"name": "self-consistency", "n": k} if k > 1 or answer is not None else "single"
        if answer is not None:
            strategy["answer"] = answer
        try:
            result = await client.run(
                q.item.prompt, strategy=strategy, seed=base, max_tokens=max_tokens, accounts=[run_account]
            )
            answers = [s.answer for s in result.samples if s.purpose == "generate"]
            share = result.cost_usd / max(1, len(answers))
            tokens = result.usage.total_tokens // max(1, len(answers))
            for a in answers:
                q.draws.append({"answer": a, "cost_usd": share, "tokens": tokens})
            if not answers and result.cost_usd:
                q.draws.append({"answer": None, "cost_usd": result.cost_usd, "sample": False})
            alloc.add(q.index, answers, result.cost_usd, prompt_usd(result))
            retried = False
            if result.stop_reason == "budget" and result.stop is not None and "Account(" in result.stop.rule:
                refused()
        except BudgetExceededError as exc:
            paid = exc.receipt.cost_usd if exc.receipt is not None else 0.0
            if paid:
                q.draws.append({"answer": None, "cost_usd": paid, "sample": False})
            alloc.add(q.index, [], paid)  # nothing drawn: it may be chosen again
            if exc.account == run_account.name:
                refused()
            else:
                alloc.stop(q.index, "error")
        except AdaptiveError as exc:
            paid = exc.receipt.cost_usd if exc.receipt is not None else 0.0
            if paid:
                q.draws.append({"answer": None, "cost_usd": paid, "sample": False})
            alloc.add(q.index, [], paid)
            q.errors += 1
            if q.errors >= 3:
                alloc.stop(q.index, "error")
        finally:
            in_flight -= 1
            if on_update is not None:
                on_update(report())
            wake.set()

    async with anyio.create_task_group() as tg:
        while True:
            while not exhausted and in_flight < concurrency:
                choice = alloc.next()
                if choice is None:
                    break
                q, k = questions[choice[0]], choice[1]
                in_flight += 1
                tg.start_soon(sample, q, k)
            if in_flight == 0:
                if exhausted and run_account is not None:
                    totals = await run_account.totals()
                    if totals.reserved.pico > 0:
                        # Other workers' holds are in flight: what they do not use comes back.
                        # Wait, polling the account rather than sending calls it would refuse,
                        # until more is free than when this worker was refused.
                        used = totals.spent.pico + totals.reserved.pico
                        while totals.reserved.pico > 0 and totals.spent.pico + totals.reserved.pico >= used:
                            await anyio.sleep(0.05)
                            totals = await run_account.totals()
                        exhausted = False
                        continue
                    if not retried:
                        exhausted, retried = False, True
                        continue
                break
            await wake.wait()
            wake = anyio.Event()
    return report()
