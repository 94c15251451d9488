"""Named faults and seeded trial plans.

A `Fault` is a small declarative behaviour the server applies to one request. Every fault
has a name in `FAULTS`; a trial's `Plan` is the list of fault names its requests get, in the
order they arrive at the server (after the list, `default`), so a failing trial prints as
one line and is rebuilt from its seed with `make_trial(seed)`.

Families:

- "flaky": an honest server having a bad day (statuses, delays, cut connections, broken
  bodies). Its usage is always true, so its bill must never pass the budget.
- "lying": a server whose answers are well-formed but whose numbers are wrong (usage
  omitted, negative, inflated; more tokens than `max_tokens`; more or fewer choices than `n`;
  duplicate stream indexes).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Literal

__all__ = [
    "BUDGET_KINDS",
    "ENDPOINTS",
    "FAMILIES",
    "FAULTS",
    "RAW_STRATEGIES",
    "STRATEGIES",
    "Fault",
    "Trial",
    "make_trial",
]

Family = Literal["flaky", "lying", "none"]
Usage = Literal["honest", "omit", "negative", "inflate_prompt"]

ENDPOINTS = ("openai-chat", "openai-completions", "anthropic")
STRATEGIES = ("single", "self-consistency", "adaptive", "best-of-n", "beam-search", "dvts")
RAW_STRATEGIES = ("beam-search", "dvts")
BUDGET_KINDS = ("usd", "tokens", "samples", "seconds")
FAMILIES = ("flaky", "lying")


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """What the server does to one request.

    Attributes:
        name: The registry key.
        family: "flaky", "lying" or "none" (the honest answer).
        status: Answer with this HTTP status (and a JSON error body) instead of a completion.
        retry_after: With `status`, the `Retry-After` header (seconds).
        delay: Seconds to wait before answering.
        chunk_delay: Seconds to wait before each streamed token (a slow stream).
        reset_after: Drop the connection after this many tokens (streamed) or half the body.
        truncate_after: End a stream cleanly after this many tokens, without its end marker.
        malformed: Send a body (or one event) that is not JSON.
        error_body: HTTP 200 whose body (or one event) is an error object.
        usage: How usage is reported: "honest", "omit", "negative", "inflate_prompt".
        extra_tokens: Generate (and report) this many tokens beyond `max_tokens`.
        choice_delta: Return n + choice_delta choices (OpenAI routes; at least 0).
        duplicate_index: Give two choices the same index (OpenAI) / two text blocks (Anthropic).
    """

    name: str
    family: Family
    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    reset_after: int | None = None
    truncate_after: int | None = None
    malformed: bool = False
    error_body: bool = False
    usage: Usage = "honest"
    extra_tokens: int = 0
    choice_delta: int = 0
    duplicate_index: bool = False

    @property
    def lies(self) -> bool:
        """Whether the answer's numbers may differ from what the server generated."""
        return self.usage in ("negative", "inflate_prompt") or bool(
            self.extra_tokens or self.choice_delta or self.duplicate_index
        )


def _registry(*faults: Fault) -> dict[str, Fault]:
    return {f.name: f for f in faults}


FAULTS: dict[str, Fault] = _registry(
    Fault("ok", "none"),
    # -- flaky-honest -----------------------------------------------------------------
    Fault("http_429", "flaky", status=429, retry_after=0.01),
    Fault("http_500", "flaky", status=500),
    Fault("http_503", "flaky", status=503),
    Fault("http_529", "flaky", status=529),
    Fault("slow", "flaky", delay=0.05),
    Fault("slow_stream", "flaky", chunk_delay=0.004),
    Fault("reset_mid_stream", "flaky", reset_after=3),
    Fault("truncated_sse", "flaky", truncate_after=4),
    Fault("malformed_json", "flaky", malformed=True),
    Fault("error_body_200", "flaky", error_body=True),
    # -- lying ------------------------------------------------------------------------
    Fault("usage_omitted", "lying", usage="omit"),
    Fault("negative_usage", "lying", usage="negative"),
    Fault("over_max_tokens", "lying", extra_tokens=40),
    Fault("extra_choice", "lying", choice_delta=1),
    Fault("fewer_choices", "lying", choice_delta=-1),
    Fault("duplicate_index", "lying", duplicate_index=True),
    Fault("inflated_prompt", "lying", usage="inflate_prompt"),
)

