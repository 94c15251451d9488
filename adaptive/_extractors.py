r"""Extractors: find a model's final answer in its text, or abstain with None.

An extractor is a small frozen pydantic config with `extract(text) -> str | None`. Each can
also be built from a name and a dict (`extractor_from_config("regex", {"pattern": ...})`), so
strategies can be configured from JSON/YAML. What is extracted still has to be normalized
before answers are compared (`adaptive._normalize`); `AnswerSpec` pairs the two steps.

Extractors (registry name in brackets):

- `AnswerIs` [answer-is]: the text after the last "answer is" / "answer:".
- `Boxed` [boxed]: the content of the last `\boxed{...}` / `\fbox{...}` (nested braces ok).
- `AfterMarker` [after-marker, gsm8k]: the rest of the line after the last marker (`####`).
- `LastNumber` [last-number]: the last number in the text.
- `MultipleChoice` [multiple-choice]: a choice letter such as "(B)" or "answer is B".
- `JSONField` [json-field, json]: a field of the last JSON object in the text.
- `Regex` [regex]: a capture group of the last (or first) match of a pattern.
- `FunctionExtractor` [function]: any user function `str -> str | None`.
- `FirstOf` [first-of]: the first of several extractors that does not abstain.
- `default_extractor()` [default]: boxed, then `####`, then "answer is", then last number.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BeforeValidator, Field, field_validator, model_validator

from ._exceptions import ConfigError
from ._models import ValidatedModel
from ._normalize import brace_pairs
from ._registry import Registry

__all__ = [
    "EXTRACTORS",
    "AfterMarker",
    "AnswerIs",
    "Boxed",
    "Extractor",
    "ExtractorField",
    "ExtractorFn",
    "FirstOf",
    "FunctionExtractor",
    "JSONField",
    "LastNumber",
    "MultipleChoice",
    "Regex",
    "default_extractor",
    "extractor_from_config",
    "extractor_names",
    "register_extractor",
]

ExtractorFn = Callable[[str], str | None]
"""Any callable that finds an answer in a text, or returns None to abstain."""


class Extractor(ValidatedModel):
    """Base class of extractors: a frozen, validated config whose `extract` reads a text.

    Subclasses implement `extract(text) -> str | None`; None means "no answer found"
    (an abstention, which never counts as a vote). Extractors never return an empty or
    whitespace-only string: they abstain instead.
    """

    kind: ClassVar[str] = ""

    def extract(self, text: str) -> str | None:
        """Find the answer in `text`, or return None to abstain."""
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        """Return a dict that `extractor_from_config` turns back into an equal extractor."""
        return {"name": self.kind, **self.model_dump()}


_E = TypeVar("_E", bound=Extractor)
#: Extractors by name (`answer-is`, `boxed`, ...); installed distributions may declare more
#: under the `adaptive.extractors` entry-point group.
EXTRACTORS: Registry[Extractor] = Registry("extractor", group="adaptive.extractors")


def register_extractor(name: str, *aliases: str) -> Callable[[type[_E]], type[_E]]:
    """Class decorator: make an `Extractor` subclass buildable by name.

    Example:
        >>> @register_extractor("last-word")
        ... class LastWord(Extractor):
        ...     def extract(self, text: str) -> str | None:
        ...         words = text.split()
        ...         return words[-1] if words else None

    Raises:
        ConfigError: The name is not lower-case words joined by hyphens, or is taken.
    """

    def decorate(cls: type[_E]) -> type[_E]:
        for key in (name, *aliases):
            EXTRACTORS.register(key, cls)
        cls.kind = name
        return cls

    return decorate


def extractor_names() -> tuple[str, ...]:
    """Return the names (and aliases) that `extractor_from_config` knows, sorted."""
    return EXTRACTORS.names()


def extractor_from_config(
    config: str | Mapping[str, Any] | Extractor | ExtractorFn,
    options: Mapping[str, Any] | None = None,
) -> Extractor:
    r"""Build an extractor from a name and options, a config dict, or pass one through.

    Args:
        config: A registered name (`"boxed"`), a dict with a `"name"` key and the options
            (`{"name": "regex", "pattern": "Final: (.*)"}`), an `Extractor` (returned as is),
            or a plain function `str -> str | None` (wrapped in `FunctionExtractor`).
        options: Options for a name given as a string.

    Raises:
        ConfigError: Unknown name (the message lists the known ones), missing name, or
            options the extractor does not accept.

    Example:
        >>> extractor_from_config("regex", {"pattern": r"Final: (\d+)"}).extract("Final: 7")
        '7'
    """
    if isinstance(config, Extractor):
        if options:
            raise ConfigError("options were given with an Extractor instance; configure the instance instead")
        return config
    if isinstance(config, str | Mapping):
        return EXTRACTORS.build(config, options)
    if callable(config):
        if options:
            raise ConfigError("options cannot be given with a function extractor")
        return FunctionExtractor(fn=config)
    raise ConfigError(
        f"cannot build an extractor from {type(config).__name__}; pass a name, a config dict, "
        "an Extractor or a function str -> str | None"
    )


def _last_match(pattern: re.Pattern[str] | str, text: str) -> re.Match[str] | None:
    """Return the last non-overlapping match of `pattern` in `text`, or None."""
    last = None
    for last in re.finditer(pattern, text):  # noqa: B007 - only the last match is used
        pass
    return last


def _tidy(text: str) -> str:
    """Trim whitespace, markdown bold/code markers and trailing sentence punctuation."""
    prev = None
    while prev != text:
        prev = text
        text = text.strip().strip("*`").rstrip(".,;:!?")
    return text


def _answer_or_none(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text or None


_ANSWER_IS = re.compile(r"\banswer\s*(?:is\b|:|=)", re.IGNORECASE)
# A sentence ends at . ! ? followed by whitespace or the end (so "3.5" is not cut).
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
# Clauses that follow an answer rather than belong to it: "18, because ...".
_TRAILING_CLAUSE = re.compile(
    r"[,;]\s+(?:because|since|as|which|so|but|therefore|thus|hence|given|where)\b.*$", re.IGNORECASE
)


@register_extractor("answer-is")
class AnswerIs(Extractor):
    """The text after the last "answer is" (also "answer:" and "answer =").

    Rules:
        - Case-insensitive; "The final answer is", "answer is **X**" and "Answer: X" all match.
          The last occurrence in the text wins.
        - A colon right after the phrase is skipped ("The answer is: 42").
        - If nothing follows on the same line, the next non-empty line is taken.
        - The answer stops at the end of the line, at the end of the sentence (". ", "! ",
          "? " or a final ".", so decimals like 3.5 stay whole), and before a trailing clause
          such as ", because ..." or "; so ...".
        - Surrounding `**`/backticks and trailing punctuation are trimmed.

    Example:
        >>> AnswerIs().extract("So the answer is: **18**. Done.")
        '18'
    """

    def extract(self, text: str) -> str | None:
        """Return the answer after the last "answer is", or None."""
        last = _last_match(_ANSWER_IS, text)
        if last is None:
            return None
        rest = text[last.end() :].lstrip(" \t:*")
        line = next((ln for ln in rest.splitlines() if ln.strip()), "")
        end = _SENTENCE_END.search(line)
        if end is not None:
            line = line[: end.start()]
        line = _TRAILING_CLAUSE.sub("", line)
        return _answer_or_none(_tidy(line))


_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


@register_extractor("boxed")
class Boxed(Extractor):
    r"""The content of the last complete `\boxed{...}` or `\fbox{...}`.

    Rules:
        - Braces nest: `\boxed{\frac{1}{2}}` gives `\frac{1}{2}`; escaped braces are content.
        - The space form `\boxed 5` (used in the MATH data set) gives the next token.
        - A last box that is never closed (a truncated answer) is skipped in favour of the
          previous complete one; an empty box abstains.

    Example:
        >>> Boxed().extract(r"so $x = \boxed{\dfrac{1}{2}}$.")
        '\\dfrac{1}{2}'
    """

    def extract(self, text: str) -> str | None:
        """Return the content of the last complete box, or None."""
        pairs: dict[int, int] | None = None
        for match in reversed(list(_BOX.finditer(text))):
            i = match.end()
            while i < len(text) and text[i] in " \t":
                i += 1
            if i < len(text) and text[i] == "{":
                pairs = brace_pairs(text) if pairs is None else pairs
                content = text[i + 1 : pairs[i]].strip() if i in pairs else ""
                if content:
                    return content
            elif i > match.end():
                token = re.match(r"[^\s$]+", text[i:])
                if token is not None:
                    return token.group(0)
        return None


@register_extractor("after-marker", "gsm8k")
class AfterMarker(Extractor):
    r"""The rest of the line after the last `marker` (GSM8K's `#### 18` by default).

    Example:
        >>> AfterMarker().extract("5 + 13 = 18\n#### 18")
        '18'
    """

    marker: str = Field(default="####", min_length=1)

    def extract(self, text: str) -> str | None:
        """Return the text after the last marker up to the end of its line, or None."""
        at = text.rfind(self.marker)
        if at < 0:
            return None
        rest = text[at + len(self.marker) :].split("\n", 1)[0]
        return _answer_or_none(_tidy(rest))


_NUMBER = re.compile(
    r"(?<![\w.])"  # not inside a word or another number ("x2", "v1.2")
    r"(?P<sign>[-+\u2212])?\s?(?:\\?\$\s?)?"  # sign, then an optional currency sign
    r"(?P<num>\d{1,3}(?:,\d{3})+(?![\d,])(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?P<exp>[eE][-+]?\d+)?"
    r"(?:/(?P<den>\d+(?:\.\d+)?))?"
)


@register_extractor("last-number")
class LastNumber(Extractor):
    """The last number in the text, as plain digits.

    Rules:
        - Accepts signs (`-3.5`, also the Unicode minus), thousands commas (`1,000` -> `1000`),
          currency (`$18` -> `18`), decimals (`.5`), exponents (`1e3`), and simple fractions
          (`1/2`). A trailing `%` is dropped (`50%` -> `50`).
        - A sentence-final period is not a decimal point (`18.` -> `18`).
        - Digits glued to letters before them are not numbers (`x2`, `H2O`), and a minus
          glued to a word is a hyphen (`5-3` -> `3`).

    Example:
        >>> LastNumber().extract("She pays $1,250.50 in total, i.e. 25% more.")
        '25'
    """

    def extract(self, text: str) -> str | None:
        """Return the last number, or None if there is none."""
        last = _last_match(_NUMBER, text)
        if last is None:
            return None
        sign = "-" if last.group("sign") in ("-", "\u2212") else ""
        number = sign + last.group("num").replace(",", "") + (last.group("exp") or "")
        if last.group("den"):
            number += "/" + last.group("den")
        return number


@functools.lru_cache(maxsize=64)
def _choice_patterns(choices: str) -> tuple[re.Pattern[str], ...]:
    """Compile the five rules of `MultipleChoice` (in its order) for one set of letters."""
    upper = f"[{choices}]"
    anycase = f"[{choices}{choices.lower()}]"
    after = r"(?=[\s*$}]*(?:$|[).,:;!?\]\-–—]|(?:because|since|as|which)\b))"
    letter = rf"(?:\(\s*(?P<p>{anycase})\s*\)|(?P<u>{upper}){after})"
    wrap = r"(?:\*\*|\$|\\text\{|\\textbf\{|\\boxed\{)*"
    return (
        re.compile(
            rf"(?i:\b(?:answer|option|choice)\b(?:\s+is\b)?)\s*[:=]?\s*(?:\*\*)?\s*{wrap}\s*{letter}",
            re.MULTILINE,
        ),
        re.compile(rf"\\boxed\{{\s*(?:\\text(?:bf)?\{{)?\s*\(?\s*(?P<p>{anycase})\s*\)?\s*\}}?\s*\}}"),
        re.compile(rf"\A[\s*$(]*(?P<u>{upper})[\s*$).:]*\Z"),
        re.compile(rf"(?:^[\s*]*\(?(?P<u>{upper})[.):]|\b(?P<p>{upper})[\s*]*[.!)]?[\s*]*$)"),
        re.compile(rf"\((?P<u>{upper})\)"),
    )


@register_extractor("multiple-choice")
class MultipleChoice(Extractor):
    r"""A multiple-choice letter, returned upper-case.

    Tried in this order (the last occurrence wins within each rule):

    1. "answer/option/choice is X" or "answer: X", where X is `(B)` (any case) or an
       upper-case letter followed by the end, punctuation, a dash or "because/since/as/which"
       (so "The answer is A good question" does not give A). `**B**` and `$B$` are accepted.
    2. `\boxed{B}` (also `\boxed{\text{(B)}}`).
    3. The whole text is just the letter: "B", "(B)", "B.", "**B**".
    4. The last line starts with "B." / "B)" / "(B)" / "B:", or ends with a standalone
       upper-case letter ("Therefore, C.").
    5. The last parenthesised upper-case letter anywhere, e.g. "I pick (D) here".

    Args:
        choices: The valid letters, e.g. "ABCD"; letters outside it are never returned.

    Example:
        >>> MultipleChoice(choices="ABCD").extract("Option (c) fits best, so the answer is (C).")
        'C'
    """

    choices: str = Field(default="ABCDE", min_length=1, max_length=26)

    @field_validator("choices")
    @classmethod
    def _letters(cls, v: str) -> str:
        v = v.upper()
        if not v.isalpha() or not v.isascii() or len(set(v)) != len(v):
            raise ValueError("choices must be distinct ASCII letters such as 'ABCD'")
        return v

    def extract(self, text: str) -> str | None:
        """Return the chosen letter, or None."""
        lines = [ln for ln in text.splitlines() if ln.strip()]
        last_line = lines[-1] if lines else ""
        for rule, pattern in enumerate(_choice_patterns(self.choices)):
            target = last_line if rule == 3 else text
            found = _last_match(pattern, target)
            if found is not None:
                groups = found.groupdict()
                return str(groups.get("p") or groups.get("u")).upper()
        return None


def _json_value(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if isinstance(obj, Mapping) and part in obj:
            obj = obj[part]
        elif isinstance(obj, list) and part.lstrip("-").isdigit() and -len(obj) <= int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return None
    return obj


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Return every top-level JSON object in the text, in order (fenced or not)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    at = text.find("{")
    while at >= 0:
        try:
            obj, end = decoder.raw_decode(text, at)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to be an answer
            at = text.find("{", at + 1)
            continue
        if isinstance(obj, dict):
            found.append(obj)
        at = text.find("{", end)
    return found


@register_extractor("json-field", "json")
class JSONField(Extractor):
    r"""A field of the last JSON object in the text that has it.

    Rules:
        - Objects are found anywhere, including inside ```json fences; later objects win.
        - `field` is a dotted path: `"result.answer"`, and list items by index `"answers.0"`.
        - Strings are returned as is; numbers as JSON writes them (`18`, `1.5`); booleans as
          `true`/`false`; lists and objects as compact JSON; null abstains.

    Example:
        >>> JSONField(field="result.answer")('```json\n{"result": {"answer": 42}}\n```')
        '42'
    """

    field: str = Field(default="answer", min_length=1)

    @field_validator("field")
    @classmethod
    def _path(cls, v: str) -> str:
        if any(not part for part in v.split(".")):
            raise ValueError("field must be a key or a dotted path like 'result.answer' with no empty parts")
        return v

    def extract(self, text: str) -> str | None:
        """Return the field's value as a string, or None."""
        path = tuple(self.field.split("."))
        for obj in reversed(_json_objects(text)):
            value = _json_value(obj, path)
            if value is None:
                continue
            if isinstance(value, str):
                return _answer_or_none(value)
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return None


@register_extractor("regex")
class Regex(Extractor):
    r"""A capture group of the last (or first) match of a regular expression.

    Args:
        pattern: A Python regular expression (use inline flags such as `(?i)` for options).
        group: The group number or name to return (0 = the whole match).
        which: "last" (default) or "first" match.

    Example:
        >>> Regex(r"Final:\s*(\w+)").extract("Final: no\nFinal: yes")
        'yes'
    """

    pattern: str = Field(min_length=1)
    group: int | str = 1
    which: Literal["last", "first"] = "last"

    def __init__(self, pattern: str | None = None, group: int | str | None = None, /, **data: Any) -> None:
        if pattern is not None:
            data["pattern"] = pattern
        if group is not None:
            data["group"] = group
        super().__init__(**data)

    @model_validator(mode="after")
    def _compiles(self) -> Regex:
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern does not compile ({exc}); fix the regular expression") from None
        if isinstance(self.group, int):
            if not 0 <= self.group <= compiled.groups:
                raise ValueError(
                    f"group {self.group} does not exist: the pattern has {compiled.groups} group(s); "
                    "add a capture group or pass group=0 for the whole match"
                )
        elif self.group not in compiled.groupindex:
            raise ValueError(f"the pattern has no group named {self.group!r}")
        return self

    def extract(self, text: str) -> str | None:
        """Return the group's text from the chosen match, or None."""
        find = re.search if self.which == "first" else _last_match
        match = find(self.pattern, text)
        if match is None:
            return None
        return _answer_or_none(match.group(self.group))


@register_extractor("function")
class FunctionExtractor(Extractor):
    """Wrap a user function `str -> str | None` as an extractor.

    The function's exceptions propagate unchanged. Returning anything but a string or None
    raises `ConfigError`; a blank string counts as an abstention.

    Example:
        >>> FunctionExtractor(lambda t: t.split()[-1]).extract("it is 42")
        '42'
    """

    fn: Callable[[str], str | None]

    def __init__(self, fn: ExtractorFn | None = None, /, **data: Any) -> None:
        if fn is not None:
            data["fn"] = fn
        super().__init__(**data)

    def extract(self, text: str) -> str | None:
        """Return what the function returns (blank -> None)."""
        value: object = self.fn(text)
        if value is not None and not isinstance(value, str):
            name = getattr(self.fn, "__name__", repr(self.fn))
            raise ConfigError(
                f"extractor function {name} returned {type(value).__name__}; it must return a str or None"
            )
        return _answer_or_none(value)

    def to_config(self) -> dict[str, Any]:
        """`{"name": "function", "fn": fn}` (the function itself, not serialisable)."""
        return {"name": self.kind, "fn": self.fn}


@register_extractor("first-of")
class FirstOf(Extractor):
    """Try extractors in order and return the first answer that is not an abstention.

    Each item may be an `Extractor`, a registered name, a config dict or a function.

    Example:
        >>> FirstOf("boxed", "answer-is").extract("The answer is 7.")
        '7'
    """

    extractors: tuple[Extractor, ...] = Field(min_length=1)

    def __init__(self, *extractors: Any, **data: Any) -> None:
        if extractors:
            if "extractors" in data:
                raise ConfigError("give FirstOf its extractors positionally or as extractors=[...], not both")
            data["extractors"] = extractors
        super().__init__(**data)

    @field_validator("extractors", mode="before")
    @classmethod
    def _build(cls, v: Any) -> Any:
        if isinstance(v, str | Mapping) or callable(v):
            raise ValueError("extractors must be a list of extractors, names, configs or functions")
        return tuple(extractor_from_config(item) for item in v)

    def extract(self, text: str) -> str | None:
        """Return the first non-None answer, or None if every extractor abstains."""
        for extractor in self.extractors:
            answer = extractor.extract(text)
            if answer is not None:
                return answer
        return None

    def to_config(self) -> dict[str, Any]:
        """`{"name": "first-of", "extractors": [<each extractor's config>]}`."""
        return {"name": self.kind, "extractors": [e.to_config() for e in self.extractors]}


def default_extractor() -> FirstOf:
    """Boxed, then GSM8K's `####`, then "the answer is", then the last number in the text."""
    return FirstOf(Boxed(), AfterMarker(), AnswerIs(), LastNumber())


def _default_factory(**options: Any) -> Extractor:
    if options:
        raise ConfigError(f"the default extractor takes no options; got {sorted(options)}")
    return default_extractor()


EXTRACTORS.register("default", _default_factory)


def _as_extractor(value: Any) -> Extractor:
    # A one-argument wrapper: pydantic would take a second parameter for its ValidationInfo.
    return extractor_from_config(value)


ExtractorField = Annotated[Extractor, BeforeValidator(_as_extractor)]
"""The type of a config field holding an extractor: it also takes a registered name, a config
dict or a function, built with `extractor_from_config` (e.g. `finish_marker: ExtractorField`)."""
