"""Answer extraction, normalization and equivalence."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive import (
    AfterMarker,
    AnswerIs,
    AnswerSpec,
    Boxed,
    ConfigError,
    Extractor,
    FirstOf,
    JSONField,
    LastNumber,
    MultipleChoice,
    Regex,
    answers_equivalent,
    as_answer_spec,
    extractor_from_config,
    normalize_answer,
)
from adaptive._answers import (
    FunctionExtractor,
    Normalizer,
    default_extractor,
    extractor_names,
    register_extractor,
)

PROPERTY = settings(derandomize=True, database=None, max_examples=200, deadline=None)

# --------------------------------------------------------------------------------------------
# Extractors
# --------------------------------------------------------------------------------------------

ANSWER_IS_CASES = [
    ("The answer is 18.", "18"),
    ("Natalia sold 48 + 24 = 72 clips. The answer is 72.", "72"),
    ("the answer is: 42", "42"),
    ("So the final answer is **$1,250**.", "$1,250"),
    ("Therefore, the answer is **yajo**.", "yajo"),
    ("The answer is yajo.", "yajo"),
    ("First I thought the answer is 5. But the answer is 7.", "7"),
    ("The answer is 3.5 dollars. Done.", "3.5 dollars"),
    ("The answer is 18, because 6 * 3 = 18.", "18"),
    ("Answer: (B)", "(B)"),
    ("Final Answer: 12\nExplanation follows.", "12"),
    ("The answer is\n\n  -4\n", "-4"),
    ("The answer is $\\frac{1}{2}$.", "$\\frac{1}{2}$"),
    ("The ANSWER IS Paris!", "Paris"),
    ("answer is `x + 1`", "x + 1"),
    ("**The answer is 9.**", "9"),
    ("The answer is 1, 2, and 3.", "1, 2, and 3"),
    ("There is no final result here.", None),
    ("The answer is", None),
    ("The answer is .", None),
]


@pytest.mark.parametrize(("text", "expected"), ANSWER_IS_CASES)
def test_answer_is(text: str, expected: str | None) -> None:
    assert AnswerIs()(text) == expected


BOXED_CASES = [
    ("So $x = \\boxed{18}$.", "18"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("first \\boxed{3} then \\boxed{\\dfrac{\\sqrt{2}}{2}}", "\\dfrac{\\sqrt{2}}{2}"),
    ("\\fbox{A}", "A"),
    ("The set is \\boxed{\\{1, 2\\}}.", "\\{1, 2\\}"),
    ("\\boxed 5$ is it", "5"),
    ("\\boxed { 7 }", "7"),
    ("done \\boxed{4} and then \\boxed{5", "4"),  # truncated last box: the previous one counts
    ("\\boxed{}", None),
    ("\\boxedfoo{3}", None),
    ("no box here, the answer is 3", None),
]


@pytest.mark.parametrize(("text", "expected"), BOXED_CASES)
def test_boxed(text: str, expected: str | None) -> None:
    assert Boxed()(text) == expected


def test_after_marker_gsm8k() -> None:
    solution = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n48+24 = <<48+24=72>>72\n#### 72"
    assert AfterMarker()(solution) == "72"
    assert AfterMarker()("#### 1,000\nextra") == "1,000"
    assert AfterMarker()("#### ") is None
    assert AfterMarker(marker="Final:")("x\nFinal: no\nFinal: yes.") == "yes"
    assert AfterMarker()("no marker") is None


LAST_NUMBER_CASES = [
    ("She has 5 apples and buys 13 more, so 18.", "18"),
    ("It costs $1,000 in total.", "1000"),
    ("It costs $1,250.50.", "1250.50"),
    ("The temperature is -3.5 degrees", "-3.5"),
    ("Half of it is 1/2", "1/2"),
    ("That is 25% of the total", "25"),
    ("about 1e3 units", "1e3"),
    ("change of \u22124", "-4"),
    ("from 5-3", "3"),
    ("H2O and x2", None),
    ("values 1,2,3", "3"),
    ("the value .5 is small", ".5"),
    ("no digits at all", None),
    ("#### 72", "72"),
    ("Step 1: 3 + 4 = 7\nStep 2: 7 * 2 = 14", "14"),
]


@pytest.mark.parametrize(("text", "expected"), LAST_NUMBER_CASES)
def test_last_number(text: str, expected: str | None) -> None:
    assert LastNumber()(text) == expected


MULTIPLE_CHOICE_CASES = [
    ("The answer is (B).", "B"),
    ("The answer is B because the others are wrong.", "B"),
    ("answer: c)", None),  # bare lower-case letters are not answers (articles, variables)
    ("The answer is (c).", "C"),
    ("The correct option is D.", "D"),
    ("Answer: **A**", "A"),
    ("The answer is A good question to ask, but (C) is right.", "C"),
    ("I compute \\boxed{E}", "E"),
    ("$\\boxed{\\text{(B)}}$", "B"),
    ("B", "B"),
    ("(D)", "D"),
    ("C.", "C"),
    ("Let me check each.\n(A) is wrong, (B) is wrong, (D) is wrong.\nTherefore, C.", "C"),
    ("Reasoning here.\nB. 42 apples", "B"),
    ("Options (A) and (B) fail; I pick (D) here", "D"),
    ("The answer is F.", None),  # F is not a choice
    ("I am not sure.", None),
]


@pytest.mark.parametrize(("text", "expected"), MULTIPLE_CHOICE_CASES)
def test_multiple_choice(text: str, expected: str | None) -> None:
    assert MultipleChoice()(text) == expected


def test_multiple_choice_custom_letters() -> None:
    assert MultipleChoice(choices="abcd")("The answer is D.") == "D"
    assert MultipleChoice(choices="ABCD")("The answer is E.") is None
    for bad in ("", "AB1", "AAB", "ÄB"):
        with pytest.raises(ConfigError, match="choices"):
            MultipleChoice(choices=bad)


JSON_CASES: list[tuple[dict[str, Any], str, str | None]] = [
    ({}, 'Result: {"answer": "Paris"}', "Paris"),
    ({}, '```json\n{"reasoning": "6*3", "answer": 18}\n```', "18"),
    ({}, '{"answer": 1} and later {"answer": 2.5}', "2.5"),
    ({}, '{"answer": 1} then {"other": 2}', "1"),
    ({}, '{"answer": true}', "true"),
    ({}, '{"answer": [1, 2]}', "[1,2]"),
    ({}, '{"answer": null}', None),
    ({}, '{"answer": "  "}', None),
    ({}, "{not json} {\\frac{1}{2}}", None),
    ({"field": "result.answer"}, '{"result": {"answer": "x"}, "answer": "y"}', "x"),
    ({"field": "answers.1"}, '{"answers": ["a", "b"]}', "b"),
    ({"field": "answers.5"}, '{"answers": ["a", "b"]}', None),
    ({"field": "answer"}, '{"answer": 1, "meta": {"answer": 2}}', "1"),
]


@pytest.mark.parametrize(("options", "text", "expected"), JSON_CASES)
def test_json_field(options: dict[str, Any], text: str, expected: str | None) -> None:
    assert JSONField(**options)(text) == expected


def test_json_field_rejects_empty_path_parts() -> None:
    with pytest.raises(ConfigError, match="dotted path"):
        JSONField(field="a..b")


def test_regex() -> None:
    assert Regex(r"Final:\s*(\w+)")("Final: no\nFinal: yes") == "yes"
    assert Regex(r"Final:\s*(\w+)", which="first")("Final: no\nFinal: yes") == "no"
    assert Regex(r"(?P<v>\d+) apples", "v")("3 apples, 4 apples") == "4"
    assert Regex(r"\d+", 0)("a 12 b 34") == "34"
    assert Regex(pattern=r"(\d+)")("none") is None
    with pytest.raises(ConfigError, match="does not compile"):
        Regex("(unclosed")
    with pytest.raises(ConfigError, match="group 1 does not exist"):
        Regex(r"\d+")
    with pytest.raises(ConfigError, match="no group named"):
        Regex(r"(\d+)", "name")
    with pytest.raises(ConfigError, match="pattern"):
        Regex()


def test_function_extractor() -> None:
    last_word = FunctionExtractor(lambda t: t.split()[-1] if t.split() else None)
    assert last_word("it is 42") == "42"
    assert last_word("   ") is None
    assert FunctionExtractor(lambda t: "  ")("x") is None

    def bad(text: str) -> Any:
        return 42

    with pytest.raises(ConfigError, match="bad returned int"):
        FunctionExtractor(bad)("x")
    with pytest.raises(ConfigError, match="fn"):
        FunctionExtractor(fn=42)


def test_first_of_uses_the_first_that_answers() -> None:
    chain = FirstOf(Boxed(), "answer_is", {"name": "regex", "pattern": r"got (\d+)"}, lambda t: "fallback")
    assert chain("\\boxed{1}. The answer is 2.") == "1"
    assert chain("The answer is 2. got 3") == "2"
    assert chain("got 3") == "3"
    assert chain("nothing") == "fallback"
    assert FirstOf(Boxed())("nothing") is None
    assert FirstOf(extractors=["boxed"])("\\boxed{9}") == "9"
    with pytest.raises(ConfigError, match="extractors"):
        FirstOf()
    with pytest.raises(ConfigError, match="not both"):
        FirstOf(Boxed(), extractors=[Boxed()])
    with pytest.raises(ConfigError, match="unknown extractor"):
        FirstOf("nope")


DEFAULT_CASES = [
    ("Janet has 16 eggs... 16 - 3 - 4 = 9, 9 * 2 = 18\n#### 18", "18"),
    ("She makes 9 * $2 = $18 every day. The answer is 18.", "18"),
    ("Thus $x = \\boxed{\\frac{1}{2}}$. The answer is 0.5.", "\\frac{1}{2}"),
    ("Concatenating the last letters: y, a, j, o. The answer is yajo.", "yajo"),
    ("We get 3 + 4 = 7, so 7 in total", "7"),
    ("I cannot solve this.", None),
]


@pytest.mark.parametrize(("text", "expected"), DEFAULT_CASES)
def test_default_extractor(text: str, expected: str | None) -> None:
    assert default_extractor()(text) == expected


# --------------------------------------------------------------------------------------------
# Registry and configs
# --------------------------------------------------------------------------------------------


def test_extractor_from_config_forms() -> None:
    assert extractor_from_config("boxed") == Boxed()
    assert extractor_from_config("boxed", {}) == Boxed()
    assert extractor_from_config("gsm8k") == AfterMarker()
    assert extractor_from_config({"name": "regex", "pattern": r"(\d+)"}) == Regex(r"(\d+)")
    assert extractor_from_config("multiple_choice", {"choices": "ABCD"}) == MultipleChoice(choices="ABCD")
    assert extractor_from_config("default") == default_extractor()
    box = Boxed()
    assert extractor_from_config(box) is box
    wrapped = extractor_from_config(str.strip)
    assert isinstance(wrapped, FunctionExtractor)
    assert wrapped("  x ") == "x"
    assert {"answer_is", "boxed", "first_of", "json", "last_number", "regex"} <= set(extractor_names())


@pytest.mark.parametrize(
    ("config", "options", "message"),
    [
        ("nope", None, "unknown extractor 'nope'; known extractors: .*boxed"),
        ({"pattern": "x"}, None, "needs a 'name' key"),
        ({"name": "boxed"}, {"x": 1}, "not both"),
        ("boxed", {"bogus": 1}, "bogus"),
        ("regex", {"pattern": "("}, "does not compile"),
        ("default", {"x": 1}, "takes no options"),
        (Boxed(), {"x": 1}, "configure the instance"),
        (42, None, "cannot build an extractor from int"),
    ],
)
def test_extractor_from_config_errors(config: Any, options: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        extractor_from_config(config, options)


@pytest.mark.parametrize(
    "extractor",
    [
        AnswerIs(),
        Boxed(),
        AfterMarker(marker="Final:"),
        LastNumber(),
        MultipleChoice(choices="ABCD"),
        JSONField(field="a.b"),
        Regex(r"x(\d)", which="first"),
        default_extractor(),
        FirstOf(Regex(r"(\d)"), FunctionExtractor(str.upper)),
    ],
)
def test_to_config_round_trips(extractor: Extractor) -> None:
    assert extractor_from_config(extractor.to_config()) == extractor


def test_register_custom_extractor() -> None:
    @register_extractor("test_last_word")
    class LastWord(Extractor):
        def __call__(self, text: str) -> str | None:
            words = text.split()
            return words[-1] if words else None

    assert extractor_from_config("test_last_word")("hello there world") == "world"
    assert LastWord().to_config() == {"name": "test_last_word"}
    with pytest.raises(ConfigError, match="already registered"):

        @register_extractor("boxed")
        class Other(Extractor):
            pass


def test_extractors_are_frozen() -> None:
    with pytest.raises(Exception, match="frozen"):
        AfterMarker().marker = "x"  # type: ignore[misc]
    with pytest.raises(Exception, match="frozen"):
        Regex(r"(\d)").pattern = "y"  # type: ignore[misc]


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
    assert Normalizer(lowercase=False)("Yajo") == "Yajo"
    assert Normalizer(numbers=False)("1,000") == "1,000"
    assert Normalizer(units=False)("18 dollars") == "18 dollars"
    assert Normalizer(units=False)("$18") == "18"  # the currency sign is part of the number
    assert Normalizer(strip_markup=False)("**18**") == "**18**"
    assert Normalizer(collapse_whitespace=False, numbers=False)("a  b") == "a  b"
    assert Normalizer(lowercase=False)("18 Dollars") == "18"
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
# AnswerSpec
# --------------------------------------------------------------------------------------------


def test_answer_spec_parse() -> None:
    spec = AnswerSpec()
    assert spec.parse("So $\\boxed{\\dfrac{3}{4}}$.") == "0.75"
    assert spec.parse("The answer is 0.75.") == "0.75"
    assert spec("#### 1,000") == "1000"
    assert spec.parse("no answer here") is None
    assert spec.extract("The answer is **Yajo**.") == "Yajo"
    assert spec.parse("The answer is **Yajo**.") == "yajo"
    assert AnswerSpec(extractor=lambda t: "**").parse("x") is None  # empty after normalization


def test_answer_spec_read_normalizes_a_pre_extracted_answer_and_parses_otherwise() -> None:
    spec = AnswerSpec()
    # A recorded answer is normalized, never re-extracted from (its text is ignored).
    assert spec.read("The answer is 5.", answer="18.0") == "18"
    assert spec.read("ignored", answer="**") is None  # empty after normalization: abstains
    assert spec.read("The answer is 0.75.") == "0.75"
    assert spec.read("no answer here") is None


def test_answer_spec_coercion() -> None:
    assert AnswerSpec(extractor="boxed").extractor == Boxed()
    assert AnswerSpec(extractor={"name": "json", "field": "a"}).extractor == JSONField(field="a")
    assert AnswerSpec(normalizer={"lowercase": False}).normalizer == Normalizer(lowercase=False)
    assert AnswerSpec(normalizer=None).normalizer == Normalizer()
    spec = AnswerSpec(extractor="multiple_choice")
    assert as_answer_spec(spec) is spec
    assert as_answer_spec(None) == AnswerSpec()
    assert as_answer_spec("boxed") == AnswerSpec(extractor="boxed")
    assert as_answer_spec(Boxed()) == AnswerSpec(extractor="boxed")
    assert as_answer_spec({"name": "regex", "pattern": "(a)"}).extractor == Regex("(a)")
    assert as_answer_spec({"extractor": "boxed", "normalizer": {"numbers": False}}) == AnswerSpec(
        extractor="boxed", normalizer=Normalizer(numbers=False)
    )
    assert as_answer_spec(str.strip).parse("  X ") == "x"
    with pytest.raises(ConfigError, match="unknown extractor"):
        AnswerSpec(extractor="nope")
    with pytest.raises(ConfigError, match="lowercase"):
        AnswerSpec(normalizer={"lowercase": []})
    with pytest.raises(ConfigError, match="cannot build an extractor"):
        as_answer_spec(3)  # type: ignore[arg-type]


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
