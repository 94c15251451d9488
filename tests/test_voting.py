"""Majority and weighted votes: tallies, abstentions, deterministic tie-breaking."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive import ConfigError, majority_vote, weighted_vote
from adaptive._voting import Tally, Vote, logprob_weight, top_two_counts

PROPERTY = settings(derandomize=True, database=None, max_examples=200, deadline=None)

MAJORITY_CASES: list[tuple[list[str | None], list[float] | None, str | None]] = [
    (["18", "18", "17"], None, "18"),
    (["17", "18", "18"], None, "18"),
    (["18"], None, "18"),
    ([], None, None),
    ([None, None], None, None),
    ([None, "5", None], None, "5"),
    # equal counts: the answer seen first wins
    (["a", "b"], None, "a"),
    (["b", "a"], None, "b"),
    ([None, "b", "a", "a", "b"], None, "b"),
    # equal counts: more total weight wins before first-seen
    (["a", "b"], [0.2, 0.9], "b"),
    (["a", "b", "a", "b"], [0.5, 0.5, 0.5, 0.5], "a"),
    # the count comes first: weights only break ties
    (["a", "a", "b"], [0.1, 0.1, 5.0], "a"),
    # abstention weights are ignored
    ([None, "a", "b"], [100.0, 0.1, 0.2], "b"),
    # "" is an answer, not an abstention
    (["", "", "x"], None, ""),
]


def test_top_two_counts() -> None:
    assert top_two_counts({}) == (0, 0)
    assert top_two_counts({"a": 3}) == (3, 0)
    assert top_two_counts({"a": 1, "b": 5, "c": 2}) == (5, 2)
    assert top_two_counts([2, 7, 7]) == (7, 7)


@pytest.mark.parametrize(("answers", "weights", "winner"), MAJORITY_CASES)
def test_majority_vote(answers: list[str | None], weights: list[float] | None, winner: str | None) -> None:
    vote = majority_vote(answers, weights)
    assert vote.winner == winner
    assert vote.tally.by == "count"


WEIGHTED_CASES: list[tuple[list[str | None], list[float], str | None]] = [
    (["18", "17", "17"], [0.9, 0.2, 0.3], "18"),
    (["18", "17", "17"], [0.4, 0.3, 0.3], "17"),
    # equal weight: more votes wins
    (["a", "b", "b"], [1.0, 0.5, 0.5], "b"),
    # equal weight and count: first seen wins
    (["a", "b"], [0.5, 0.5], "a"),
    (["b", "a"], [0.5, 0.5], "b"),
    # all weights zero: falls back to votes, then first seen
    (["a", "b", "b"], [0.0, 0.0, 0.0], "b"),
    ([None, None], [1.0, 1.0], None),
    ([], [], None),
]


@pytest.mark.parametrize(("answers", "weights", "winner"), WEIGHTED_CASES)
def test_weighted_vote(answers: list[str | None], weights: list[float], winner: str | None) -> None:
    vote = weighted_vote(answers, weights)
    assert vote.winner == winner
    assert vote.tally.by == "weight"


def test_tally_fields() -> None:
    tally = Tally.build(["b", None, "a", "b", "c", None, "a", "b"])
    assert tally.answers == ("b", "a", "c")  # first-seen order
    assert dict(tally.counts) == {"b": 3, "a": 2, "c": 1}
    assert dict(tally.weights) == {"b": 3.0, "a": 2.0, "c": 1.0}
    assert dict(tally.first_seen) == {"b": 0, "a": 2, "c": 4}
    assert tally.abstentions == 2
    assert tally.total_votes == 6
    assert tally.total_weight == 6.0
    assert tally.ranking == ("b", "a", "c")
    assert tally.leader == "b"
    assert tally.runner_up == "a"
    assert tally.leaders == ("b", "a")
    assert tally.margin == 1.0
    assert tally.share("b") == 0.5
    assert tally.share("zzz") == 0.0
    assert tally.score("c") == 1.0


def test_tally_by_weight() -> None:
    tally = Tally.from_entries([("x", 0.25), ("y", 1.0), (None, 3.0), ("x", 0.25)], by="weight")
    assert tally.leader == "y"
    assert tally.runner_up == "x"
    assert tally.margin == 0.5
    assert tally.share("y") == pytest.approx(2 / 3)
    assert tally.abstentions == 1
    assert tally.total_weight == 1.5


def test_empty_tally() -> None:
    for tally in (Tally.build([]), Tally.build([None, None, None])):
        assert tally.leader is None
        assert tally.runner_up is None
        assert tally.leaders == (None, None)
        assert tally.margin == 0.0
        assert tally.total_votes == 0
        assert tally.share("a") == 0.0
    assert Tally.build([None, None]).abstentions == 2
    vote = majority_vote([None])
    assert vote.winner is None
    assert vote.share == 0.0
    assert vote.margin == 0.0


def test_single_answer_margin_and_share() -> None:
    vote = majority_vote(["7", "7", None])
    assert vote.tally.runner_up is None
    assert vote.margin == 2.0
    assert vote.share == 1.0


def test_tally_is_read_only() -> None:
    tally = Tally.build(["a"])
    with pytest.raises(TypeError):
        tally.counts["a"] = 5  # type: ignore[index]
    with pytest.raises(AttributeError):
        tally.abstentions = 3  # type: ignore[misc]


def test_weights_are_summed_exactly() -> None:
    # 0.1 * 10 by naive summation is 0.9999999999999999 < 1.0; fsum gives 1.0, a tie.
    answers = ["a"] + ["b"] * 10
    weights = [1.0] + [0.1] * 10
    tally = Tally.build(answers, weights, by="weight")
    assert tally.weights["b"] == 1.0
    assert weighted_vote(answers, weights).winner == "b"  # equal weight, more votes


@pytest.mark.parametrize(
    ("answers", "weights", "message"),
    [
        (["a", "b"], [1.0], "got 2 answers but 1 weights"),
        (["a"], [-0.5], "weight #0 is -0.5; weights must be finite and >= 0"),
        (["a", "b"], [1.0, math.nan], "weight #1 is nan"),
        (["a"], [math.inf], "weight #0 is inf"),
        (["a"], [True], "weight #0 is bool"),
        (["a"], ["1"], "weight #0 is str"),
        (["a", 3], None, "answer #1 is int; answers must be str"),
    ],
)
def test_bad_input(answers: list[Any], weights: list[Any] | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Tally.build(answers, weights)
    with pytest.raises(ConfigError, match=message):
        majority_vote(answers, weights)


def test_unknown_rank_key() -> None:
    with pytest.raises(ConfigError, match="by must be 'count' or 'weight'"):
        Tally.build(["a"], by="votes")  # type: ignore[arg-type]


def test_logprob_weight() -> None:
    assert logprob_weight(0.0) == 1.0
    assert logprob_weight(math.log(0.25)) == pytest.approx(0.25)
    assert logprob_weight(-math.inf) == 0.0
    assert logprob_weight(1e-9) == 1.0  # a rounding error above zero
    for bad in (0.5, math.nan, math.inf):
        with pytest.raises(ConfigError, match="log-probability"):
            logprob_weight(bad)


def test_logprob_weighted_vote() -> None:
    answers = ["12", "13", "13"]
    mean_logprobs = [-0.05, -2.0, -2.5]
    vote = weighted_vote(answers, [logprob_weight(lp) for lp in mean_logprobs])
    assert vote.winner == "12"
    assert majority_vote(answers).winner == "13"


def test_vote_is_a_value() -> None:
    vote = majority_vote(["a", "b", "a"])
    assert isinstance(vote, Vote)
    assert vote == majority_vote(["a", "b", "a"])
    assert vote.share == pytest.approx(2 / 3)


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

_ANSWERS = st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", "18", ""])), max_size=30)
_WEIGHTED = st.lists(
    st.tuples(
        st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"])),
        st.floats(min_value=0, max_value=10, allow_nan=False, allow_infinity=False),
    ),
    max_size=30,
)


@PROPERTY
@given(_ANSWERS, st.integers(min_value=0, max_value=2**32))
def test_majority_winner_invariant_under_permutation_with_unique_max(
    answers: list[str | None], seed: int
) -> None:
    tally = Tally.build(answers)
    counts = sorted(tally.counts.values(), reverse=True)
    shuffled = list(answers)
    random.Random(seed).shuffle(shuffled)
    if counts and (len(counts) == 1 or counts[0] > counts[1]):
        assert majority_vote(shuffled).winner == majority_vote(answers).winner
    # whatever the order, the tally's numbers are the same
    assert dict(Tally.build(shuffled).counts) == dict(tally.counts)


@PROPERTY
@given(_WEIGHTED, st.integers(min_value=0, max_value=2**32))
def test_weighted_winner_invariant_under_permutation_with_unique_max(
    entries: list[tuple[str | None, float]], seed: int
) -> None:
    tally = Tally.from_entries(entries, by="weight")
    keys = sorted(((tally.weights[a], tally.counts[a]) for a in tally.answers), reverse=True)
    shuffled = list(entries)
    random.Random(seed).shuffle(shuffled)
    answers, weights = [a for a, _ in entries], [w for _, w in entries]
    if keys and (len(keys) == 1 or keys[0] > keys[1]):
        winner = weighted_vote(answers, weights).winner
        assert weighted_vote([a for a, _ in shuffled], [w for _, w in shuffled]).winner == winner
    assert dict(Tally.from_entries(shuffled, by="weight").weights) == dict(tally.weights)


@PROPERTY
@given(_ANSWERS)
def test_majority_winner_is_a_most_frequent_answer_seen_first(answers: list[str | None]) -> None:
    vote = majority_vote(answers)
    tally = vote.tally
    assert tally.total_votes + tally.abstentions == len(answers)
    voted = [a for a in answers if a is not None]
    if not voted:
        assert vote.winner is None
        return
    best = max(voted.count(a) for a in voted)
    first_best = next(a for a in voted if voted.count(a) == best)
    assert vote.winner == first_best
    assert tally.margin == best - max((voted.count(a) for a in set(voted) if a != first_best), default=0)
    assert sum(tally.share(a) for a in tally.answers) == pytest.approx(1.0)
