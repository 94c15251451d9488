"""In-process endpoints for the simulated reasoner and its verifier.

The work is done by two pure functions, `simulate_response` and `simulate_reward_response`,
from a `Request` to a `Response`; the endpoints add only the (optional) simulated latency.
An HTTP server can call the same functions.

Request shapes:

- Solver (`SimEndpoint`): chat `messages` whose last user message holds the problem; a
  partial solution to continue goes in `prefill` (or a final assistant message). Or a raw
  `prompt`: the problem followed by the partial solution. Honours `n`, `max_tokens`,
  `stop`, `seed`, `temperature`, `top_p`, `logprobs` and `top_logprobs`.
- Verifier (`SimRewardEndpoint`): chat messages `[user: problem, assistant: solution]`
  (or the solution as `prefill`), or a raw `prompt` of problem then solution. Each completion
  carries the score in `Completion.score` and, as JSON text, `{"score": s, "step_scores":
  [...]}`. `extra={"score": "auto" | "outcome" | "last" | "min"}` picks the score (default
  "auto": outcome score for a finished solution, last step's score for a partial one).
"""

from __future__ import annotations

import itertools
import json
import math
import re

import anyio
import anyio.lowlevel
from pydantic import TypeAdapter

from .._exceptions import ConfigError
from .._models import Completion, Request, Response, TokenLogprob, Usage
from ..endpoints._base import BaseEndpoint, RetryPolicy, current_meter
from ._problems import ParsedProblem, _stable_hash, _unit, parse_problem, split_prompt, split_steps
from ._solver import SimModel, SimSample, tokenize, truncate
from ._verifier import SimVerifier

__all__ = [
    "SimEndpoint",
    "SimRewardEndpoint",
    "count_prompt_tokens",
    "simulate_response",
    "simulate_reward_response",
    "simulate_samples",
    "simulated_timing",
]

_MESSAGE_OVERHEAD = 4  # role markers per message: well under the ledger's bound of 8
_REQUEST_OVERHEAD = 3
_NO_PROBLEM = "I could not find a word problem to solve in this prompt."

# Asked to grade a solution (an LLM judge's prompt: the problem, a solution, and a request for
# "Score: N" or a Yes/No), the simulated model judges like a noisy verifier: judging its own
# kind of work, it is noisier than the dedicated reward model (`SimVerifier`'s default noise).
_GRADING = re.compile(
    r"Problem:\n(?P<question>.*?)\n\n(?:Proposed solution|Solution):\n(?P<solution>.*)\n\n(?P<ask>[^\n]+)\Z",
    re.S,
)
SELF_JUDGE_NOISE = 1.5
_ALTERNATIVES = (" the", " so", ",", ".", " and", " is", " we", " a", " then", " that")
_AUTO_SEED_BASE = 1 << 62  # far from any seed a caller would pick


def count_prompt_tokens(request: Request) -> int:
    """Count the prompt tokens the simulator bills for `request`, exactly.

    Never more than the ledger's tokenizer-free bound (`prompt_token_bound`).
    """
    if request.prompt is not None:
        return len(tokenize(request.prompt)) + _REQUEST_OVERHEAD
    assert request.messages is not None
    total = _REQUEST_OVERHEAD + sum(len(tokenize(m.content)) + _MESSAGE_OVERHEAD for m in request.messages)
    if request.prefill:
        total += len(tokenize(request.prefill)) + _MESSAGE_OVERHEAD
    return total


def _chat_input(request: Request) -> tuple[ParsedProblem | None, str | None]:
    """Find the problem of a chat request and the assistant text after it (None when absent)."""
    assert request.messages is not None
    messages = request.messages
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    pp = parse_problem(messages[users[-1]].content) if users else None
    if pp is None:
        pp = parse_problem("\n".join(m.content for m in messages if m.role != "assistant"))
    if request.prefill is not None:
        return pp, request.prefill
    last = messages[-1]
    if last.role == "assistant" and (not users or users[-1] < len(messages) - 1):
        return pp, last.content
    return pp, None


