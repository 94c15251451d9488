"""The simulated reasoner: step-by-step solutions with realistic, structured mistakes.

Each step of a problem has a small menu of plausible slips (a misread operand, the wrong
operation, a carry mistake, a dropped step or multiplication) with a skewed, per-problem
preference, so wrong answers recur the way a real model's do. A slip propagates: later steps
compute correctly from the wrong value, and only occasionally does the model notice and go
back. Harder problems slip more, and some hard problems hold a tempting misreading that the
model falls for more often than not, so its most common answer there is wrong.

Everything is a pure function of (model config, problem text, partial solution, seed,
sample index): the same request always gets the same answer.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import re
from collections.abc import Sequence

from pydantic import Field

from .._exceptions import ConfigError
from .._models import ValidatedModel
from .._prices import Price
from ._problems import (
    Op,
    ParsedProblem,
    _stable_hash,
    extract_answer,
    last_number,
    parse_problem,
    split_steps,
)

__all__ = ["STEP_DELIMITER", "SimModel", "SimSample", "tokenize", "truncate"]

STEP_DELIMITER = "\n\n"
"""Steps are paragraphs: pass it as a stop sequence to generate one step at a time."""

# Every character falls in exactly one token, so "".join(tokenize(t)) == t.
_TOKEN_RE = re.compile(r" ?[A-Za-z]+| ?\d{1,3}| ?[^\sA-Za-z\d]|\n+| +|\s")

_SLIPS: dict[str, tuple[str, ...]] = {
    "add": ("operand", "op", "carry", "drop"),
    "sub": ("operand", "op", "carry", "drop"),
    "mul": ("operand", "op", "carry", "drop"),
    "div": ("operand", "op", "carry", "drop"),
    "addg": ("dropmul", "operand", "op", "carry"),
    "subg": ("dropmul", "operand", "op", "carry"),
}
_SLIP_WEIGHTS = (0.65, 0.2, 0.1, 0.05)
_OP_BIAS = {"add": -0.4, "sub": -0.3, "mul": 0.1, "div": 0.2, "addg": 0.3, "subg": 0.4}
_FILLERS = (
    "Let me work through this carefully.",
    "Now I update the count.",
    "This is the next part of the problem.",
    "I need to keep track of the total.",
    "Let me think about what this means.",
    "Next, I look at what happens now.",
    "It helps to write this out.",
    "I will compute this one piece at a time.",
)
_INTRO = "Let's solve this step by step."


def tokenize(text: str) -> list[str]:
    """Split text into tokens by a fixed rule: words, up to three digits, punctuation marks.

    A word or number takes its leading space; runs of newlines or spaces are one token. The
    count is close to what BPE tokenizers give for this kind of text.
    """
    return _TOKEN_RE.findall(text)


@functools.lru_cache(maxsize=256)
def _tokens_of(text: str) -> tuple[str, ...]:
    return tuple(tokenize(text))


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > -30 else x


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x > -40 else 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class _StepPlan:
    """The model's tendencies at one step of one problem."""

    outcomes: tuple[str, ...]  # "ok" first, then the slips
    probs: tuple[float, ...]  # at temperature 1
    delta: int  # direction of a misread operand
    carry: int  # direction of an arithmetic slip


@dataclasses.dataclass(frozen=True, slots=True)
class SimSample:
    """One simulated completion.

    Attributes:
        text: The generated text (the continuation only, when a prefix was given).
        steps: The complete step paragraphs in `text`.
        answer: The number after "The answer is", or None when the text has no answer.
        tokens: The tokens of `text` (they join back to it).
        token_logprobs: One log-probability per token; lower, on average, in wrong steps.
        finish_reason: "stop" (finished or hit a stop sequence) or "length" (max_tokens).
        values: The running value each step arrives at.
        on_track: Ground truth per step: whether its running value is the correct one.
        correct: Whether `answer` is correct; None without an answer.
    """

    text: str
    steps: tuple[str, ...]
    answer: str | None
    tokens: tuple[str, ...]
    token_logprobs: tuple[float, ...]
    finish_reason: str
    values: tuple[int, ...]
    on_track: tuple[bool, ...]
    correct: bool | None

    @property
    def completion_tokens(self) -> int:
        """How many tokens were generated."""
        return len(self.tokens)


