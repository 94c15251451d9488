"""OpenAI-compatible chat completions (`POST {base_url}/chat/completions`).

Works with OpenAI and with the many servers that speak its protocol (vLLM, SGLang, llama.cpp,
Ollama, OpenRouter, ...). See `OpenAIEndpoint` and `HTTPSettings` for the constructor arguments.

Example:
    >>> chat = OpenAIChat("gpt-4o-mini")  # doctest: +SKIP
    >>> resp = await chat.request(Request(messages=as_messages("2+2?"), n=4))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, ClassVar, Unpack

from .._exceptions import ConfigError
from .._models import Request
from . import _openai_wire as wire
from ._http import HTTPSettings, HTTPSettingsArgs
from ._openai import OpenAIEndpoint

__all__ = ["OpenAIChat"]


class OpenAIChat(OpenAIEndpoint):
    """An OpenAI-compatible chat completions endpoint.

    A request's `prefill` is sent as a final assistant message; with `prefill_params` (the
    default) the body also carries `"continue_final_message": true, "add_generation_prompt":
    false`, which vLLM-style servers need to continue that message rather than start a new
    one. Pass `prefill_params=False` for servers that reject unknown fields.

    Args:
        model: Model name sent to the server.
        prefill_params: Send the continue-final-message flags with a prefill.
        supports_n: False for servers that ignore `n` (see `OpenAIEndpoint`).
        max_tokens_field: "max_tokens" or "max_completion_tokens" (see `OpenAIEndpoint`).
        settings: `HTTPSettings`; the keywords override its fields.
        **kwargs: The HTTP settings (`base_url`, `api_key`, `http_client`, `price`, `provider`,
            `max_concurrency`, `retry`, `timeout`, `headers`, `stream`): see `HTTPSettings`.
    """

    supports_n = True
    supports_prefill = True
    supports_raw = False
    _path: ClassVar[str] = "/chat/completions"
    _choices: ClassVar[wire.Choices] = wire.Choices(wire.chat_choice, wire.chat_delta)

    def __init__(
        self,
        model: str,
        *,
        prefill_params: bool = True,
        supports_n: bool = True,
        max_tokens_field: str = "max_tokens",
        settings: HTTPSettings | None = None,
        **kwargs: Unpack[HTTPSettingsArgs],
    ) -> None:
        super().__init__(
            model, supports_n=supports_n, max_tokens_field=max_tokens_field, settings=settings, **kwargs
        )
        self.prefill_params = prefill_params

    def _input(self, request: Request, body: dict[str, Any]) -> None:
        if request.messages is None:
            raise ConfigError(
                f"{self.name} takes chat messages, not a raw prompt: pass messages=..., or use "
                "OpenAICompletions for raw text continuation"
            )
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        if request.prefill:
            messages.append({"role": "assistant", "content": request.prefill})
            if self.prefill_params:
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        body["messages"] = messages

    def _logprob_params(self, request: Request, body: dict[str, Any]) -> None:
        body["logprobs"] = True
        if request.top_logprobs:
            body["top_logprobs"] = request.top_logprobs