def _top(token: str, logprob: float, k: int, key: int) -> tuple[tuple[str, float], ...]:
    """Make up plausible alternatives to `token` sharing the probability it leaves (sorted)."""
    if k <= 0:
        return ()
    rest = max(1e-9, 1.0 - math.exp(logprob))
    stripped = token.strip().lstrip("-")
    if stripped.isdigit():
        lead = token[: len(token) - len(token.lstrip())]
        base = int(stripped)
        pool = [f"{lead}{base + d}" for d in (1, -1, 10, -10, 2, -2, 5, 100, 20, 3) if base + d >= 0]
    else:
        pool = list(_ALTERNATIVES)
    start = key % len(pool)
    pool = [t for t in pool[start:] + pool[:start] if t != token][: k - 1]
    share, entries = 0.6, [(token, logprob)]
    for alt in pool:
        entries.append((alt, math.log(max(rest * share, 1e-12))))
        share *= 0.4
    entries.sort(key=lambda e: -e[1])
    return tuple(entries[:k])


_LOGPROBS = TypeAdapter(tuple[TokenLogprob, ...])


def _logprobs(sample: SimSample, k: int, key: int) -> tuple[TokenLogprob, ...]:
    # One batch validation in pydantic-core costs a fraction of building each token in Python.
    pairs = zip(sample.tokens, sample.token_logprobs, strict=True)
    if k <= 0:
        return _LOGPROBS.validate_python([{"token": t, "logprob": lp} for t, lp in pairs])
    return _LOGPROBS.validate_python(
        [{"token": t, "logprob": lp, "top": _top(t, lp, k, key + j)} for j, (t, lp) in enumerate(pairs)]
    )


def _plain(text: str, request: Request, logprob: float = -0.05) -> SimSample:
    """A completion of fixed text, cut at `max_tokens` and stop sequences."""
    toks = tokenize(text)
    lps = [logprob] * len(toks)
    kept, lps, finish = truncate(toks, lps, stop=request.stop, max_tokens=request.max_tokens)
    return SimSample(
        text="".join(kept),
        steps=(),
        answer=None,
        tokens=tuple(kept),
        token_logprobs=tuple(lps),
        finish_reason=finish,
        values=(),
        on_track=(),
        correct=None,
    )


def _judgement(model: SimModel, request: Request) -> SimSample | None:
    """The model's reply when `request` asks it to grade a solution (None: it does not)."""
    if request.messages is None or request.messages[-1].role != "user":
        return None
    match = _GRADING.search(request.messages[-1].content)
    if match is None:
        return None
    pp = parse_problem(match["question"])
    if pp is None:
        return None
    judge = SimVerifier(name=model.name, seed=model.seed, noise=SELF_JUDGE_NOISE)
    p = judge.score_solution(pp, match["solution"].strip())
    if "Yes or No" in match["ask"]:
        return _plain("Yes" if p >= 0.5 else "No", request)
    verdict = "The steps check out." if p >= 0.5 else "A step looks wrong."
    return _plain(f"{verdict}\nScore: {round(10 * p)}", request)


def simulate_samples(model: SimModel, request: Request, *, auto_seed: int = 0) -> list[SimSample]:
    """Write the `n` samples `model` gives for `request` (see the module doc for request shapes).

    A request to grade a solution (a problem, a solution, and "Score: N" or "Yes or No" asked
    on the last line, as `LLMJudge` sends) gets a judgement instead: the solution scored by a
    `SimVerifier` with `SELF_JUDGE_NOISE`, as "Score: N" (0-10) or "Yes" / "No".

    Args:
        model: The simulated reasoner.
        request: The request.
        auto_seed: Used in place of `request.seed` when that is None.
    """
    judged = _judgement(model, request)
    if judged is not None:
        return [judged] * request.n
    if request.prompt is not None:
        pp, prefix = split_prompt(request.prompt)
    else:
        pp, assistant = _chat_input(request)
        prefix = assistant or ""
    if pp is None:
        return [_plain(_NO_PROBLEM, request, logprob=-0.5)] * request.n
    seed = request.seed if request.seed is not None else _AUTO_SEED_BASE + auto_seed
    temperature = 1.0 if request.temperature is None else request.temperature
    return [
        model.sample(
            pp,
            seed=seed,
            temperature=temperature,
            prefix=prefix,
            index=i,
            top_p=request.top_p,
            stop=request.stop,
            max_tokens=request.max_tokens,
        )
        for i in range(request.n)
    ]


