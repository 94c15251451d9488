r"""Normalization: bring an extracted answer to a canonical comparison key.

Voting only works when equal answers compare equal: `"**$1,000$**."`, `"1000"`, `"1000.0"`
and `"1e3"` all become `"1000"`. The rules (each can be switched off) are listed on
`Normalizer`. Two choices worth knowing up front: a comma is a thousands separator only before
groups of exactly three digits and a period is always a decimal point, so `"1,000" == "1000"`
but `"1.000" == "1"`; and numbers compare exactly (as fractions of their decimal digits), so
`"0.75" == "3/4"` but `"0.333" != "1/3"`.
"""

from __future__ import annotations

import re
from fractions import Fraction

from ._models import ValidatedModel

__all__ = ["Normalizer", "answers_equivalent", "normalize_answer"]


def brace_pairs(text: str) -> dict[int, int]:
    r"""Map the index of each "{" to the index of its matching "}", in one pass.

    Shared with the extractors (`Boxed`), which find boxes the same way the normalizer
    unwraps them.

    Escaped braces (`\{`, `\}`) do not count; groups that never close are left out.
    """
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            stack.append(i)
        elif char == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


# Unicode look-alikes that models emit: minus signs and dashes, odd spaces.
_CHARS = str.maketrans(
    {
        "\u2212": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u00a0": " ",
        "\u2009": " ",
        "\u202f": " ",
        "\u2007": " ",
    }
)
_UNWRAP = re.compile(
    r"\\(?:text|textbf|textit|textrm|texttt|mathrm|mathbf|mathit|mathtt|mbox|boxed|fbox)\s*(?=\{)"
)
_PAIRS = (
    ("$$", "$$"),
    ("\\[", "\\]"),
    ("\\(", "\\)"),
    ("$", "$"),
    ("**", "**"),
    ("~~", "~~"),
    ("*", "*"),
    ("`", "`"),
    ('"', '"'),
    ("'", "'"),
    ("\u201c", "\u201d"),
    ("\u2018", "\u2019"),
    ("\u00ab", "\u00bb"),
)
_BRACKETS = {"(": ")", "{": "}"}


def _unwrap_commands(text: str) -> str:
    r"""Replace `\text{x}`, `\mathrm{x}`, `\boxed{x}`, ... by `x`, anywhere in the text."""
    if not _UNWRAP.search(text):
        return text
    pairs = brace_pairs(text)
    out = []
    pos = 0
    for match in _UNWRAP.finditer(text):
        if match.start() < pos or match.end() not in pairs:
            continue  # inside a group already copied, or never closed
        close = pairs[match.end()]
        out.append(text[pos : match.start()])
        out.append(_unwrap_commands(text[match.end() + 1 : close]))
        pos = close + 1
    out.append(text[pos:])
    return "".join(out)


def _encloses(text: str, open_: str, close: str) -> bool:
    """Tell whether the bracket opening at text[0] is the one closing at text[-1]."""
    if len(text) < 2 or text[0] != open_ or text[-1] != close:
        return False
    depth = 0
    for i, char in enumerate(text):
        if char == open_:
            depth += 1
        elif char == close:
            depth -= 1
            if depth == 0:
                return i == len(text) - 1
    return False


def _strip_markup(text: str) -> str:
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", text)
    text = re.sub(r"\\[,;:!]", "", text)  # LaTeX thin spaces, also in "1\,000"
    text = text.replace("\\ ", " ").replace("{,}", ",").replace("\\%", "%").replace("\\$", "$")
    text = _unwrap_commands(text)
    prev = None
    while prev != text:
        prev = text
        text = text.strip()
        for left, right in _PAIRS:
            if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left) : -len(right)]
                break
        text = text.rstrip(".,;:?").lstrip(",;:?")
        for open_, close in _BRACKETS.items():
            if _encloses(text, open_, close) and "," not in text:
                text = text[1:-1]
    return text


_DECIMAL = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?", re.IGNORECASE)
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_SLASH = re.compile(r"(?P<a>[^/]+?)\s*/\s*(?P<b>[^/]+)")
_FRAC = re.compile(r"\\frac\s*(?:\{(?P<a>[^{}]*)\}|(?P<a1>\d))\s*(?:\{(?P<b>[^{}]*)\}|(?P<b1>\d))")
_MAX_DIGITS = 400  # bigger numbers stay text: keeps int <-> str conversions cheap


