"""Multi-step arithmetic word problems for the simulated reasoner.

Problems are generated per seed and written in plain sentences drawn from a fixed set of
templates, so that anyone holding only the prompt text (an HTTP server, for instance) can
parse the problem back, recompute its answer and its latent difficulty. Nothing is looked up
in a registry: the text is the problem.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import random
import re
from typing import Literal

from pydantic import Field

from .._exceptions import ConfigError
from .._models import ValidatedModel

__all__ = [
    "Op",
    "ParsedProblem",
    "Problem",
    "demo_problems",
    "extract_answer",
    "last_number",
    "make_problems",
    "parse_problem",
    "split_prompt",
    "split_steps",
]

OpKind = Literal["add", "sub", "mul", "div", "addg", "subg"]

_NAMES = (
    ("Maya", "She"), ("Liam", "He"), ("Ava", "She"), ("Noah", "He"), ("Zoe", "She"),
    ("Omar", "He"), ("Lena", "She"), ("Ravi", "He"), ("Iris", "She"), ("Theo", "He"),
    ("Nina", "She"), ("Hugo", "He"), ("Clara", "She"), ("Felix", "He"), ("Mira", "She"),
    ("Jonas", "He"),
)  # fmt: skip
_ITEMS = (
    "apples", "marbles", "stickers", "coins", "cards", "pencils", "beads", "stamps",
    "shells", "buttons", "cookies", "books",
)  # fmt: skip


def _stable_hash(*parts: object) -> int:
    """Hash `parts` to 64 bits, the same in every process (unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


def _unit(*parts: object) -> float:
    """Map `parts` to a uniform number in [0, 1)."""
    return (_stable_hash(*parts) >> 11) / 2**53


@dataclasses.dataclass(frozen=True, slots=True)
class Op:
    """One operation of a problem.

    Attributes:
        kind: "add" / "sub" (a more / fewer), "mul" / "div" (times a, split into a piles),
            "addg" / "subg" (a boxes or friends with b items each).
        a: The main operand.
        b: The per-group amount of the group operations (0 otherwise).
    """

    kind: OpKind
    a: int
    b: int = 0

    def apply(self, v: int) -> int:
        """Return the running value after this operation, from `v`."""
        if self.kind == "add":
            return v + self.a
        if self.kind == "sub":
            return v - self.a
        if self.kind == "mul":
            return v * self.a
        if self.kind == "div":
            return v // self.a
        if self.kind == "addg":
            return v + self.a * self.b
        return v - self.a * self.b

    def sentence(self, pronoun: str, possessive: str, item: str) -> str:
        """Write the problem sentence that states this operation."""
        if self.kind == "add":
            return f"{pronoun} buys {self.a} more {item}."
        if self.kind == "sub":
            return f"{pronoun} gives away {self.a} {item}."
        if self.kind == "mul":
            return f"{pronoun} then ends up with {self.a} times as many {item} as before."
        if self.kind == "div":
            return f"{pronoun} splits {possessive} {item} into {self.a} equal piles and keeps one pile."
        if self.kind == "addg":
            return f"{pronoun} buys {self.a} boxes with {self.b} {item} in each box."
        return f"{pronoun} gives {self.b} {item} to each of {self.a} friends."


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedProblem:
    """A problem as recovered from text: its structure, true values and latent traits.

    Attributes:
        name: The person in the problem.
        pronoun: "She" or "He".
        item: The plural noun counted.
        start: The starting count.
        ops: The operations, in order.
        values: The true running value after each operation (the last is the answer).
        key: A stable 64-bit identity of the problem's structure (not of its wording around it).
        difficulty: Latent difficulty in [0, 1]: longer chains, bigger numbers and group
            operations are harder, plus a per-problem hidden part.
        trap_step: Index of a step with a tempting misreading (hard problems only), or None.
        end: Offset in the parsed text just past the question sentence.
    """

    name: str
    pronoun: str
    item: str
    start: int
    ops: tuple[Op, ...]
    values: tuple[int, ...]
    key: int
    difficulty: float
    trap_step: int | None
    end: int

    @property
    def answer(self) -> int:
        """The correct final answer."""
        return self.values[-1]

    @property
    def possessive(self) -> str:
        """The possessive pronoun: her or his."""
        return "her" if self.pronoun == "She" else "his"

    def question(self) -> str:
        """Write the canonical problem text."""
        p, poss, item = self.pronoun, self.possessive, self.item
        body = " ".join(op.sentence(p, poss, item) for op in self.ops)
        return f"{self.name} has {self.start} {item}. {body} How many {item} does {self.name} have now?"


class Problem(ValidatedModel):
    """A generated word problem with its known answer.

    Attributes:
        id: "sim/<seed>/<index>".
        question: The problem in natural language (all the solver ever sees).
        answer: The correct integer answer, as text.
        steps: (the sentence of each operation, the running value after it).
        difficulty: Latent difficulty in [0, 1].
    """

    id: str
    question: str
    answer: str
    steps: tuple[tuple[str, int], ...]
    difficulty: float = Field(ge=0.0, le=1.0)


_QUESTION_RE = re.compile(r"How many ([a-z]+) does ([A-Z][a-z]+) have now\?")
_OP_RES: tuple[tuple[OpKind, re.Pattern[str]], ...] = (
    ("add", re.compile(r"\s*(?:She|He) buys (\d+) more ([a-z]+)\.")),
    ("sub", re.compile(r"\s*(?:She|He) gives away (\d+) ([a-z]+)\.")),
    ("mul", re.compile(r"\s*(?:She|He) then ends up with (\d+) times as many ([a-z]+) as before\.")),
    (
        "div",
        re.compile(r"\s*(?:She|He) splits (?:her|his) [a-z]+ into (\d+) equal piles and keeps one pile\."),
    ),
    ("addg", re.compile(r"\s*(?:She|He) buys (\d+) boxes with (\d+) [a-z]+ in each box\.")),
    ("subg", re.compile(r"\s*(?:She|He) gives (\d+) [a-z]+ to each of (\d+) friends\.")),
)
_NUMBER_RE = re.compile(r"-?\d+")
_ANSWER_RE = re.compile(r"[Tt]he answer is:?\s*\$?(-?[\d,]*\d)")
_PARAGRAPH_RE = re.compile(r"\n[ \t]*\n")
_PRONOUNS = dict(_NAMES)
_HARD_KINDS: tuple[OpKind, ...] = ("mul", "div", "addg", "subg", "addg", "subg")


def _difficulty(start: int, ops: tuple[Op, ...], values: tuple[int, ...], key: int) -> float:
    steps_term = (len(ops) - 2) / 6
    biggest = max(start, *values, *(max(op.a, op.b) for op in ops), 10)
    size_term = min(1.0, max(0.0, (math.log10(biggest) - 1.3) / 2.2))
    hard_ops = sum(op.kind != "add" and op.kind != "sub" for op in ops) / len(ops)
    structural = 0.55 * steps_term + 0.3 * size_term + 0.15 * hard_ops
    # The hidden part: some short problems are harder than they look, and the reverse.
    latent = _unit(key, "latent")
    return round(min(1.0, max(0.0, 0.65 * structural + 0.35 * latent)), 4)


def _trap_step(ops: tuple[Op, ...], key: int, difficulty: float) -> int | None:
    if _unit(key, "trap") >= min(0.9, max(0.0, (difficulty - 0.45) * 2.0)):
        return None
    groups = [i for i, op in enumerate(ops) if op.kind in ("addg", "subg")]
    pool = groups or list(range(len(ops)))
    return pool[_stable_hash(key, "trap-step") % len(pool)]


def _assemble(name: str, item: str, start: int, ops: tuple[Op, ...], end: int) -> ParsedProblem:
    values: list[int] = []
    v = start
    for op in ops:
        v = op.apply(v)
        values.append(v)
    vals = tuple(values)
    key = _stable_hash("problem", name, item, start, tuple((op.kind, op.a, op.b) for op in ops))
    difficulty = _difficulty(start, ops, vals, key)
    return ParsedProblem(
        name=name,
        pronoun=_PRONOUNS.get(name, "She"),
        item=item,
        start=start,
        ops=ops,
        values=vals,
        key=key,
        difficulty=difficulty,
        trap_step=_trap_step(ops, key, difficulty),
        end=end,
    )


@functools.lru_cache(maxsize=8192)
def parse_problem(text: str) -> ParsedProblem | None:
    """Find the last word problem in `text` and recover it, or None when there is none.

    The text may hold more than the problem (instructions, earlier examples, a partial
    solution after it): the last "How many ... have now?" question and the sentences before it
    are read.
    """
    questions = list(_QUESTION_RE.finditer(text))
    if not questions:
        return None
    q = questions[-1]
    item, name = q.group(1), q.group(2)
    starts = list(re.finditer(rf"\b{name} has (\d+) {item}\.", text[: q.start()]))
    if not starts:
        return None
    s = starts[-1]
    pos, stop = s.end(), q.start()
    ops: list[Op] = []
    while True:
        for kind, pattern in _OP_RES:
            m = pattern.match(text, pos, stop)
            if m is None:
                continue
            if kind in ("addg", "subg"):
                a, b = int(m.group(1)), int(m.group(2))
                op = Op(kind, b, a) if kind == "subg" else Op(kind, a, b)
            else:
                op = Op(kind, int(m.group(1)))
            ops.append(op)
            pos = m.end()
            break
        else:
            break
    if not ops or text[pos:stop].strip():
        return None
    if any(op.a <= 0 or (op.kind in ("mul", "div") and op.a < 2) for op in ops):
        return None
    return _assemble(name, item, int(s.group(1)), tuple(ops), q.end())


def split_prompt(text: str) -> tuple[ParsedProblem | None, str]:
    """Split a raw prompt into its problem and the partial solution written after it."""
    parsed = parse_problem(text)
    if parsed is None:
        return None, ""
    return parsed, text[parsed.end :]


def split_steps(solution: str) -> list[str]:
    """Split a solution into its non-empty paragraphs (steps) at blank lines."""
    return [p.strip() for p in _PARAGRAPH_RE.split(solution) if p.strip()]


def last_number(text: str) -> int | None:
    """Return the last integer written in `text` (a step's running value), or None."""
    found = _NUMBER_RE.findall(text)
    return int(found[-1]) if found else None


def extract_answer(text: str) -> str | None:
    """Return the number after the last "The answer is" in `text`, without commas, or None."""
    found = _ANSWER_RE.findall(text)
    return found[-1].replace(",", "") if found else None


def _pick_op(rng: random.Random, v: int, target: float, mag: float) -> Op | None:
    hard = 0.15 + 0.6 * target
    roll = rng.random()
    small = max(3, int(mag))
    if roll >= hard:
        if rng.random() < 0.55 or v < 3:
            return Op("add", rng.randint(1, small))
        return Op("sub", rng.randint(1, min(small, v - 1)))
    kind: OpKind = rng.choice(_HARD_KINDS)
    if kind == "mul":
        k = rng.randint(2, 4)
        return Op("mul", k) if v * k <= 20_000 else None
    if kind == "div":
        ks = [k for k in (2, 3, 4, 5) if v % k == 0 and v // k >= 2]
        return Op("div", rng.choice(ks)) if ks else None
    groups = rng.randint(2, 9)
    each = rng.randint(2, max(3, int(mag / 3)))
    if kind == "subg" and groups * each >= v:
        return None
    return Op(kind, groups, each)


def _generate(rng: random.Random, target: float) -> ParsedProblem:
    name, _ = rng.choice(_NAMES)
    item = rng.choice(_ITEMS)
    n_ops = min(8, max(2, round(2 + 6 * target + rng.gauss(0.0, 0.7))))
    mag = 10 ** (1.0 + 1.5 * target + rng.uniform(-0.2, 0.2))
    start = rng.randint(max(4, int(mag * 0.5)), max(8, int(mag * 2)))
    v, ops = start, list[Op]()
    while len(ops) < n_ops:
        op = _pick_op(rng, v, target, mag)
        if op is None:
            continue
        ops.append(op)
        v = op.apply(v)
    parsed = _assemble(name, item, start, tuple(ops), 0)
    text = parsed.question()
    return dataclasses.replace(parsed, end=len(text))


def _to_problem(parsed: ParsedProblem, ident: str) -> Problem:
    p, poss, item = parsed.pronoun, parsed.possessive, parsed.item
    steps = tuple((op.sentence(p, poss, item), v) for op, v in zip(parsed.ops, parsed.values, strict=True))
    return Problem(
        id=ident,
        question=parsed.question(),
        answer=str(parsed.answer),
        steps=steps,
        difficulty=parsed.difficulty,
    )


def make_problems(count: int, seed: int = 0, difficulty: float | None = None) -> list[Problem]:
    """Generate `count` word problems, the same ones for the same seed.

    Args:
        count: How many problems.
        seed: The generator seed.
        difficulty: Aim every problem at this latent difficulty (within about 0.05);
            None draws a spread of difficulties.

    Raises:
        ConfigError: `count` is negative or `difficulty` is outside [0, 1].
    """
    return _make(count, seed, difficulty, 1.0, "sim")


def _make(count: int, seed: int, difficulty: float | None, skew: float, tag: str) -> list[Problem]:
    if count < 0:
        raise ConfigError(f"count must be >= 0, got {count}")
    if difficulty is not None and not 0.0 <= difficulty <= 1.0:
        raise ConfigError(f"difficulty must be in [0, 1] (or None for a mix), got {difficulty}")
    problems = []
    for i in range(count):
        rng = random.Random(_stable_hash("make_problems", tag, seed, i))
        if difficulty is None:
            parsed = _generate(rng, rng.random() ** skew)
        else:
            # The latent part is hashed, so aim by re-rolling until one lands close.
            best: ParsedProblem | None = None
            for _ in range(60):
                target = min(1.0, max(0.0, difficulty + rng.gauss(0.0, 0.1)))
                cand = _generate(rng, target)
                if best is None or abs(cand.difficulty - difficulty) < abs(best.difficulty - difficulty):
                    best = cand
                if abs(best.difficulty - difficulty) <= 0.03:
                    break
            assert best is not None
            parsed = best
        problems.append(_to_problem(parsed, f"{tag}/{seed}/{i}"))
    return problems


_DEMO_SKEW = 2.0
"""Difficulty targets are uniform draws raised to this power: above 1 leans to easy problems.

Chosen by `benchmarks/sim_agreement.py` as the mix whose agreement statistics (one sample
right, the first two agreeing, agreeing on a wrong answer, overturned by the 40-sample
majority, a wrong majority) lie closest to the two shared recorded files' (GPT-3.5 on last
letters, gpt-4o-mini on GSM8K): most questions easy, a minority hard or hopeless.
"""


def demo_problems(count: int = 200, seed: int = 0) -> list[Problem]:
    """Generate the demo set: a spread of difficulties, mostly easy, a few all but hopeless.

    With the default `SimModel` (200 problems, seed 0): a single sample at temperature 1 is
    right 78% of the time, greedy decoding 88%, a majority vote of 16 samples at temperature
    0.7 is 90%; about one problem in ten has a wrong answer as the model's most common one.
    """
    return _make(count, seed, None, _DEMO_SKEW, "demo")