def _to_response(model: SimModel, request: Request, samples: list[SimSample]) -> Response:
    want = request.logprobs or bool(request.top_logprobs)
    k = request.top_logprobs or 0
    key = _stable_hash("top", request.seed)
    completions = tuple(
        Completion(
            text=s.text,
            finish_reason=s.finish_reason,
            index=i,
            logprobs=_logprobs(s, k, key + 1000 * i) if want else None,
            completion_tokens=s.completion_tokens,
        )
        for i, s in enumerate(samples)
    )
    usage = Usage(
        prompt_tokens=count_prompt_tokens(request),
        completion_tokens=sum(s.completion_tokens for s in samples),
    )
    ident = f"sim-{_stable_hash('id', request.prompt_key(), request.seed, request.n) & 0xFFFFFFFF:08x}"
    return Response(completions=completions, usage=usage, model=model.name, id=ident)


def simulate_response(model: SimModel, request: Request, *, auto_seed: int = 0) -> Response:
    """Answer `request` as `model`, with exact usage (the prompt billed once for all `n`).

    A prompt with no recognisable problem gets a short apology rather than an error, as a
    real model would give.

    Args:
        model: The simulated reasoner.
        request: The request (see the module doc for the shapes understood).
        auto_seed: Used in place of `request.seed` when that is None.
    """
    return _to_response(model, request, simulate_samples(model, request, auto_seed=auto_seed))


def simulate_reward_response(verifier: SimVerifier, request: Request) -> Response:
    """Score the (question, solution) in `request` with the verifier: one token per completion.

    Raises:
        ConfigError: The request carries no solution, or `extra["score"]` is unknown.
    """
    if request.prompt is not None:
        pp, solution = split_prompt(request.prompt)
        if pp is None:
            solution = request.prompt
    else:
        pp, assistant = _chat_input(request)
        if assistant is None:
            raise ConfigError(
                "a reward request needs the solution to score: send messages "
                "[user: problem, assistant: solution] or put the solution in prefill"
            )
        solution = assistant
    how = str(request.extra.get("score", "auto"))
    if pp is None:
        if how not in ("auto", "outcome", "last", "min"):
            raise ConfigError(f"extra['score'] must be 'auto', 'outcome', 'last' or 'min', got {how!r}")
        score, steps = 0.5, [0.5] * len(split_steps(solution))
    else:
        score = verifier.score_solution(pp, solution, how)
        steps = verifier.score_steps(pp, split_steps(solution))
    text = json.dumps({"score": round(score, 6), "step_scores": [round(s, 6) for s in steps]})
    completions = tuple(
        Completion(text=text, finish_reason="stop", index=i, completion_tokens=1, score=score)
        for i in range(request.n)
    )
    usage = Usage(prompt_tokens=count_prompt_tokens(request), completion_tokens=request.n)
    return Response(completions=completions, usage=usage, model=verifier.name)


def _check_latency(first_token_seconds: float, seconds_per_token: float, jitter: float) -> None:
    pairs = (("first_token_seconds", first_token_seconds), ("seconds_per_token", seconds_per_token))
    for label, value in pairs:
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{label} must be a finite number >= 0, got {value}")
    if not (math.isfinite(jitter) and 0 <= jitter < 1):
        raise ConfigError(f"jitter must be in [0, 1), got {jitter}")


