"""OpenAI-compatible chat completions (`POST {base_url}/chat/completions`).

Works with OpenAI and with the many servers that speak its protocol (vLLM, SGLang, llama.cpp,
Ollama, OpenRouter, ...). See `OpenAIEndpoint` for the constructor arguments.

Example:
    >>> chat = OpenAIChat("gpt-4o-mini")  # doctest: +SKIP
    >>> resp = await chat.request(Request(messages=as_messages("2+2?"), n=4))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from .._exceptions import ConfigError
from .._models import Request, TokenLogprob
from .._prices import Price
from ._base import RetryPolicy
from ._openai_common import OpenAIEndpoint

__all__ = ["OpenAIChat"]


def _chat_logprobs(raw: Any) -> list[TokenLogprob] | None:
    # {"content": [{"token", "logprob", "top_logprobs": [{"token", "logprob"}, ...]}, ...]}
    if not isinstance(raw, dict):
        return None
    content = raw.get("content")
    if not isinstance(content, list):
        return None
    out = []
    for item in content:
        top = item.get("top_logprobs") or ()
        out.append(
            TokenLogprob(
                token=item["token"],
                logprob=item["logprob"],
                top=tuple((t["token"], t["logprob"]) for t in top),
            )
        )
    return out


class OpenAIChat(OpenAIEndpoint):
    """An OpenAI-compatible chat completions endpoint.

    A request's `prefill` is sent as a final assistant message; with `prefill_params` (the
    default) the body also carries `"continue_final_message": true, "add_generation_prompt":
    false`, which vLLM-style servers need to continue that message rather than start a new
    one. Pass `prefill_params=False` for servers that reject unknown fields.

    Args:
        model: Model name sent to the server.
        prefill_params: Send the continue-final-message flags with a prefill.
        base_url, api_key, http_client, price, provider, max_concurrency, retry, timeout,
            supports_n, stream, headers, max_tokens_field: See `OpenAIEndpoint`.
    """

    supports_n = True
    supports_prefill = True
    supports_raw = False
    _path: ClassVar[str] = "/chat/completions"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        price: Price | None = None,
        provider: str | None = None,
        max_concurrency: int = 64,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        supports_n: bool = True,
        stream: bool = False,
        headers: Mapping[str, str] | None = None,
        max_tokens_field: str = "max_tokens",
        prefill_params: bool = True,
    ) -> None:
        super().__init__(
            model,
            base_url=base_url,
            api_key=api_key,
            http_client=http_client,
            price=price,
            provider=provider,
            max_concurrency=max_concurrency,
            retry=retry,
            timeout=timeout,
            supports_n=supports_n,
            stream=stream,
            headers=headers,
            max_tokens_field=max_tokens_field,
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

    def _choice(self, choice: dict[str, Any]) -> tuple[str, list[TokenLogprob] | None]:
        message = choice["message"]
        content = message.get("content") if message is not None else None
        if content is not None and not isinstance(content, str):
            raise TypeError(f"message content is {type(content).__name__}, not text")
        return content or "", _chat_logprobs(choice.get("logprobs"))

    def _delta(self, choice: dict[str, Any]) -> tuple[str, str, list[TokenLogprob] | None]:
        delta = choice.get("delta") or {}
        content = delta.get("content") or ""
        # Reasoning servers stream thoughts under one of these names; they are billed output.
        reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        if not isinstance(content, str) or not isinstance(reasoning, str):
            raise TypeError("a delta's content is not text")
        return content, reasoning, _chat_logprobs(choice.get("logprobs"))