_BY_FAMILY = {fam: tuple(n for n, f in FAULTS.items() if f.family == fam) for fam in FAMILIES}


@dataclasses.dataclass(frozen=True, slots=True)
class Trial:
    """One seeded trial: what to run, under which budget, against which faults.

    Attributes:
        seed: Everything below is drawn from it.
        endpoint: "openai-chat", "openai-completions" or "anthropic".
        stream: Whether the endpoint streams (SSE).
        strategy: A built-in strategy name.
        verifier: "judge" (an LLM judge / PRM on the same fault server) or "function".
        budget_kind: "usd", "tokens", "samples" or "seconds".
        budget: The limit of that kind.
        max_tokens: Per-generation `max_tokens`.
        family: The fault family.
        faults: Fault names for the trial's requests, in arrival order.
        default: The fault for requests after `faults` ("usage_omitted" = usage always omitted).
    """

    seed: int
    endpoint: str
    stream: bool
    strategy: str
    verifier: str
    budget_kind: str
    budget: float
    max_tokens: int
    family: str
    faults: tuple[str, ...]
    default: str = "ok"

    @property
    def id(self) -> str:
        """The trial's name on the wire (the `x-fault-trial` header)."""
        return f"t{self.seed}"

    def fault_for(self, index: int) -> Fault:
        """The fault of the trial's `index`-th request (0-based, in arrival order)."""
        name = self.faults[index] if index < len(self.faults) else self.default
        return FAULTS[name]

    def describe(self) -> str:
        """One line that says everything about the trial (it is rebuilt by `make_trial(seed)`)."""
        plan = ",".join(self.faults) + (f" then {self.default}" if self.default != "ok" else "")
        return (
            f"seed={self.seed} {self.endpoint} stream={self.stream} {self.strategy}"
            f"({self.verifier}) budget {self.budget_kind}={self.budget:g} max_tokens={self.max_tokens} "
            f"{self.family}: [{plan}]"
        )


def make_trial(seed: int) -> Trial:
    """The trial of `seed`: the same seed always gives the same trial."""
    rng = random.Random(seed)
    # Round-robin on the seed for the three axes that the table is cut by, so every cell fills.
    endpoint = ENDPOINTS[seed % 3]
    family = FAMILIES[(seed // 3) % 2]
    # Legacy completions take raw prompts only, and only the tree searches write them (raw
    # mode): on that endpoint the trials cycle through those, so none is refused up front.
    strategies = RAW_STRATEGIES if endpoint == "openai-completions" else STRATEGIES
    strategy = strategies[(seed // 6) % len(strategies)]
    budget_kind = rng.choice(BUDGET_KINDS)
    stream = rng.random() < 0.5
    verifier = rng.choice(("judge", "function"))
    max_tokens = rng.choice((16, 32, 64))
    if budget_kind == "usd":
        budget = round(rng.uniform(0.0003, 0.004), 6)
    elif budget_kind == "tokens":
        budget = float(rng.randint(150, 2500))
    elif budget_kind == "samples":
        budget = float(rng.randint(1, 12))
    else:
        budget = round(rng.uniform(0.03, 0.6), 3)
    pool = _BY_FAMILY[family]
    length = rng.randint(1, 8)
    faults = tuple(rng.choice(pool) if rng.random() < 0.6 else "ok" for _ in range(length))
    default = "usage_omitted" if family == "lying" and rng.random() < 0.25 else "ok"
    return Trial(
        seed=seed,
        endpoint=endpoint,
        stream=stream,
        strategy=strategy,
        verifier=verifier,
        budget_kind=budget_kind,
        budget=budget,
        max_tokens=max_tokens,
        family=family,
        faults=faults,
        default=default,
    )
