"""Replay of recorded samples: strategies and the controller run on pre-sampled outputs.

This is how the early-stopping self-consistency papers evaluate stopping rules: every
question was sampled many times in advance, and a strategy "samples" by drawing from that
fixed pool, without replacement, in recorded order or a seeded shuffle.

File format (JSONL, one question per line)::

    {"id": "q/0", "prompt": "...", "gold": "18",
     "samples": ["... The answer is 18.", {"answer": "18", "completion_tokens": 107}, ...]}

A sample is a text, or an object with `text` and/or a pre-extracted `answer`, and optional
`completion_tokens`, `logprobs` (per-token floats) and `score`. `prompt` may be null: the
question is then addressed by `ReplayEndpoint.prompt_for(question)`.
"""

from __future__ import annotations

import dataclasses
import json
import random
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .._exceptions import ConfigError, ResponseError
from .._ledger import prompt_token_bound
from .._models import Completion, Request, Response, TokenLogprob, Usage
from .._prices import Price
from .._tokens import estimate_tokens
from ._base import BaseEndpoint

__all__ = [
    "RecordedQuestion",
    "RecordedSample",
    "ReplayEndpoint",
    "jsonl_rows",
    "load_recorded",
    "recorded_question",
]


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedSample:
    """One recorded completion."""

    text: str = ""
    answer: str | None = None
    completion_tokens: int | None = None
    logprobs: tuple[float, ...] | None = None
    score: float | None = None

    def tokens(self) -> int:
        """Recorded completion tokens, or an estimate (4 bytes a token) from the text."""
        if self.completion_tokens is not None:
            return self.completion_tokens
        if self.logprobs:
            return len(self.logprobs)
        return max(1, estimate_tokens(len(self.text.encode())))


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedQuestion:
    """One question with its gold answer and its pool of recorded samples."""

    id: str
    prompt: str | None
    gold: str | None
    samples: tuple[RecordedSample, ...]


def _sample(raw: Any, where: str) -> RecordedSample:
    if isinstance(raw, str):
        return RecordedSample(text=raw)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a sample must be a string or an object, got {type(raw).__name__}")
    if "text" not in raw and "answer" not in raw:
        raise ConfigError(f"{where}: a sample object needs 'text' or 'answer'")
    answer = raw.get("answer")
    lps = raw.get("logprobs")
    try:
        return RecordedSample(
            text=str(raw.get("text") or ""),
            answer=None if answer is None else str(answer),
            completion_tokens=None if raw.get("completion_tokens") is None else int(raw["completion_tokens"]),
            logprobs=None if lps is None else tuple(float(x) for x in lps),
            score=None if raw.get("score") is None else float(raw["score"]),
        )
    except (TypeError, ValueError) as exc:  # e.g. completion_tokens that is not a number
        raise ConfigError(f"{where}: a malformed field ({exc})") from None


def recorded_question(row: Any, where: str) -> RecordedQuestion:
    """One recorded question from a parsed JSONL line; `where` names the line in errors.

    Raises:
        ConfigError: The line lacks `id` / `samples`, or a sample is malformed.
    """
    if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("samples"), list):
        raise ConfigError(f"{where}: each line needs an 'id' and a 'samples' list")
    samples = tuple(_sample(s, f"{where} sample {i}") for i, s in enumerate(row["samples"]))
    gold = row.get("gold")
    return RecordedQuestion(str(row["id"]), row.get("prompt"), None if gold is None else str(gold), samples)


def jsonl_rows(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Each non-blank line of a JSONL file, parsed, with `path:line` to name it in errors.

    Raises:
        ConfigError: The file is missing or unreadable, is not UTF-8, or a line is not valid
            JSON (the message names the line).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; the file must be JSONL") from None
    # split("\n"), not splitlines(): a JSON string may hold a raw U+2028, which is no line end.
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc.msg})") from None
        yield where, row