def _unsigned(text: str) -> Fraction | None:
    """Parse a non-negative decimal, exponent or thousands-separated number exactly."""
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    if len(text) > _MAX_DIGITS or not _DECIMAL.fullmatch(text):
        return None
    mantissa, _, exponent = text.lower().partition("e")
    if exponent and abs(int(exponent)) > _MAX_DIGITS:
        return None
    return Fraction(mantissa if not mantissa.endswith(".") else mantissa[:-1]) * Fraction(10) ** int(
        exponent or 0
    )


def _signed(text: str) -> Fraction | None:
    text = text.strip()
    negative = text.startswith("-")
    if text[:1] in ("+", "-"):
        text = text[1:].lstrip()
    if text.startswith("$"):  # "-$5"
        text = text[1:].lstrip()
    if not text:
        return None
    frac = _FRAC.fullmatch(text)
    if frac is not None:
        num = _signed(frac.group("a") if frac.group("a") is not None else frac.group("a1"))
        den = _signed(frac.group("b") if frac.group("b") is not None else frac.group("b1"))
        value = None if num is None or not den else num / den
    elif (slash := _SLASH.fullmatch(text)) is not None:
        num, den = _unsigned(slash.group("a")), _unsigned(slash.group("b"))
        value = None if num is None or not den else num / den
    else:
        value = _unsigned(text)
    if value is None:
        return None
    return -value if negative else value