def truncate(
    tokens: Sequence[str],
    logprobs: Sequence[float],
    *,
    stop: Sequence[str] | None,
    max_tokens: int | None,
    search_from: int = 0,
) -> tuple[list[str], list[float], str]:
    """Cut generated tokens at the first stop sequence or at `max_tokens`, as a server does.

    The stop sequence itself is not returned. Matches starting before `search_from` (a leading
    step separator) are ignored.

    Returns:
        The kept tokens, their logprobs, and the finish reason ("stop" or "length").
    """
    toks, lps = list(tokens), list(logprobs)
    finish = "stop"
    if stop:
        text = "".join(toks)
        hits = [i for i in (text.find(s, search_from) for s in stop) if i >= 0]
        if hits:
            cut = min(hits)
            kept: list[str] = []
            used = 0
            for tok in toks:
                if used + len(tok) <= cut:
                    kept.append(tok)
                    used += len(tok)
                    continue
                if used < cut:  # the stop begins inside this token: keep its head
                    kept.append(tok[: cut - used])
                break
            toks, lps = kept, lps[: len(kept)]
    if max_tokens is not None and len(toks) > max_tokens:
        toks, lps, finish = toks[:max_tokens], lps[:max_tokens], "length"
    return toks, lps, finish


def _pick(probs: Sequence[float], temperature: float, top_p: float, u: float) -> int:
    """Draw an index from `probs` reshaped by temperature and nucleus truncation."""
    if temperature == 0.0:
        return max(range(len(probs)), key=probs.__getitem__)
    weights = list(probs)
    if temperature != 1.0:
        # Work in log space so that tiny temperatures do not underflow to all zeros.
        logs = [math.log(p) if p > 0 else -math.inf for p in probs]
        top = max(logs)
        weights = [math.exp((lg - top) / temperature) for lg in logs]
    total = sum(weights)
    order = sorted(range(len(weights)), key=lambda i: -weights[i])
    if top_p < 1.0:
        kept, mass = [], 0.0
        for i in order:
            kept.append(i)
            mass += weights[i] / total
            if mass >= top_p:
                break
        order = kept
        total = sum(weights[i] for i in order)
    x = u * total
    for i in order:
        x -= weights[i]
        if x < 0:
            return i
    return order[-1]


def _step_text(pp: ParsedProblem, op: Op, v: int, outcome: str, plan: _StepPlan) -> tuple[str, int]:
    """Write the body of one step from running value `v`; return it and the value reached."""
    name, pr, it = pp.name, pp.pronoun.lower(), pp.item
    a, b, kind = op.a, op.b, op.kind
    if outcome == "operand":
        if kind in ("addg", "subg"):
            b = b + plan.delta if b + plan.delta >= 1 else b + 1
        else:
            low = 2 if kind in ("mul", "div") else 1
            a = a + plan.delta if a + plan.delta >= low else a + 1

    def slipped(r: int) -> int:
        if outcome != "carry":
            return r
        return r + plan.carry * (10 if abs(r) >= 20 else 1)

    if kind == "add":
        lead = f"{name} buys {op.a} more {it}"
        if outcome == "op":
            return f"{lead}, so {pr} has {v} - {a} = {v - a} {it}.", v - a
        if outcome == "drop":
            return f"{lead}, but {pr} still has {v} {it}.", v
        r = slipped(v + a)
        return f"{lead}, so {pr} has {v} + {a} = {r} {it}.", r
    if kind == "sub":
        lead = f"{name} gives away {op.a} {it}"
        if outcome == "op":
            return f"{lead}, so {pr} has {v} + {a} = {v + a} {it}.", v + a
        if outcome == "drop":
            return f"{lead}, but {pr} still has {v} {it}.", v
        r = slipped(v - a)
        return f"{lead}, so {pr} has {v} - {a} = {r} {it} left.", r
    if kind == "mul":
        lead = f"{name} ends up with {op.a} times as many {it}"
        if outcome == "op":
            return f"{lead}, so {pr} has {v} + {a} = {v + a} {it}.", v + a
        if outcome == "drop":
            return f"{lead}, which is {v} {it}.", v
        r = slipped(v * a)
        return f"{lead}: {v} × {a} = {r} {it}.", r
    if kind == "div":
        lead = f"{name} splits the {it} into {op.a} equal piles and keeps one"
        if outcome == "op":
            return f"{lead}, so {pr} has {v} - {a} = {v - a} {it}.", v - a
        if outcome == "drop":
            return f"{lead}, which leaves {v} {it}.", v
        r = slipped(round(v / a))  # from a wrong value the model rounds
        return f"{lead}: {v} ÷ {a} = {r} {it}.", r
    if kind == "addg":
        lead = f"{name} buys {op.a} boxes with {op.b} {it} in each box"
        if outcome == "dropmul":
            return f"{lead}, so {pr} has {v} + {b} = {v + b} {it}.", v + b
        ab = a * b
        if outcome == "op":
            return f"{lead}, which is {a} × {b} = {ab} {it}. Now {pr} has {v} - {ab} = {v - ab} {it}.", v - ab
        r = slipped(v + ab)
        return f"{lead}, which is {a} × {b} = {ab} {it}. Now {pr} has {v} + {ab} = {r} {it}.", r
    lead = f"{name} gives {op.b} {it} to each of {op.a} friends"
    if outcome == "dropmul":
        return f"{lead}, so that leaves {v} - {b} = {v - b} {it}.", v - b
    ab = a * b
    if outcome == "op":
        return f"{lead}, which is {a} × {b} = {ab} {it}. That makes {v} + {ab} = {v + ab} {it}.", v + ab
    r = slipped(v - ab)
    return f"{lead}, which is {a} × {b} = {ab} {it}. That leaves {v} - {ab} = {r} {it}.", r


