"""OpenAI-compatible legacy completions (`POST {base_url}/completions`): raw continuation.

The prompt is continued as plain text, with no chat template: beam search uses it to extend
a partial solution token-exactly. See `OpenAIEndpoint` and `HTTPSettings` for the constructor
arguments.

Example:
    >>> lm = OpenAICompletions("Qwen/Qwen2.5-0.5B", base_url="http://127.0.0.1:8000/v1")  # doctest: +SKIP
    >>> resp = await lm.request(Request(prompt="Step 1:", max_tokens=64))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, ClassVar

from .._exceptions import ConfigError
from .._models import Request
from . import _openai_wire as wire
from ._openai import OpenAIEndpoint

__all__ = ["OpenAICompletions"]


class OpenAICompletions(OpenAIEndpoint):
    """An OpenAI-compatible `/completions` endpoint (raw text continuation).

    Takes requests with a `prompt` (not `messages`); `top_logprobs=k` asks for `logprobs: k`
    and `logprobs=True` alone for `logprobs: 0` (the chosen tokens only). The constructor is
    `OpenAIEndpoint`'s: `supports_n`, `max_tokens_field`, `settings` and the HTTP settings.
    """

    supports_n = True
    supports_prefill = False
    supports_raw = True
    _path: ClassVar[str] = "/completions"
    _choices: ClassVar[wire.Choices] = wire.Choices(wire.completion_choice, wire.completion_delta)

    def _input(self, request: Request, body: dict[str, Any]) -> None:
        if request.prompt is None:
            raise ConfigError(
                f"{self.name} continues a raw prompt: pass prompt=... (or use OpenAIChat for messages)"
            )
        if request.prefill:
            raise ConfigError(f"{self.name} has no prefill: append the prefill to the prompt instead")
        body["prompt"] = request.prompt

    def _logprob_params(self, request: Request, body: dict[str, Any]) -> None:
        body["logprobs"] = request.top_logprobs or 0
