"""The fault server's own bill: what it would charge for every request it handled.

The server knows what it generated, so its bill is the truth the SDK's receipt is checked
against. For each request it records the prompt tokens it billed (its claim when it inflated
it, else the true count), the completion tokens it generated and sent (for a stream the
client cut, what was sent before the disconnect), the choices it returned, and whether its
answer stayed within what the SDK could have reserved for it.
"""

from __future__ import annotations

import dataclasses
import time

__all__ = ["INPUT_PICO", "OUTPUT_PICO", "RequestBill", "TrialBill"]

# The fault model's price: $1 per million prompt tokens, $4 per million completion tokens,
# in picodollars per token (the SDK's endpoints are given the same price).
INPUT_PICO = 1_000_000
OUTPUT_PICO = 4_000_000


@dataclasses.dataclass(slots=True)
class RequestBill:
    """One request as the server saw it and would charge it.

    Attributes:
        trial: The trial's id (the `x-fault-trial` header).
        index: Arrival order within the trial (0-based).
        fault: The fault applied.
        route: "chat", "completions" or "messages".
        stream: Whether the answer was streamed.
        n: Choices asked for.
        max_tokens: The request's `max_tokens`.
        prompt_bound: The SDK's reservation bound on the prompt (UTF-8 bytes plus overhead).
        true_prompt: Prompt tokens by the server's tokenizer.
        billed_prompt: Prompt tokens charged (0 for an HTTP error status).
        claimed_prompt: Prompt tokens reported to the client (None: not reported).
        claimed_completion: Completion tokens reported (None: not reported).
        sent_completion: Completion tokens generated and sent.
        choices: Choices returned.
        started: `time.monotonic()` on arrival.
        ended: When the last byte was handed to the server (None: still sending or cut).
        finished: The answer was sent completely.
        lied_choices: The server returned other choices than the `n` asked for.
        sent: The SDK side's tick when it sent the request (`faults.tap`; 0: not tapped).
        arrived: The tick when the server received it.
        size: Bytes of the whole answer body, once it was all handed to the server to send.
    """

    trial: str
    index: int
    fault: str
    route: str
    stream: bool
    n: int
    max_tokens: int
    prompt_bound: int
    true_prompt: int
    billed_prompt: int = 0
    claimed_prompt: int | None = None
    claimed_completion: int | None = None
    sent_completion: int = 0
    choices: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    ended: float | None = None
    finished: bool = False
    lied_choices: bool = False
    sent: int = 0
    arrived: int = 0
    size: int | None = None

    @property
    def tokens(self) -> int:
        """Billed tokens, prompt plus completion."""
        return self.billed_prompt + self.sent_completion

    @property
    def pico(self) -> int:
        """Billed picodollars."""
        return self.billed_prompt * INPUT_PICO + self.sent_completion * OUTPUT_PICO

    @property
    def reserved_tokens(self) -> int:
        """The most the SDK could have reserved for this request, in tokens."""
        return self.prompt_bound + self.n * self.max_tokens

    @property
    def reserved_pico(self) -> int:
        """The most the SDK could have reserved for this request, in picodollars."""
        return self.prompt_bound * INPUT_PICO + self.n * self.max_tokens * OUTPUT_PICO

    @property
    def within_bound(self) -> bool:
        """Honest usage, prompt within the byte bound, completion within max_tokens, choices == n."""
        honest = (self.claimed_prompt is None or self.claimed_prompt == self.billed_prompt) and (
            self.claimed_completion is None or self.claimed_completion == self.sent_completion
        )
        return (
            honest
            and self.billed_prompt <= self.prompt_bound
            and self.sent_completion <= self.n * self.max_tokens
            and not self.lied_choices
            and self.choices <= self.n
        )

    @property
    def overran(self) -> bool:
        """Whether the server *reported* more than the SDK can have reserved (an overrun)."""
        prompt = self.claimed_prompt if self.claimed_prompt is not None else 0
        completion = self.claimed_completion if self.claimed_completion is not None else 0
        reported_pico = prompt * INPUT_PICO + completion * OUTPUT_PICO
        return (
            prompt + completion > self.reserved_tokens
            or reported_pico > self.reserved_pico
            or self.choices > self.n
        )


@dataclasses.dataclass(slots=True)
class TrialBill:
    """Every request of one trial."""

    requests: list[RequestBill] = dataclasses.field(default_factory=list)

    @property
    def pico(self) -> int:
        """Billed picodollars."""
        return sum(r.pico for r in self.requests)

    @property
    def tokens(self) -> int:
        """Billed tokens."""
        return sum(r.tokens for r in self.requests)

    @property
    def samples(self) -> int:
        """Choices returned (a choice counts once any of it was sent)."""
        return sum(r.choices for r in self.requests)

    @property
    def within_bound(self) -> bool:
        """Whether every request stayed within the reservation bound."""
        return all(r.within_bound for r in self.requests)

    def overruns(self) -> list[RequestBill]:
        """The requests whose reported usage passed what could be reserved, in arrival order."""
        return [r for r in self.requests if r.overran]
