"""OpenAI-compatible legacy completions (`POST {base_url}/completions`): raw continuation.

The prompt is continued as plain text, with no chat template: beam search uses it to extend
a partial solution token-exactly. See `OpenAIEndpoint` for the constructor arguments.

Example:
    >>> lm = OpenAICompletions("Qwen/Qwen2.5-0.5B", base_url="http://127.0.0.1:8000/v1")  # doctest: +SKIP
    >>> resp = await lm.request(Request(prompt="Step 1:", max_tokens=64))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, ClassVar

from .._exceptions import ConfigError
from .._models import Request, TokenLogprob
from ._openai_common import OpenAIEndpoint

__all__ = ["OpenAICompletions"]


def _completion_logprobs(raw: Any) -> list[TokenLogprob] | None:
    # {"tokens": [...], "token_logprobs": [...], "top_logprobs": [{token: logprob} | None, ...]}
    if not isinstance(raw, dict):
        return None
    tokens = raw.get("tokens")
    values = raw.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list):
        return None
    tops = raw.get("top_logprobs") or [None] * len(tokens)
    out = []
    for token, value, top in zip(tokens, values, tops, strict=False):
        alternatives = sorted(top.items(), key=lambda kv: -kv[1]) if top else ()
        # An echoed first prompt token has no logprob; 0.0 keeps the token count right.
        out.append(
            TokenLogprob(token=token, logprob=0.0 if value is None else value, top=tuple(alternatives))
        )
    return out


class OpenAICompletions(OpenAIEndpoint):
    """An OpenAI-compatible `/completions` endpoint (raw text continuation).

    Takes requests with a `prompt` (not `messages`); `top_logprobs=k` asks for `logprobs: k`
    and `logprobs=True` alone for `logprobs: 0` (the chosen tokens only).

    Args:
        model: Model name sent to the server.
        base_url, api_key, http_client, price, provider, max_concurrency, retry, timeout,
            supports_n, stream, headers, max_tokens_field: See `OpenAIEndpoint`.
    """

    supports_n = True
    supports_prefill = False
    supports_raw = True
    _path: ClassVar[str] = "/completions"

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

    def _choice(self, choice: dict[str, Any]) -> tuple[str, list[TokenLogprob] | None]:
        text = choice["text"]
        if not isinstance(text, str):
            raise TypeError(f"choice text is {type(text).__name__}, not a string")
        return text, _completion_logprobs(choice.get("logprobs"))

    def _delta(self, choice: dict[str, Any]) -> tuple[str, str, list[TokenLogprob] | None]:
        text = choice.get("text") or ""
        if not isinstance(text, str):
            raise TypeError("a chunk's text is not a string")
        return text, "", _completion_logprobs(choice.get("logprobs"))
