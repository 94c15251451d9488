"""Answer extraction: the extractors, their registry and configs."""

from __future__ import annotations

from typing import Any

import pytest

from adaptive import (
    AfterMarker,
    AnswerIs,
    Boxed,
    ConfigError,
    Extractor,
    JSONField,
    LastNumber,
    MultipleChoice,
    Regex,
    extractor_from_config,
)
from adaptive._extractors import (
    FirstOf,
    FunctionExtractor,
    default_extractor,
    extractor_names,
    register_extractor,
)

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
    assert AnswerIs().extract(text) == expected


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
    assert Boxed().extract(text) == expected


def test_after_marker_gsm8k() -> None:
    solution = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n48+24 = <<48+24=72>>72\n#### 72"
    assert AfterMarker().extract(solution) == "72"
    assert AfterMarker().extract("#### 1,000\nextra") == "1,000"
    assert AfterMarker().extract("#### ") is None
    assert AfterMarker(marker="Final:").extract("x\nFinal: no\nFinal: yes.") == "yes"
    assert AfterMarker().extract("no marker") is None


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
    assert LastNumber().extract(text) == expected


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
    assert MultipleChoice().extract(text) == expected


def test_multiple_choice_custom_letters() -> None:
    assert MultipleChoice(choices="abcd").extract("The answer is D.") == "D"
    assert MultipleChoice(choices="ABCD").extract("The answer is E.") is None
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
    assert JSONField(**options).extract(text) == expected


def test_json_field_rejects_empty_path_parts() -> None:
    with pytest.raises(ConfigError, match="dotted path"):
        JSONField(field="a..b")


def test_regex() -> None:
    assert Regex(r"Final:\s*(\w+)").extract("Final: no\nFinal: yes") == "yes"
    assert Regex(r"Final:\s*(\w+)", which="first").extract("Final: no\nFinal: yes") == "no"
    assert Regex(r"(?P<v>\d+) apples", "v").extract("3 apples, 4 apples") == "4"
    assert Regex(r"\d+", 0).extract("a 12 b 34") == "34"
    assert Regex(pattern=r"(\d+)").extract("none") is None
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
    assert last_word.extract("it is 42") == "42"
    assert last_word.extract("   ") is None
    assert FunctionExtractor(lambda t: "  ").extract("x") is None

    def bad(text: str) -> Any:
        return 42

    with pytest.raises(ConfigError, match="bad returned int"):
        FunctionExtractor(bad).extract("x")
    with pytest.raises(ConfigError, match="fn"):
        FunctionExtractor(fn=42)


def test_first_of_uses_the_first_that_answers() -> None:
    chain = FirstOf(Boxed(), "answer-is", {"name": "regex", "pattern": r"got (\d+)"}, lambda t: "fallback")
    assert chain.extract("\\boxed{1}. The answer is 2.") == "1"
    assert chain.extract("The answer is 2. got 3") == "2"
    assert chain.extract("got 3") == "3"
    assert chain.extract("nothing") == "fallback"
    assert FirstOf(Boxed()).extract("nothing") is None
    assert FirstOf(extractors=["boxed"]).extract("\\boxed{9}") == "9"
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
    assert default_extractor().extract(text) == expected


# --------------------------------------------------------------------------------------------
# Registry and configs
# --------------------------------------------------------------------------------------------


def test_extractor_from_config_forms() -> None:
    assert extractor_from_config("boxed") == Boxed()
    assert extractor_from_config("boxed", {}) == Boxed()
    assert extractor_from_config("gsm8k") == AfterMarker()
    assert extractor_from_config({"name": "regex", "pattern": r"(\d+)"}) == Regex(r"(\d+)")
    assert extractor_from_config("multiple-choice", {"choices": "ABCD"}) == MultipleChoice(choices="ABCD")
    assert extractor_from_config("default") == default_extractor()
    box = Boxed()
    assert extractor_from_config(box) is box
    wrapped = extractor_from_config(str.strip)
    assert isinstance(wrapped, FunctionExtractor)
    assert wrapped.extract("  x ") == "x"
    assert {"answer-is", "boxed", "first-of", "json", "last-number", "regex"} <= set(extractor_names())


@pytest.mark.parametrize(
    ("config", "options", "message"),
    [
        ("nope", None, "unknown extractor 'nope'; known: .*boxed"),
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
    @register_extractor("test-last-word")
    class LastWord(Extractor):
        def extract(self, text: str) -> str | None:
            words = text.split()
            return words[-1] if words else None

    assert extractor_from_config("test-last-word").extract("hello there world") == "world"
    assert LastWord().to_config() == {"name": "test-last-word"}
    with pytest.raises(ConfigError, match="already registered"):

        @register_extractor("boxed")
        class Other(Extractor):
            pass


def test_extractors_are_frozen() -> None:
    with pytest.raises(Exception, match="frozen"):
        AfterMarker().marker = "x"  # type: ignore[misc]
    with pytest.raises(Exception, match="frozen"):
        Regex(r"(\d)").pattern = "y"  # type: ignore[misc]
