"""Reading scores: verifier replies (judge ratings, yes/no, reward and step scores) to numbers.

These are the pure parsers behind the built-in verifiers, usable on their own in a custom
verifier's `read` function: nothing here sends a request or knows about budgets.

- `parse_rating(text)`: a judge's "Score: N" (or "N/10") reply, scaled to [0, 1].
- `parse_yes_no(completion)`: P(yes) from a yes/no reply's log-probabilities, or its first word.
- `parse_reward(response)`: an outcome reward model's score.
- `parse_step_scores(response)`: a process reward model's per-step scores.
- `read_score(value)`: one float from a verifier result (per-step scores aggregated).

Every parser returns None for a reply it cannot read, and only finite floats otherwise.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

from adaptive import Completion, ConfigError, Response

__all__ = [
    "Aggregation",
    "ScoreValue",
    "aggregate_steps",
    "parse_rating",
    "parse_reward",
    "parse_step_scores",
    "parse_yes_no",
    "read_score",
]

ScoreValue: TypeAlias = float | tuple[float, ...] | None
"""What a verifier says about one candidate: a score, per-step scores, or None (unscored)."""

Aggregation = Literal["last", "min", "product", "mean"]
"""How per-step scores become one score."""


def aggregate_steps(scores: Sequence[float], how: Aggregation = "last") -> float | None:
    """One score from per-step scores: the last, the lowest, the product or the mean.

    Returns None for an empty sequence.

    Raises:
        ConfigError: Unknown aggregation.
    """
    if not scores:
        return None
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    if how == "product":
        return float(math.prod(scores))
    if how == "mean":
        return float(math.fsum(scores) / len(scores))
    raise ConfigError(f"unknown aggregation {how!r}: use 'last', 'min', 'product' or 'mean'")


def finite(value: Any) -> float | None:
    """Return a real number (not a bool) as a float when it is finite, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def clean_score(value: Any) -> ScoreValue:
    """Make a verifier result safe: finite floats only, otherwise None."""
    if value is None:
        return None
    if isinstance(value, tuple | list):
        items = [finite(v) for v in value]
        if not items or any(v is None for v in items):
            return None
        return tuple(v for v in items if v is not None)
    return finite(value)


def read_score(value: ScoreValue, aggregation: Aggregation = "last") -> float | None:
    """One float from a verifier result (per-step scores aggregated with `aggregation`)."""
    if isinstance(value, tuple):
        return aggregate_steps(value, aggregation)
    return value


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"


def _number_in(text: str) -> float | None:
    """Return the float when the whole text is one number (servers that answer with the score)."""
    stripped = text.strip()
    if re.fullmatch(_NUMBER + r"(?:[eE][-+]?\d+)?", stripped):
        return finite(float(stripped))
    return None


def _json_object(text: str) -> dict[str, Any] | None:
    """Parse the text as a JSON object, or None."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        data = json.loads(stripped)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def parse_reward(response: Response) -> float | None:
    """Read an outcome reward model's score from a response, or None.

    From `Completion.score`, a `score` in `Response.extra`, or a completion text that is a
    number or a JSON object with a "score".
    """
    if response.completions and response.completions[0].score is not None:
        return finite(response.completions[0].score)
    extra = response.extra.get("score")
    if extra is not None:
        return finite(extra)
    if response.completions:
        text = response.completions[0].text
        data = _json_object(text)
        if data is not None:
            return finite(data.get("score"))
        return _number_in(text)
    return None


def parse_step_scores(response: Response) -> ScoreValue:
    """Read a process reward model's step scores from a response, or None.

    In order: `Response.extra["step_scores"]` (a list, one per step); a completion text that
    is a JSON object with "step_scores"; one scored completion per step (`Completion.score`);
    a single `Completion.score`, taken as the score of the last step; a completion text that
    is a list of numbers ("0.9, 0.7, 0.2").
    """
    listed = response.extra.get("step_scores")
    if listed is None and response.completions:
        data = _json_object(response.completions[0].text)
        listed = data.get("step_scores") if data is not None else None
    if isinstance(listed, list | tuple):
        return clean_score(tuple(listed))
    scored = [c.score for c in response.completions]
    if len(scored) > 1 and all(s is not None for s in scored):
        return clean_score(tuple(scored))
    if scored and scored[0] is not None:
        return finite(scored[0])
    if response.completions:
        parts = [p for p in re.split(r"[\s,;]+", response.completions[0].text.strip().strip("[]")) if p]
        values = [_number_in(p) for p in parts]
        if values and all(v is not None for v in values):
            return clean_score(tuple(values))
    return None


_LABELLED = re.compile(
    r"(?:score|rating|grade)\s*(?:[:=]|is|of)?\s*\**\s*(" + _NUMBER + r")\s*\**\s*(?:/\s*(\d+))?",
    re.IGNORECASE,
)
_OUT_OF = re.compile(r"(" + _NUMBER + r")\s*(?:/|out\s+of)\s*(\d+)", re.IGNORECASE)
_YES = ("yes", "true", "correct")
_NO = ("no", "false", "incorrect", "wrong")


def parse_rating(text: str, scale: float = 10.0) -> float | None:
    """Read a judge's rating from its reply, scaled to [0, 1], or None.

    Tried in order: the last "Score: N" / "Rating: N" / "score of N" (also "N/10" after it);
    the last "N/10" or "N out of 10" anywhere; the whole reply being a number. A rating given
    out of another total ("7/9") is scaled by that total. A value outside [0, scale] is None.
    """
    for found in (_LABELLED.findall(text), _OUT_OF.findall(text)):
        if found:
            value, total = found[-1]
            denom = float(total) if total and float(total) > 0 else scale
            return _in_range(float(value), denom)
    whole = _number_in(text.strip().strip("*").rstrip("."))
    return None if whole is None else _in_range(whole, scale)


def _in_range(value: float, scale: float) -> float | None:
    if not math.isfinite(value) or value < 0 or value > scale:
        return None
    return value / scale


def _word(token: str) -> str:
    return token.strip().strip("*.,!:\"'").lower()


def parse_yes_no(completion: Completion) -> float | None:
    """Read P(yes) from a yes/no reply, or None.

    From the first token's top log-probabilities when given (P(yes) / (P(yes) + P(no))), else
    1.0 / 0.0 from the reply's first word.
    """
    if completion.logprobs:
        first = completion.logprobs[0]
        alternatives = first.top or ((first.token, first.logprob),)
        yes = math.fsum(math.exp(lp) for tok, lp in alternatives if _word(tok) in _YES)
        no = math.fsum(math.exp(lp) for tok, lp in alternatives if _word(tok) in _NO)
        if yes + no > 0:
            return yes / (yes + no)
    words = completion.text.split()
    if not words:
        return None
    first_word = _word(words[0])
    if first_word in _YES:
        return 1.0
    if first_word in _NO:
        return 0.0
    return None
