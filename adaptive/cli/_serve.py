"""`adaptive serve`: the OpenAI-compatible proxy in front of an upstream API.

The config file (TOML, see the README's "Proxy server" section) is read first; the command's
flags override its values.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from typing import Any

from .._exceptions import ConfigError
from ._args import non_negative_float, port, positive_float, positive_int
from ._extras import require_server_extra

__all__ = ["add_serve_parser", "serve_command"]


def add_serve_parser(sub: Any) -> None:
    """Add the `serve` command to the subparsers `sub`."""
    p = sub.add_parser(
        "serve",
        help="serve an OpenAI-compatible proxy that runs a strategy under a budget per request",
        description=(
            "An OpenAI-compatible server (POST /v1/chat/completions, GET /v1/models, GET /health) in "
            "front of an upstream API: each request runs a strategy under a budget, chosen by the model "
            "name ('adaptive/<model>' or a configured alias) or the 'adaptive' body field, and its "
            "answer carries the receipt. Needs the server extra: pip install 'adaptive-ttc[server]'."
        ),
    )
    p.add_argument("--upstream", metavar="URL", help="the upstream base URL, e.g. http://127.0.0.1:8001/v1")
    p.add_argument("--upstream-kind", choices=("openai", "anthropic"), default=None)
    p.add_argument("--config", metavar="FILE", help="a TOML config file (aliases, prices, tenants, limits)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    p.add_argument("--port", type=port, default=8000, help="port, 0 for any free one (default: %(default)s)")
    p.add_argument("--api-key-env", metavar="NAME", help="environment variable with the upstream key")
    p.add_argument("--grace-seconds", type=non_negative_float, metavar="S", help="SIGTERM drain time")
    p.add_argument("--max-concurrency", type=positive_int, metavar="N", help="calls in flight at once")
    p.add_argument("--timeout-seconds", type=positive_float, metavar="S", help="wall-clock limit per call")
    p.add_argument("--max-body-bytes", type=positive_int, metavar="N", help="largest request body")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument(
        "--redis",
        metavar="URL",
        help="keep tenants' totals in this Redis (redis://HOST:PORT/DB), shared by every proxy using it",
    )
    p.add_argument(
        "--http",
        choices=("auto", "h11", "httptools"),
        default="auto",
        help="uvicorn's HTTP parser: auto uses httptools when installed, else h11 (default: %(default)s)",
    )
    p.add_argument(
        "--otel",
        choices=("console", "otlp"),
        default=None,
        help="export OpenTelemetry spans: console (stderr; needs opentelemetry-sdk) or otlp "
        "(needs opentelemetry-exporter-otlp; OTEL_EXPORTER_OTLP_* configure it)",
    )


def _level(name: str) -> int:
    return logging.getLevelNamesMapping()[name]


def _check_redis(url: str, prefix: str) -> None:
    """Fail before serving when the tenants' Redis cannot be reached (the ledger fails closed)."""
    import anyio

    from ..ledger import LedgerUnavailableError, RedisBackend

    async def ping() -> None:
        async with RedisBackend(url, prefix=prefix, timeout=5.0) as backend:
            await backend.ping()

    try:
        anyio.run(ping)
    except LedgerUnavailableError as exc:
        raise ConfigError(f"{exc}: start that Redis, or serve without --redis / [ledger] redis_url") from None


def serve_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run `adaptive serve` until SIGINT / SIGTERM."""
    require_server_extra("serve")  # a ConfigError naming the install command: exit 2
    from ..server import ServerConfig, run_proxy

    upstream: dict[str, Any] = {}
    if args.upstream:
        upstream["url"] = args.upstream
    if args.upstream_kind:
        upstream["kind"] = args.upstream_kind
    if args.api_key_env:
        upstream["api_key_env"] = args.api_key_env
    limits = {
        name: getattr(args, name)
        for name in ("grace_seconds", "max_concurrency", "timeout_seconds", "max_body_bytes")
        if getattr(args, name) is not None
    }
    overrides: dict[str, dict[str, Any]] = {"upstream": upstream, "limits": limits}
    if args.redis:
        overrides["ledger"] = {"redis_url": args.redis}
    if args.config:
        config = ServerConfig.load(args.config, **overrides)
    elif not args.upstream:
        raise ConfigError("adaptive serve needs --upstream URL (or a --config file with an [upstream] table)")
    else:
        config = ServerConfig.of({}, **overrides)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("adaptive")
    log.addHandler(handler)
    # One INFO line per request is the server's (adaptive.server); the SDK's own per-call INFO
    # summary would repeat it, so the SDK logs warnings only unless DEBUG (every event) is asked.
    log.setLevel(
        args.log_level if args.log_level == "DEBUG" else max(logging.WARNING, _level(args.log_level))
    )
    logging.getLogger("adaptive.server").setLevel(args.log_level)

    def ready(proxy: Any) -> None:
        print(f"{proxy.url}/v1", flush=True)
        print(
            f"adaptive proxy on {proxy.url} -> {config.upstream.url} ({config.upstream.kind}); "
            f"{len(config.tenants) or 'no'} tenant(s), totals in "
            f"{'Redis' if config.ledger.redis_url else 'memory'}; Ctrl-C or SIGTERM stops it.",
            file=sys.stderr,
            flush=True,
        )

    if config.ledger.redis_url is not None:
        _check_redis(config.ledger.redis_url, config.ledger.prefix)
    if args.http == "httptools" and importlib.util.find_spec("httptools") is None:
        raise ConfigError("--http httptools needs httptools: pip install httptools (or use --http h11)")
    provider = None
    if args.otel:
        from ..server._tracing import configure_tracing

        provider = configure_tracing(args.otel)
    try:
        run_proxy(config, args.host, args.port, on_ready=ready, http=args.http)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc} (pick a free --port)"
        ) from None
    finally:
        if provider is not None:
            provider.shutdown()  # flush the spans still batched
    return 0
