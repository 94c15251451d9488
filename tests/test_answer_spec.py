"""AnswerSpec: extraction then normalization, and what `answer=` accepts."""

from __future__ import annotations

import pytest

from adaptive import AnswerSpec, Boxed, ConfigError, JSONField, Regex
from adaptive._answer_spec import as_answer_spec
from adaptive._normalize import Normalizer

# --------------------------------------------------------------------------------------------
# AnswerSpec
# --------------------------------------------------------------------------------------------


def test_answer_spec_read_extracts_then_normalizes() -> None:
    spec = AnswerSpec()
    assert spec.read("So $\\boxed{\\dfrac{3}{4}}$.") == "0.75"
    assert spec.read("The answer is 0.75.") == "0.75"
    assert spec.read("#### 1,000") == "1000"
    assert spec.read("no answer here") is None
    assert spec.extractor.extract("The answer is **Yajo**.") == "Yajo"
    assert spec.read("The answer is **Yajo**.") == "yajo"
    assert AnswerSpec(extractor=lambda t: "**").read("x") is None  # empty after normalization


def test_answer_spec_read_normalizes_a_pre_extracted_answer_and_extracts_otherwise() -> None:
    spec = AnswerSpec()
    # A recorded answer is normalized, never re-extracted from (its text is ignored).
    assert spec.read("The answer is 5.", extracted="18.0") == "18"
    assert spec.read("ignored", extracted="**") is None  # empty after normalization: abstains
    assert spec.read("The answer is 0.75.") == "0.75"
    assert spec.read("no answer here") is None


def test_answer_spec_coercion() -> None:
    assert AnswerSpec(extractor="boxed").extractor == Boxed()
    assert AnswerSpec(extractor={"name": "json", "field": "a"}).extractor == JSONField(field="a")
    assert AnswerSpec(normalizer={"lowercase": False}).normalizer == Normalizer(lowercase=False)
    assert AnswerSpec(normalizer=None).normalizer == Normalizer()
    spec = AnswerSpec(extractor="multiple-choice")
    assert as_answer_spec(spec) is spec
    assert as_answer_spec(None) == AnswerSpec()
    assert as_answer_spec("boxed") == AnswerSpec(extractor="boxed")
    assert as_answer_spec(Boxed()) == AnswerSpec(extractor="boxed")
    assert as_answer_spec({"name": "regex", "pattern": "(a)"}).extractor == Regex("(a)")
    assert as_answer_spec({"extractor": "boxed", "normalizer": {"numbers": False}}) == AnswerSpec(
        extractor="boxed", normalizer=Normalizer(numbers=False)
    )
    assert as_answer_spec(str.strip).read("  X ") == "x"
    with pytest.raises(ConfigError, match="unknown extractor"):
        AnswerSpec(extractor="nope")
    with pytest.raises(ConfigError, match="lowercase"):
        AnswerSpec(normalizer={"lowercase": []})
    with pytest.raises(ConfigError, match="cannot build an extractor"):
        as_answer_spec(3)  # type: ignore[arg-type]
