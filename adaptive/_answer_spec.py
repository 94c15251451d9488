r"""Answer specs: how to read a sample's answer, an extractor then a normalizer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from ._extractors import Extractor, ExtractorFn, default_extractor, extractor_from_config
from ._models import ValidatedModel
from ._normalize import Normalizer

__all__ = ["AnswerSpec", "as_answer_spec"]


class AnswerSpec(ValidatedModel):
    r"""How to read an answer from a sample: an extractor, then a normalizer.

    `extractor` accepts anything `extractor_from_config` does (a name, a config dict, a
    function, an `Extractor`); `normalizer` accepts a `Normalizer`, its options as a dict,
    or None for the defaults.

    Example:
        >>> spec = AnswerSpec(extractor="boxed")
        >>> spec.parse(r"... so $\boxed{\dfrac{3}{4}}$") == spec.parse(r"\boxed{0.75}")
        True
    """

    extractor: Extractor = Field(default_factory=default_extractor)
    normalizer: Normalizer = Field(default_factory=Normalizer)

    @field_validator("extractor", mode="before")
    @classmethod
    def _extractor(cls, v: Any) -> Extractor:
        return extractor_from_config(v)

    @field_validator("normalizer", mode="before")
    @classmethod
    def _normalizer(cls, v: Any) -> Any:
        if v is None:
            return Normalizer()
        if isinstance(v, Mapping):
            return Normalizer(**v)
        return v

    def extract(self, text: str) -> str | None:
        """Return the raw extracted answer before normalization, or None."""
        return self.extractor(text)

    def parse(self, text: str) -> str | None:
        """Return the normalized answer, or None if nothing was found or it normalizes to ""."""
        raw = self.extractor(text)
        if raw is None:
            return None
        return self.normalizer(raw) or None

    def read(self, text: str, answer: str | None = None) -> str | None:
        """The normalized answer of a sample, or None (it abstains).

        A pre-extracted `answer` (e.g. a recorded one) is only normalized; without one, `text`
        is parsed.
        """
        if answer is not None:
            return self.normalizer(answer) or None
        return self.parse(text)

    def __call__(self, text: str) -> str | None:
        """Parse `text` (same as `parse`)."""
        return self.parse(text)


def as_answer_spec(spec: AnswerSpec | Extractor | ExtractorFn | str | Mapping[str, Any] | None) -> AnswerSpec:
    """Coerce what a user passed as `answer=` into an `AnswerSpec`.

    None gives the default spec; a dict with "extractor" and/or "normalizer" keys is an
    `AnswerSpec` config; anything else is taken as the extractor.

    Raises:
        ConfigError: The value cannot be turned into an extractor.
    """
    if spec is None:
        return AnswerSpec()
    if isinstance(spec, AnswerSpec):
        return spec
    if isinstance(spec, Mapping) and "name" not in spec and set(spec) <= {"extractor", "normalizer"}:
        return AnswerSpec(**spec)
    return AnswerSpec(extractor=spec)