def _format_number(value: Fraction) -> str:
    """Write integers as digits, terminating fractions as decimals, others as "p/q"."""
    if value.denominator == 1:
        return str(value.numerator)
    rest, twos, fives = value.denominator, 0, 0
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    if rest != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    digits = str(abs(value.numerator) * 10**places // value.denominator).rjust(places + 1, "0")
    return ("-" if value < 0 else "") + digits[:-places] + "." + digits[-places:]


# Words after a number that are not units: they change the value or the meaning.
# fmt: off
_NOT_UNITS = frozenset({
    "pi", "e", "i", "j", "sqrt", "root", "roots", "inf", "infinity", "and", "or", "to", "of",
    "times", "plus", "minus", "over", "squared", "cubed", "factorial", "hundred", "hundreds",
    "thousand", "thousands", "million", "millions", "billion", "billions", "trillion",
    "trillions", "dozen", "dozens", "half", "halves", "third", "thirds", "quarter", "quarters", "k",
})
# fmt: on
_SINGLE_LETTER_UNITS = frozenset("mgslh")
_UNIT_TAIL = re.compile(
    r"(?P<head>.*?[\d}.])\s*(?P<tail>[a-z]+(?:[/^][a-z0-9]+)?(?:\s+[a-z]+(?:[/^][a-z0-9]+)?){0,2})\.?",
    re.IGNORECASE,
)
_SYMBOL_TAIL = re.compile(r"\s*(?:%|°|\^\s*\{?\s*\\circ\s*\}?|\\circ|\$)\s*$")


def _strip_units(text: str) -> str:
    text = _SYMBOL_TAIL.sub("", text)
    match = _UNIT_TAIL.fullmatch(text)
    if match is None:
        return text
    words = [w.split("/")[0].split("^")[0].lower() for w in match.group("tail").split()]
    if any(w in _NOT_UNITS or (len(w) == 1 and w not in _SINGLE_LETTER_UNITS) for w in words):
        return text
    return match.group("head")


def _canonical_number(text: str, units: bool) -> str | None:
    candidate = re.sub(r"^[a-z]\s*=\s*", "", text, flags=re.IGNORECASE)  # "x = 5"
    if units:
        candidate = _strip_units(candidate)
    value = _signed(candidate)
    return None if value is None else _format_number(value)


class Normalizer(ValidatedModel):
    r"""Turns an extracted answer into a comparison key: `Normalizer().normalize(" 1,000. ")`.

    The steps run in this order, and the whole sequence repeats until the text stops
    changing (so normalizing twice gives the same key as normalizing once):

    1. Always: Unicode minus signs and dashes become "-", non-breaking and thin spaces become
       spaces, and surrounding whitespace is stripped.
    2. `lowercase`: the text is lower-cased (LaTeX commands too, so `\Delta` == `\delta`).
    3. `strip_markup`:
       - `\dfrac` and `\tfrac` become `\frac`; `\left` / `\right` and LaTeX thin spaces
         (`\,` `\;` `\:` `\!`) are dropped; `{,}` becomes ","; `\%` and `\$` lose the
         backslash.
       - `\text{x}`, `\textbf{x}`, `\mathrm{x}`, `\mbox{x}`, `\boxed{x}`, `\fbox{x}`
         (and similar) become `x`, anywhere in the text.
       - Layers that wrap the whole text are peeled: math delimiters `$x$`, `$$x$$`,
         `\(x\)`, `\[x\]`; markdown `**x**`, `*x*`, `~~x~~`, `` `x` ``; matching quotes;
         and `(x)` / `{x}` when x has no comma (so "(B)" == "B" but the pair "(1, 2)"
         keeps its parentheses).
       - Trailing `. , ; : ?` and leading `, ; : ?` are dropped ("!" stays: `5!` is a
         factorial).
    4. `collapse_whitespace`: runs of whitespace become one space.
    5. `numbers`: if what is left is a number, it is replaced by its canonical exact form:
       - accepted: an optional sign, an optional `$` currency sign, then a decimal
         (`1000`, `1000.0`, `.5`, `5.`), an exponent (`1e3`), a thousands-separated number
         (commas before groups of exactly three digits: `1,000` and `1,000.5` but not
         `1,5` or `1,0000`), a fraction `a/b`, or `\frac{a}{b}` / `\frac34`;
         a leading single-letter assignment is dropped (`x = 5` -> `5`);
       - `units` (on by default): a trailing `%`, `°` / `^\circ`, `$`, or up to three
         unit words (`18 dollars`, `5 cm`, `3 km/h`) is dropped first. Words that change
         the value are never units: `pi`, `e`, `i`, `sqrt`, `million`, `dozen`, `half`,
         `k`, ... and single letters other than m, g, s, l, h;
       - the value is exact (`fractions.Fraction` of the decimal digits): integers are
         written as digits (`-0` -> `0`, `1e3` -> `1000`), fractions whose decimal
         expansion ends are written as decimals (`3/4` -> `0.75`, `0.750` -> `0.75`),
         others as lowest terms `p/q` (`2/6` -> `1/3`). So `0.75` == `3/4`, but
         `0.333` != `1/3` and `0.5` != `50%` (which becomes `50`);
       - a period is always a decimal point: `1.000` == `1`, not 1000. European
         formats (`1.000,5`) are left as text; so are division by zero, mixed numbers
         (`1 1/2`) and numbers with more than 400 digits.

    Example:
        >>> Normalizer().normalize("**$1,000.00$**.")
        '1000'
    """

    lowercase: bool = True
    strip_markup: bool = True
    collapse_whitespace: bool = True
    numbers: bool = True
    units: bool = True

    def _once(self, text: str) -> str:
        text = text.translate(_CHARS).strip()
        if self.lowercase:
            text = text.lower()
        if self.strip_markup:
            text = _strip_markup(text)
        if self.collapse_whitespace:
            text = " ".join(text.split())
        if self.numbers:
            text = _canonical_number(text, self.units) or text
        return text

    def normalize(self, answer: str) -> str:
        """Return the canonical key of `answer` (possibly empty)."""
        # Each pass only peels layers or writes a canonical number, so this settles quickly;
        # the cap is a guard, not a limit that is reached in practice.
        for _ in range(64):
            new = self._once(answer)
            if new == answer:
                break
            answer = new
        return answer


_DEFAULT_NORMALIZER = Normalizer()


def normalize_answer(answer: str, normalizer: Normalizer | None = None) -> str:
    r"""Return the canonical comparison key of an answer (rules on `Normalizer`).

    Example:
        >>> normalize_answer(r"\dfrac{3}{4}") == normalize_answer("0.75")
        True
    """
    return (normalizer or _DEFAULT_NORMALIZER).normalize(answer)


def answers_equivalent(a: str | None, b: str | None, normalizer: Normalizer | None = None) -> bool:
    """Tell whether both answers are given and normalize to the same non-empty key."""
    if a is None or b is None:
        return False
    key = normalize_answer(a, normalizer)
    return bool(key) and key == normalize_answer(b, normalizer)
