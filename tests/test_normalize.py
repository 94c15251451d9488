"""Answer normalization and equivalence."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive import ConfigError, answers_equivalent, normalize_answer
from adaptive._normalize import Normalizer

PROPERTY = settings(derandomize=True, database=None, max_examples=200, deadline=None)

# --------------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------------

EQUIVALENT = [
    # numbers: separators, zeros, exponents, signs
    ("1,000", "1000"),
    ("1000.0", "1000"),
    ("1e3", "1000"),
    ("1,000,000", "1e6"),
    ("-0", "0"),
    ("-0.0", "0"),
    ("+5", "5"),
    ("5.", "5"),
    (".5", "0.5"),
    ("0.50", "1/2"),
    ("- 3", "-3"),
    ("\u22123", "-3"),
    # exact fractions
    ("0.75", "3/4"),
    ("3/4", "\\frac{3}{4}"),
    ("\\dfrac{3}{4}", "0.75"),
    ("\\tfrac34", "6/8"),
    ("-\\frac{1}{2}", "-0.5"),
    ("\\frac{-1}{2}", "-1/2"),
    ("2/6", "1/3"),
    ("\\frac{1}{3}", "1/3"),
    ("3 / 4", "3/4"),
    # currency, percent, degrees and units
    ("$18", "18"),
    ("\\$18.00", "18"),
    ("-$5", "-5"),
    ("18 dollars", "18"),
    ("50%", "50"),
    ("50\\%", "50"),
    ("50 percent", "50"),
    ("30^\\circ", "30"),
    ("30^{\\circ}", "30"),
    ("30°", "30"),
    ("5 cm", "5"),
    ("5\\,\\text{cm}", "5"),
    ("10 km/h", "10"),
    ("1{,}000", "1000"),
    ("1\\,000", "1000"),
    ("x = 5", "5"),
    # markup and punctuation
    ("**18**", "18"),
    ("$18$", "18"),
    ("$$18$$", "18"),
    ("\\(18\\)", "18"),
    ("\\[18\\]", "18"),
    ("\\boxed{18}", "18"),
    ("\\text{18}", "18"),
    ("`18`", "18"),
    ("18.", "18"),
    ("**$1,000.00$**.", "1000"),
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    # text answers
    ("Yajo", "yajo"),
    ("yajo.", "yajo"),
    ('"yajo"', "yajo"),
    ("\u201cyajo\u201d", "yajo"),
    ("  The   Cat ", "the cat"),
    ("\\text{(B)}", "b"),
    ("(B)", "B"),
    ("\\textbf{Paris}", "paris"),
    ("\\left(1, 2\\right)", "(1, 2)"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_equivalent(a: str, b: str) -> None:
    assert normalize_answer(a) == normalize_answer(b)
    assert answers_equivalent(a, b)


NOT_EQUIVALENT = [
    ("0.333", "1/3"),  # exact comparison: a rounded decimal is not the fraction
    ("0.3333333333", "1/3"),
    ("1.000", "1000"),  # a period is always a decimal point: 1.000 == 1
    ("1,5", "1.5"),  # "1,5" is not a number (commas only separate thousands)
    ("1,0000", "10000"),
    ("0.5", "50%"),  # percent signs are stripped, not converted
    ("2 pi", "2"),  # pi is a value, not a unit
    ("5 million", "5"),
    ("3 halves", "3"),
    ("5x", "5"),
    ("1 1/2", "1.5"),  # mixed numbers are left as text
    ("(1, 2)", "1, 2"),  # a pair keeps its parentheses
    ("18", "-18"),
    ("3/0", "0"),
    ("yajo", "yaj"),
    ("5!", "5"),  # a factorial is not a trailing exclamation mark
]


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_not_equivalent(a: str, b: str) -> None:
    assert normalize_answer(a) != normalize_answer(b)
    assert not answers_equivalent(a, b)


CANONICAL = [
    ("1,000", "1000"),
    ("3/4", "0.75"),
    ("\\frac{2}{6}", "1/3"),
    ("-\\frac{4}{6}", "-2/3"),
    ("1/1024", "0.0009765625"),
    ("1.5e-3", "0.0015"),
    ("-0", "0"),
    ("**Yajo**.", "yajo"),
    ("\\dfrac{x}{2}", "\\frac{x}{2}"),
    ("1e500", "1e500"),  # too many digits to expand: left as text
    ("", ""),
    ("**", ""),
]


@pytest.mark.parametrize(("raw", "key"), CANONICAL)
def test_canonical_forms(raw: str, key: str) -> None:
    assert normalize_answer(raw) == key


def test_normalizer_options() -> None:
    assert Normalizer(lowercase=False).normalize("Yajo") == "Yajo"
    assert Normalizer(numbers=False).normalize("1,000") == "1,000"
    assert Normalizer(units=False).normalize("18 dollars") == "18 dollars"
    assert Normalizer(units=False).normalize("$18") == "18"  # the currency sign is part of the number
    assert Normalizer(strip_markup=False).normalize("**18**") == "**18**"
    assert Normalizer(collapse_whitespace=False, numbers=False).normalize("a  b") == "a  b"
    assert Normalizer(lowercase=False).normalize("18 Dollars") == "18"
    assert normalize_answer("1,000", Normalizer(numbers=False)) == "1,000"
    with pytest.raises(ConfigError, match="lowercase"):
        Normalizer(lowercase="maybe")


def test_answers_equivalent_abstentions() -> None:
    assert not answers_equivalent(None, None)
    assert not answers_equivalent("1", None)
    assert not answers_equivalent("", "")  # empty keys are abstentions, not agreement
    assert answers_equivalent("YES", "yes")
    assert not answers_equivalent("YES", "yes", Normalizer(lowercase=False))


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        "1,000", "-", "0", ".", "5", "3/4", "\\frac{1}{2}", "\\dfrac", "{", "}", "$", "**", "*",
        "(", ")", " ", "  ", "%", "x", "=", "pi", "cm", "dollars", "e3", ",", ";", ":", "?", "!",
        "\\text{", "\\boxed{", "\\,", "\\%", "\"", "'", "`", "\u2212", "B", "Yajo", "\n", "^\\circ",
    ]
)  # fmt: skip


@PROPERTY
@given(st.lists(_PIECES, max_size=8).map("".join))
def test_normalization_is_idempotent_on_answer_like_text(text: str) -> None:
    key = normalize_answer(text)
    assert normalize_answer(key) == key


@PROPERTY
@given(st.text(max_size=30))
def test_normalization_is_idempotent_on_any_text(text: str) -> None:
    key = normalize_answer(text)
    assert normalize_answer(key) == key


@PROPERTY
@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_integer_spellings_agree(n: int) -> None:
    key = normalize_answer(str(n))
    assert key == str(n)
    assert normalize_answer(f"{n:,}") == key
    assert normalize_answer(f"{n}.0") == key
    assert normalize_answer(f"$\\boxed{{{n}}}$") == key


@PROPERTY
@given(st.fractions(min_value=-1000, max_value=1000, max_denominator=64))
def test_fraction_spellings_agree_and_are_exact(value: Fraction) -> None:
    sign = "-" if value < 0 else ""
    p, q = abs(value.numerator), value.denominator
    slash = normalize_answer(f"{sign}{p}/{q}")
    assert normalize_answer(f"{sign}\\frac{{{p}}}{{{q}}}") == slash
    assert normalize_answer(f"{sign}{p * 3}/{q * 3}") == slash
    assert Fraction(slash) == value  # the key is the exact value, never a rounding of it


@PROPERTY
@given(st.decimals(min_value=-(10**6), max_value=10**6, places=4, allow_nan=False, allow_infinity=False))
def test_decimal_keys_are_exact(value: Any) -> None:
    key = normalize_answer(str(value))
    assert Fraction(key) == Fraction(value)
