"""Field types for the strategies' pydantic configs, so each coercion is written once.

A field typed `AnswerSpecField` or `ExtractorField` takes what a user may pass for it (an
extractor name, a config dict, a function, ...) and holds the built object.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

from adaptive import AnswerSpec, Extractor, extractor_from_config

__all__: list[str] = []


def _as_extractor(value: Any) -> Extractor:
    # A one-argument wrapper: pydantic would take a second parameter for its ValidationInfo.
    return extractor_from_config(value)


AnswerSpecField = Annotated[AnswerSpec, BeforeValidator(AnswerSpec.of)]
"""An answer spec; also takes whatever `AnswerSpec.of` takes (None, an extractor name, config
dict or function, or an `AnswerSpec` config dict)."""

ExtractorField = Annotated[Extractor, BeforeValidator(_as_extractor)]
"""An extractor; also takes a registered name, a config dict or a function."""
