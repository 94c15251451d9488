r"""Answer specs: how to read a sample's answer, an extractor then a normalizer.

`AnswerSpec().read(text)` returns the normalized answer, or None when the sample abstains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from ._extractors import Extractor, ExtractorField, ExtractorFn, default_extractor
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
        >>> spec.read(r"... so $\boxed{\dfrac{3}{4}}$") == spec.read(r"\boxed{0.75}")
        True
    """

    extractor: ExtractorField = Field(default_factory=default_extractor)
    normalizer: Normalizer = Field(default_factory=Normalizer)

    @field_validator("normalizer", mode="before")
    @classmethod
    def _normalizer(cls, v: Any) -> Any:
        if v is None:
            return Normalizer()
        if isinstance(v, Mapping):
            return Normalizer(**v)
        return v

    def read(self, text: str, extracted: str | None = None) -> str | None:
        """Return the normalized answer of a sample, or None (it abstains).

        Args:
            text: The sample's text; the extractor reads it when `extracted` is None.
            extracted: An answer already extracted upstream (an endpoint's
                `Completion.answer`, a recorded sample's answer): it is only normalized, and
                `text` is not looked at.

        Returns:
            The normalized answer; None when the extractor abstains or the answer normalizes
            to "".
        """
        raw = self.extractor.extract(text) if extracted is None else extracted
        if raw is None:
            return None
        return self.normalizer.normalize(raw) or None

    @classmethod
    def of(cls, spec: AnswerSpec | Extractor | ExtractorFn | str | Mapping[str, Any] | None) -> AnswerSpec:
        """An `AnswerSpec` from what a user may pass as `answer=` (see `as_answer_spec`).

        None gives the default spec; a dict with "extractor" and/or "normalizer" keys is an
        `AnswerSpec` config; anything else (an extractor name, config dict, function or
        `Extractor`) is taken as the extractor.

        Raises:
            ConfigError: The value cannot be turned into an extractor.
        """
        return as_answer_spec(spec)


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
