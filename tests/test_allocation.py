"""`adaptive._allocation.Allocator`: the pure half of `run_many`, on synthetic states."""

from __future__ import annotations

import random

import pytest

from adaptive import ConfigError, ConsistencyPrior
from adaptive._allocation import Allocator
from adaptive._value import expected_gain_per_sample


def first_round(alloc: Allocator, answers: dict[int, list[str | None]], cost: float = 1e-4) -> None:
    """Hand out and feed back every question's first round."""
    while True:
        choice = alloc.next()
        if choice is None:
            return
        q, k = choice
        assert k == alloc.first_round
        alloc.add(q, answers[q][:k], cost * k, cost / 4)
        if all(alloc.samples[i] >= alloc.first_round for i in answers):
            return


def test_first_round_goes_to_every_question_in_order_before_any_gets_more() -> None:
    alloc = Allocator(4, first_round=2)
    handed = []
    while (choice := alloc.next()) is not None and len(handed) < 4:
        handed.append(choice)
    assert handed == [(0, 2), (1, 2), (2, 2), (3, 2)]
    # The first round is still in flight: nothing more until it is in (the prior is fitted on it).
    assert alloc.next() is None


def test_the_next_sample_goes_where_gain_per_dollar_is_highest() -> None:
    alloc = Allocator(3, first_round=2, confidence=0.999999, min_gain=0.0)
    # 0: unanimous and cheap; 1: split and cheap; 2: split but ten times dearer per sample.
    answers: dict[int, list[str | None]] = {0: ["a", "a"], 1: ["a", "b"], 2: ["a", "b"]}
    for q in range(3):
        assert alloc.next() == (q, 2)
    alloc.add(0, answers[0], 2e-4, 0.0)
    alloc.add(1, answers[1], 2e-4, 0.0)
    alloc.add(2, answers[2], 2e-3, 0.0)
    q, k = alloc.next() or (None, None)  # the first choice after the round fits the prior
    worths = {i: alloc.worth(i) for i in range(3)}
    assert all(w is not None for w in worths.values())
    best = max(range(3), key=lambda i: worths[i][0])  # type: ignore[index]
    assert q == best == 1  # the split vote, at the cheaper price
    assert k == worths[1][1]  # type: ignore[index]
    # Its worth is the posterior's gain per expected dollar of that batch, times P(it votes).
    prior = alloc.prior
    assert worths[1][0] == pytest.approx(  # type: ignore[index]
        (3 / 4) * prior.expected_gain(1, 1, k) / (k * 1e-4)
    )
    # Same votes, ten times the cost: a tenth of the worth.
    assert worths[2][0] == pytest.approx(worths[1][0] / 10)  # type: ignore[index]


def test_the_prompt_is_amortized_over_a_batch() -> None:
    # A dear prompt (paid once per request) makes larger batches pay for the same votes.
    cheap = Allocator(1, first_round=2, confidence=0.999999, min_gain=0.0)
    dear = Allocator(1, first_round=2, confidence=0.999999, min_gain=0.0)
    for alloc, prompt in ((cheap, 0.0), (dear, 9e-4)):
        assert alloc.next() == (0, 2)
        alloc.add(0, ["a", "b"], 1e-3 + prompt, prompt)
    w_cheap, w_dear = cheap.worth(0), dear.worth(0)
    assert w_cheap is not None and w_dear is not None
    assert w_dear[1] >= w_cheap[1]
    ks = range(1, cheap.max_batch + 1)
    assert w_dear[1] == max(ks, key=lambda k: dear.prior.expected_gain(1, 1, k) / (9e-4 + k * 5e-4))


