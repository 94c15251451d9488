"""What the OpenAI chat and completions endpoints share, on the HTTP layer.

`OpenAIEndpoint` adds to `HTTPEndpoint` only what OpenAI's protocol has: `n` in one request
(or not, per server), the name of the `max_tokens` field, and the wire format in
`_openai_wire`. The two concrete endpoints say how a request's input goes into the body.
"""

from __future__ import annotations

from typing import Any, ClassVar, Unpack

import httpx

from .._exceptions import ConfigError
from .._models import Request, Response
from . import _openai_wire as wire
from ._http import HTTPEndpoint, HTTPSettings, HTTPSettingsArgs
from ._sse import StreamDecoder

__all__ = ["OpenAIEndpoint"]

_MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")


class OpenAIEndpoint(HTTPEndpoint):
    """Base of the OpenAI-compatible endpoints (see `OpenAIChat`, `OpenAICompletions`).

    Args:
        model: Model name sent to the server (and used to look up its price).
        supports_n: False for servers that ignore `n`: `n` then fans out as parallel requests.
        max_tokens_field: Body field that carries `max_tokens` ("max_tokens" or
            "max_completion_tokens", which OpenAI's reasoning models require).
        settings: `HTTPSettings`; the keywords below override its fields.
        **kwargs: The HTTP settings: `base_url` (default env `OPENAI_BASE_URL`, else
            https://api.openai.com/v1), `api_key` (default env `OPENAI_API_KEY`; None on a
            local server sends no Authorization header), `http_client`, `price`, `provider`
            ("openai" by default for api.openai.com), `max_concurrency`, `retry`, `timeout`,
            `headers`, `stream`. See `HTTPSettings`.

    Raises:
        ConfigError: A bad base URL, timeout, concurrency or `max_tokens_field`.
    """

    _default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    _base_url_env: ClassVar[str] = "OPENAI_BASE_URL"
    _api_key_env: ClassVar[str] = "OPENAI_API_KEY"
    _choices: ClassVar[wire.Choices]

    def __init__(
        self,
        model: str,
        *,
        supports_n: bool = True,
        max_tokens_field: str = "max_tokens",
        settings: HTTPSettings | None = None,
        **kwargs: Unpack[HTTPSettingsArgs],
    ) -> None:
        if max_tokens_field not in _MAX_TOKENS_FIELDS:
            raise ConfigError(
                f"max_tokens_field must be one of {_MAX_TOKENS_FIELDS}, got {max_tokens_field!r}"
            )
        super().__init__(model, settings=settings, **kwargs)
        # Per instance: the same class talks to servers that do and do not support n > 1.
        self.supports_n = supports_n
        self.max_tokens_field = max_tokens_field

    def _price_provider(self, url: httpx.URL) -> str | None:
        return "openai" if url.host == "api.openai.com" else None

    # -- hooks for the concrete endpoints ------------------------------------------------
    def _input(self, request: Request, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def _logprob_params(self, request: Request, body: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- the wire format -----------------------------------------------------------------
    def build_body(self, request: Request, *, stream: bool = False) -> dict[str, Any]:
        """Build the JSON body sent for `request` (useful to inspect or log; holds no secrets)."""
        body: dict[str, Any] = {"model": self.model}
        self._input(request, body)
        body.update(wire.base_body(self.model, request, self.max_tokens_field, stream=stream))
        if request.logprobs or request.top_logprobs:
            self._logprob_params(request, body)
        if request.extra:
            body.update(request.extra)
        return body

    def _parse(self, request: Request, data: Any) -> Response:
        return wire.parse_response(request, data, self._choices.choice)

    def _decoder(self, request: Request) -> StreamDecoder:
        return wire.OpenAIStreamDecoder(request, self._choices.delta)

    def _check_stream(self, request: Request) -> None:
        if request.n > 1 and not self.supports_n:
            raise ConfigError(
                f"{self.name} was made with supports_n=False: stream n=1 requests concurrently "
                "instead of one with n > 1"
            )