def _key_positions(toks: Sequence[str]) -> list[int]:
    """Find the tokens that carry a step's result: the digits after its last "=" sign."""
    lo = max(0, len(toks) - 8)
    for j in range(len(toks) - 1, -1, -1):
        if toks[j] == " =":
            lo = j + 1
            break
    return [j for j in range(lo, len(toks)) if toks[j][-1].isdigit()]


@functools.lru_cache(maxsize=32_768)
def _plan_for(
    knobs: tuple[int, float, float, float],
    key: int,
    ops: tuple[Op, ...],
    difficulty: float,
    trap_step: int | None,
) -> tuple[_StepPlan, ...]:
    # Kept outside the (frozen, comparable) model so that a cache never affects equality.
    seed, base_error_rate, difficulty_scale, trap_error_rate = knobs
    base = _logit(base_error_rate) + difficulty_scale * (difficulty - 0.5)
    steps = []
    for i, op in enumerate(ops):
        rng = random.Random(_stable_hash("plan", seed, key, i))
        slips = list(_SLIPS[op.kind])
        rng.shuffle(slips)
        if op.kind in ("addg", "subg") and rng.random() < 0.6:
            slips.remove("dropmul")
            slips.insert(0, "dropmul")  # forgetting to multiply is the natural slip here
        if i == trap_step:
            err = min(0.97, trap_error_rate * (0.7 + 0.8 * rng.random()))
            rest = sum(_SLIP_WEIGHTS[1:])
            weights = (0.9, *(0.1 * w / rest for w in _SLIP_WEIGHTS[1:]))
        else:
            err = _sigmoid(base + _OP_BIAS[op.kind] + rng.gauss(0.0, 0.9))
            weights = _SLIP_WEIGHTS
        probs = (1.0 - err, *(err * w for w in weights))
        delta = 1 if rng.random() < 0.5 else -1
        carry = 1 if rng.random() < 0.5 else -1
        steps.append(_StepPlan(("ok", *slips), probs, delta, carry))
    return tuple(steps)


