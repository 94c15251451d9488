"""Reply parsers: judge ratings, yes/no replies, step-score aggregation."""

from __future__ import annotations

import math

import pytest
from adaptive_strategies.replies import aggregate_steps, parse_rating, parse_yes_no, read_score

from adaptive import Completion, ConfigError
from adaptive._models import TokenLogprob

# -- aggregation -------------------------------------------------------------------------


def test_aggregate_steps() -> None:
    scores = (0.9, 0.5, 0.8)
    assert aggregate_steps(scores, "last") == 0.8
    assert aggregate_steps(scores, "min") == 0.5
    assert aggregate_steps(scores, "product") == pytest.approx(0.9 * 0.5 * 0.8)
    assert aggregate_steps(scores, "mean") == pytest.approx(2.2 / 3)
    assert aggregate_steps((), "min") is None
    with pytest.raises(ConfigError, match="unknown aggregation"):
        aggregate_steps(scores, "max")  # type: ignore[arg-type]
    assert read_score((0.2, 0.7), "min") == 0.2
    assert read_score(0.4, "min") == 0.4
    assert read_score(None) is None


# -- judge parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The steps look right.\nScore: 7", 0.7),
        ("**Score:** 8/10", 0.8),
        ("Rating: 4/5", 0.8),
        ("I'd give it 3 out of 10.", 0.3),
        ("9", 0.9),
        ("Score: 2 at first, but on reflection Score: 9", 0.9),
        ("score of 10", 1.0),
        ("Score: 11", None),
        ("Score: -1", None),
        ("I cannot grade this.", None),
        ("", None),
    ],
)
def test_parse_rating(text: str, expected: float | None) -> None:
    got = parse_rating(text)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_parse_rating_other_scale() -> None:
    assert parse_rating("Score: 3", scale=5) == pytest.approx(0.6)
    assert parse_rating("Score: 6", scale=5) is None


def test_parse_yes_no() -> None:
    top = (("Yes", math.log(0.6)), ("No", math.log(0.2)), (" maybe", math.log(0.2)))
    with_lp = Completion(text="Yes", logprobs=(TokenLogprob(token="Yes", logprob=math.log(0.6), top=top),))
    assert parse_yes_no(with_lp) == pytest.approx(0.75)
    assert parse_yes_no(Completion(text="No.")) == 0.0
    assert parse_yes_no(Completion(text="**Yes**, it is right")) == 1.0
    assert parse_yes_no(Completion(text="Perhaps")) is None
    assert parse_yes_no(Completion(text="")) is None
    # Logprobs without yes/no alternatives: fall back on the word.
    odd = Completion(text="No", logprobs=(TokenLogprob(token="No", logprob=-0.1, top=(("Hmm", -0.1),)),))
    assert parse_yes_no(odd) == 0.0