def load_recorded(path: str | Path) -> list[RecordedQuestion]:
    """Read a recorded-samples JSONL file.

    Raises:
        ConfigError: The file cannot be read, or a line is not valid JSON, lacks `id` /
            `samples`, or has a malformed sample (the message names the line).
    """
    return [recorded_question(row, where) for where, row in jsonl_rows(path)]


class ReplayEndpoint(BaseEndpoint):
    """Serves recorded samples as if a model generated them.

    Each question's samples are handed out without replacement, in recorded order
    (`shuffle=False`) or in an order shuffled by `seed` and the question id. Usage is the
    recorded completion tokens (or an estimate from the text), and prompt tokens estimated
    from the prompt; `n` draws several at once.

    Args:
        questions: The recorded questions (see `load_recorded`).
        seed: Seed of the per-question shuffle.
        shuffle: Shuffle each question's samples (False: recorded order).
        price: Price used for dollar figures (default: free).
        model: Display name.

    Raises:
        ResponseError: A question's pool is used up, or the prompt matches no question.
    """

    supports_n = True
    supports_raw = True

    def __init__(
        self,
        questions: Iterable[RecordedQuestion],
        *,
        seed: int = 0,
        shuffle: bool = True,
        price: Price | None = None,
        model: str = "replay",
    ) -> None:
        super().__init__(model, price=price if price is not None else Price(input=0, output=0))
        self.questions = {q.id: q for q in questions}
        self._by_prompt = {self.prompt_for(q): q for q in self.questions.values()}
        self.seed = seed
        self.shuffle = shuffle
        self._orders: dict[str, list[int]] = {}
        self._drawn: dict[str, int] = {}

    @staticmethod
    def prompt_for(question: RecordedQuestion) -> str:
        """The prompt that addresses `question` (its text, or a tag with its id)."""
        return question.prompt if question.prompt else f"[recorded question {question.id}]"

    def order(self, qid: str) -> Sequence[int]:
        """The order in which `qid`'s samples are handed out."""
        order = self._orders.get(qid)
        if order is None:
            order = list(range(len(self.questions[qid].samples)))
            if self.shuffle:
                random.Random(self.seed * 1_000_003 + zlib.crc32(qid.encode())).shuffle(order)
            self._orders[qid] = order
        return order

    def drawn(self, qid: str) -> int:
        """Samples of `qid` handed out so far."""
        return self._drawn.get(qid, 0)

    def reset(self, seed: int | None = None) -> None:
        """Start every question's pool afresh (optionally with a new shuffle seed)."""
        if seed is not None:
            self.seed = seed
        self._orders.clear()
        self._drawn.clear()

    def _question(self, request: Request) -> RecordedQuestion:
        text = request.prompt
        if text is None:
            assert request.messages is not None
            text = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        q = self._by_prompt.get(text)
        if q is None:
            raise ResponseError(f"no recorded question has this prompt: {text[:80]!r}", endpoint=self.name)
        return q

    async def _send(self, request: Request) -> Response:
        q = self._question(request)
        start = self.drawn(q.id)
        order = self.order(q.id)
        if start >= len(order):
            raise ResponseError(
                f"all {len(order)} recorded samples of question {q.id!r} are used up", endpoint=self.name
            )
        picks = order[start : start + request.n]
        self._drawn[q.id] = start + len(picks)
        completions = []
        tokens = 0
        for i, idx in enumerate(picks):
            s = q.samples[idx]
            t = min(s.tokens(), request.max_tokens)
            tokens += t
            lps = None
            if request.logprobs and s.logprobs is not None:
                lps = tuple(TokenLogprob(token="", logprob=x) for x in s.logprobs)
            completions.append(
                Completion(
                    text=s.text,
                    finish_reason="stop",
                    index=i,
                    logprobs=lps,
                    completion_tokens=t,
                    score=s.score,
                    answer=s.answer,
                )
            )
        prompt_tokens = estimate_tokens(prompt_token_bound(request))
        return Response(
            completions=tuple(completions),
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=tokens),
            model=self.model,
            usage_reported=all(q.samples[i].completion_tokens is not None for i in picks),
        )