def test_stop_rules_fire_and_are_named() -> None:
    alloc = Allocator(3, first_round=2, max_samples=2, confidence=0.9, min_gain=0.0)
    for q in range(3):
        assert alloc.next() == (q, 2)
        alloc.add(q, ["a", "a"], 2e-4)
    assert alloc.next() is None
    assert alloc.stop_reason == ["max_samples"] * 3
    strict = Allocator(2, first_round=2, max_samples=40, confidence=0.6, min_gain=0.0)
    for q in range(2):
        assert strict.next() == (q, 2)
    strict.add(0, ["a", "a"], 2e-4)
    strict.add(1, ["a", "b"], 2e-4)
    choice = strict.next()
    assert strict.stop_reason[0] == "confident" and choice is not None and choice[0] == 1
    lazy = Allocator(1, first_round=2, confidence=0.999999, min_gain=0.5)
    assert lazy.next() == (0, 2)
    lazy.add(0, ["a", "b"], 2e-4)
    assert expected_gain_per_sample(lazy.prior, 1, 1) < 0.5
    assert lazy.next() is None and lazy.stop_reason == ["low_gain"]


def spend(alloc: Allocator, pool: list[list[str | None]], costs: list[float], budget: float) -> float:
    """Drive the allocator like `run_many`: a hold of the worst case must fit what is left."""
    spent, worst = 0.0, 3 * max(costs)
    while (choice := alloc.next()) is not None:
        q, k = choice
        if spent + k * worst > budget:
            alloc.release(q)
            if alloc.max_batch == 1:
                break
            alloc.max_batch = 1
            continue
        at = alloc.samples[q]
        spent += k * costs[q]
        alloc.add(q, pool[q][at : at + k], k * costs[q])
    return spent


@pytest.mark.parametrize("seed", range(20))
def test_never_exceeds_the_budget_and_spends_close_to_it(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(5, 60)
    pool = [[rng.choice("aab" if rng.random() < 0.5 else "abc") for _ in range(40)] for _ in range(n)]
    pool = [[None if rng.random() < 0.05 else a for a in p] for p in pool]
    costs = [rng.uniform(1e-5, 1e-4) for _ in range(n)]
    budget = rng.uniform(2, 6) * sum(costs)
    alloc = Allocator(n, first_round=rng.randint(1, 3), max_samples=40, confidence=0.9999, min_gain=0.0)
    spent = spend(alloc, pool, costs, budget)
    assert spent <= budget
    stopped = all(r is not None for r in alloc.stop_reason)
    # Either every question's stop rule said stop, or what is left cannot hold one worst case.
    assert stopped or budget - spent < 3 * max(costs)
    assert alloc.total_samples == sum(alloc.samples)


def test_split_votes_get_more_samples_than_unanimous_ones() -> None:
    rng = random.Random(5)
    easy = [["a"] * 40 for _ in range(30)]
    hard = [[rng.choice("ab") for _ in range(40)] for _ in range(30)]
    pool: list[list[str | None]] = [*easy, *hard]
    alloc = Allocator(60, first_round=2, max_samples=40, confidence=0.9999, min_gain=0.0)
    spend(alloc, pool, [1e-4] * 60, 60 * 4 * 1e-4)
    assert sum(alloc.samples[30:]) > 2 * sum(alloc.samples[:30])


def test_resumes_from_samples_already_drawn() -> None:
    alloc = Allocator(3, first_round=2)
    alloc.add(0, ["a", "a"], 2e-4)  # had its first round in an earlier run
    alloc.add(1, ["a"], 1e-4)  # had half of it
    alloc.stop(2, "error")  # finished for good
    assert alloc.next() == (1, 1)  # only what is missing of the first round
    alloc.add(1, ["b"], 1e-4)
    choice = alloc.next()
    assert choice is not None and choice[0] in (0, 1)
    assert alloc.stop_reason[2] == "error"


def test_the_prior_is_learned_from_the_batch_votes() -> None:
    alloc = Allocator(40, first_round=2, confidence=0.99, min_gain=0.0)
    while (choice := alloc.next()) is not None:
        q = choice[0]
        alloc.add(q, ["a", "a"] if q < 36 else ["a", "b"], 2e-4)
        if alloc.samples[q] > 2:
            break
    # 36 of 40 unanimous: the fitted prior trusts a 2-0 more than the uniform one does.
    assert alloc.prior.confidence(2, 0) > ConsistencyPrior().confidence(2, 0)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ConfigError):
        Allocator(3, first_round=0)
    with pytest.raises(ConfigError):
        Allocator(3, first_round=5, max_samples=4)
    with pytest.raises(ConfigError):
        Allocator(3, confidence=0.0)