class SimEndpoint(BaseEndpoint):
    """The simulated reasoner as an endpoint: no network, exact usage, explicit price.

    Args:
        sim: The simulated model (default `SimModel()`, priced like gpt-4o-mini).
        first_token_seconds: Simulated time to the first token.
        seconds_per_token: Simulated decoding time per token (the `n` samples of one request
            decode in parallel, so the longest one counts).
        jitter: Relative spread of the simulated time, fixed by the request's seed.
        max_concurrency: Requests in flight at once.
        retry: Retry policy (the simulator itself never fails).

    Requests without a seed take seeds from a per-endpoint counter: reproducible when calls
    are made in a fixed order; pass `seed` for exact reproducibility under concurrency.
    """

    supports_n = True
    supports_prefill = True
    supports_raw = True

    def __init__(
        self,
        sim: SimModel | None = None,
        *,
        first_token_seconds: float = 0.0,
        seconds_per_token: float = 0.0,
        jitter: float = 0.2,
        max_concurrency: int = 64,
        retry: RetryPolicy | None = None,
    ) -> None:
        _check_latency(first_token_seconds, seconds_per_token, jitter)
        self.sim = sim if sim is not None else SimModel()
        super().__init__(self.sim.name, price=self.sim.price, max_concurrency=max_concurrency, retry=retry)
        self.first_token_seconds = first_token_seconds
        self.seconds_per_token = seconds_per_token
        self.jitter = jitter
        self._auto_seeds = itertools.count()

    async def _send(self, request: Request) -> Response:
        auto = next(self._auto_seeds) if request.seed is None else 0
        samples = simulate_samples(self.sim, request, auto_seed=auto)
        response = _to_response(self.sim, request, samples)
        lengths = [s.completion_tokens for s in samples]
        await _pace(self, request, response.usage, lengths, auto)
        return response


def simulated_timing(
    request: Request,
    *,
    first_token_seconds: float,
    seconds_per_token: float,
    jitter: float = 0.2,
    auto_seed: int = 0,
) -> tuple[float, float]:
    """Return (seconds to the first token, seconds per token) for `request`.

    Both are scaled by one factor in [1 - jitter, 1 + jitter] fixed by the request (and
    `auto_seed` when it has no seed), so a simulated run takes the same time every time.

    Raises:
        ConfigError: A time is negative or not finite, or `jitter` is outside [0, 1).
    """
    _check_latency(first_token_seconds, seconds_per_token, jitter)
    u = _unit("latency", request.prompt_key(), request.seed, request.n, auto_seed)
    factor = 1.0 + jitter * (2.0 * u - 1.0)
    return first_token_seconds * factor, seconds_per_token * factor


async def _pace(endpoint: SimEndpoint, request: Request, usage: Usage, lengths: list[int], auto: int) -> None:
    """Sleep as long as decoding would take, keeping the usage meter current meanwhile."""
    meter = current_meter()
    longest = max(lengths, default=0)
    if endpoint.first_token_seconds == 0 and (endpoint.seconds_per_token == 0 or longest == 0):
        await anyio.lowlevel.checkpoint()
    else:
        first, per_token = simulated_timing(
            request,
            first_token_seconds=endpoint.first_token_seconds,
            seconds_per_token=endpoint.seconds_per_token,
            jitter=endpoint.jitter,
            auto_seed=auto,
        )
        if meter is not None:
            meter.usage = Usage(prompt_tokens=usage.prompt_tokens)
        await anyio.sleep(first)
        chunks = min(8, longest)
        per_chunk = per_token * longest / max(chunks, 1)
        for c in range(1, chunks + 1):
            await anyio.sleep(per_chunk)
            if meter is not None:
                # What a stream would have delivered so far, should the caller cancel now.
                done = -(-longest * c // chunks)
                meter.usage = Usage(
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=sum(min(n, done) for n in lengths),
                )
                meter.samples = sum(n <= done for n in lengths)
    if meter is not None:
        meter.usage = usage
        meter.samples = len(lengths)


class SimRewardEndpoint(BaseEndpoint):
    """The simulated verifier as an endpoint: the score comes back in `Completion.score`.

    Args:
        verifier: The simulated verifier (default `SimVerifier()`, priced $0.10 / $0.10).
        max_concurrency: Requests in flight at once.
        retry: Retry policy (the simulator itself never fails).
    """

    supports_n = True
    supports_prefill = True
    supports_raw = True

    def __init__(
        self,
        verifier: SimVerifier | None = None,
        *,
        max_concurrency: int = 64,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.verifier = verifier if verifier is not None else SimVerifier()
        super().__init__(
            self.verifier.name, price=self.verifier.price, max_concurrency=max_concurrency, retry=retry
        )

    async def _send(self, request: Request) -> Response:
        response = simulate_reward_response(self.verifier, request)
        await anyio.lowlevel.checkpoint()
        meter = current_meter()
        if meter is not None:
            meter.usage = response.usage
            meter.samples = len(response.completions)
        return response