class SimModel(ValidatedModel):
    """A simulated step-by-step reasoner for arithmetic word problems.

    Args:
        name: The model name shown on endpoints and responses.
        seed: Seeds the model's quirks (its preferred slips) and its sampling streams.
        base_error_rate: Chance of a slip per step on a problem of middling difficulty (0.5).
        difficulty_scale: How much faster slips grow with difficulty (log-odds per unit).
        trap_error_rate: Chance of falling for a problem's tempting misreading, where it has one.
        recovery_rate: Chance, per step, of noticing an earlier mistake and going back.
        tokens_per_step: Typical length of a step; shorter steps get filler sentences.
        price: Price per million tokens (default: gpt-4o-mini's, $0.15 in / $0.60 out).
    """

    name: str = "sim-reasoner"
    seed: int = 0
    base_error_rate: float = Field(default=0.05, gt=0.0, lt=1.0)
    difficulty_scale: float = Field(default=3.2, ge=0.0, le=20.0)
    trap_error_rate: float = Field(default=0.6, ge=0.0, le=0.97)
    recovery_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    tokens_per_step: int = Field(default=30, ge=1, le=1000)
    price: Price = Field(default_factory=lambda: Price(input=0.15, output=0.60))

    def _plan(self, problem: ParsedProblem) -> tuple[_StepPlan, ...]:
        """Return the model's per-step outcome probabilities on `problem` (cached)."""
        knobs = (self.seed, self.base_error_rate, self.difficulty_scale, self.trap_error_rate)
        return _plan_for(knobs, problem.key, problem.ops, problem.difficulty, problem.trap_step)

    def accuracy(self, question: str | ParsedProblem) -> float:
        """Return the chance that one sample at temperature 1 makes no slip at all.

        It is a lower bound on the chance of a right answer: recoveries add a little.
        """
        pp = _parse(question)
        return math.prod(p.probs[0] for p in self._plan(pp))

    def sample(
        self,
        question: str | ParsedProblem,
        *,
        seed: int = 0,
        temperature: float = 1.0,
        prefix: str | None = None,
        index: int = 0,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        max_tokens: int | None = None,
    ) -> SimSample:
        """Write one (continuation of a) solution.

        Args:
            question: Text holding the problem (the last one in it is solved), or a parsed one.
            seed: The request seed; with `index`, it fixes the sample.
            temperature: 0 is greedy (the most likely path, whatever the seed); higher
                values spread the choices at each step.
            prefix: A partial solution to continue (steps separated by blank lines; it may
                contain mistakes, which then mostly carry on).
            index: Which of the `n` samples of one request this is.
            top_p: Nucleus truncation of each step's choices.
            stop: Stop sequences (e.g. `[STEP_DELIMITER]` for one step at a time); not
                matched against the separator that opens a continuation.
            max_tokens: Cut the text after this many tokens (finish reason "length").

        Raises:
            ConfigError: No problem can be found in `question`, or a parameter is out of range.
        """
        if not (0.0 <= temperature <= 2.0 and math.isfinite(temperature)):
            raise ConfigError(f"temperature must be in [0, 2], got {temperature}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
        if max_tokens is not None and max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {max_tokens}")
        pp = _parse(question)
        plans = self._plan(pp)
        prefix = prefix or ""
        done, v, sep, complete, wrote = _read_prefix(pp, prefix)
        # Key on the steps written, not their spacing: a raw prompt and a chat prefill
        # holding the same partial solution get the same continuation.
        written = tuple(split_steps(prefix))
        if temperature == 0.0:
            rng = random.Random(_stable_hash("greedy", self.seed, pp.key, written))
        else:
            rng = random.Random(_stable_hash("sample", self.seed, pp.key, seed, index, written))
        d = pp.difficulty
        tokens: list[str] = []
        lps: list[float] = []
        # (paragraph, value, on track, end offset in the generated text)
        records: list[tuple[str, int, bool, int]] = []
        if complete:
            return _build(pp, [], [], records, stop, max_tokens, 0)
        length = 0
        if sep:
            for tok in tokenize(sep):
                tokens.append(tok)
                lps.append(-0.01 * rng.expovariate(1.0))
                length += len(tok)
        search_from = length
        n = len(pp.ops)
        for i in range(done, max(n, done + 1)):
            parts: list[str] = []
            if i == 0 and not wrote:
                parts.append(_INTRO)
            if i >= n:
                # Past the last operation without an answer yet: state it.
                body, err, new_v = f"The answer is {v}.", False, v
            else:
                plan = plans[i]
                true_before = pp.values[i - 1] if i > 0 else pp.start
                # Only now and then does the model notice an earlier slip and go back.
                recover = (1.0 - self.recovery_rate, self.recovery_rate)
                if v != true_before and _pick(recover, temperature, 1.0, rng.random()):
                    parts.append(
                        f"Wait, I made a mistake earlier. Going back over the steps, {pp.name} "
                        f"should have {true_before} {pp.item} at this point."
                    )
                    v = true_before
                choice = _pick(plan.probs, temperature, top_p or 1.0, rng.random())
                outcome = plan.outcomes[choice]
                body, new_v = _step_text(pp, pp.ops[i], v, outcome, plan)
                err = outcome != "ok"
                if i == n - 1:
                    body += f" The answer is {new_v}."
            body_toks = tokenize(body)
            base = len(body_toks) + sum(len(_tokens_of(p)) for p in parts)
            fill = round((self.tokens_per_step - base) / 7 + rng.gauss(0.0, 0.8))
            for _ in range(min(3, max(0, fill))):
                parts.append(_FILLERS[rng.randrange(len(_FILLERS))])
            # Every part starts with a letter, so joining with spaces only merges each space
            # into the next part's first token.
            ptoks: list[str] = []
            for k, toks in enumerate((*(_tokens_of(p) for p in parts), body_toks)):
                if k:
                    ptoks.append(" " + toks[0])
                    ptoks.extend(toks[1:])
                else:
                    ptoks.extend(toks)
            para = "".join(ptoks)
            keys = _key_positions(ptoks)
            scale = 0.05 * (1.0 + 1.5 * d) * math.exp(rng.gauss(0.0, 0.35)) * (1.3 if err else 1.0)
            mu = 1.2 if err else 2.6 - 1.6 * d
            rnd, log = rng.random, math.log
            plps = [scale * log(1.0 - rnd()) for _ in ptoks]  # -scale * Exp(1)
            for j in keys:
                plps[j] = max(_log_sigmoid(rng.gauss(mu, 1.3)), -20.0)
            tokens.extend(ptoks)
            lps.extend(plps)
            length += len(para)
            v = new_v
            true_after = pp.values[i] if i < n else pp.answer
            records.append((para, v, v == true_after, length))
            if i >= n - 1:
                break
            tokens.append(STEP_DELIMITER)
            lps.append(-0.02 * rng.expovariate(1.0))
            length += len(STEP_DELIMITER)
            if stop and any("".join(tokens).find(s, search_from) >= 0 for s in stop):
                break
            if max_tokens is not None and len(tokens) > max_tokens:
                break
        return _build(pp, tokens, lps, records, stop, max_tokens, search_from)


def _parse(question: str | ParsedProblem) -> ParsedProblem:
    if isinstance(question, ParsedProblem):
        return question
    pp = parse_problem(question)
    if pp is None:
        raise ConfigError(
            "no word problem found in the question: the simulator reads problems written like "
            "make_problems() writes them ('<Name> has N <items>. ... How many <items> does <Name> have now?')"
        )
    return pp


def _read_prefix(pp: ParsedProblem, prefix: str) -> tuple[int, int, str, bool, bool]:
    """Read a prefix: (steps done, running value, separator, complete, anything written)."""
    if not prefix:
        return 0, pp.start, "", False, False
    if extract_answer(prefix) is not None:
        return 0, pp.start, "", True, True
    values = [x for x in (last_number(p) for p in split_steps(prefix)) if x is not None]
    wrote = bool(prefix.strip())
    if not values:
        return 0, pp.start, "" if prefix[-1].isspace() else " ", False, wrote
    tail = prefix.rstrip(" \t")
    if tail.endswith(STEP_DELIMITER):
        sep = ""
    elif tail.endswith("\n"):
        sep = "\n"
    else:
        sep = STEP_DELIMITER
    return len(values), values[-1], sep, False, wrote


def _build(
    pp: ParsedProblem,
    tokens: list[str],
    lps: list[float],
    records: list[tuple[str, int, bool, int]],
    stop: Sequence[str] | None,
    max_tokens: int | None,
    search_from: int,
) -> SimSample:
    toks, kept_lps, finish = truncate(tokens, lps, stop=stop, max_tokens=max_tokens, search_from=search_from)
    text = "".join(toks)
    kept = [r for r in records if r[3] <= len(text)]
    answer = extract_answer(text)
    return SimSample(
        text=text,
        steps=tuple(r[0] for r in kept),
        answer=answer,
        tokens=tuple(toks),
        token_logprobs=tuple(kept_lps),
        finish_reason=finish,
        values=tuple(r[1] for r in kept),
        on_track=tuple(r[2] for r in kept),
        correct=None if answer is None else answer == str(pp.answer),
    )
