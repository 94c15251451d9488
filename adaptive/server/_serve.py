"""Serving the proxy with uvicorn: blocking (`adaptive serve`) or in a background thread.

uvicorn's own features carry the lifecycle: `timeout_graceful_shutdown` drains in-flight
calls on SIGTERM for `limits.grace_seconds`, then cancels them (each cancelled call is still
charged to its tenant, and logged); `limit_concurrency` caps connections (503 beyond it, a
backstop: calls beyond `limits.max_concurrency` are refused before it, with an OpenAI-style
429); `timeout_keep_alive` closes idle connections.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Literal

import uvicorn

from ._app import create_app
from ._config import ServerConfig
from ._tenants import TenantAccounts

__all__ = ["RunningProxy", "run_proxy", "start_proxy"]


@dataclasses.dataclass(frozen=True, slots=True)
class RunningProxy:
    """A proxy that is listening.

    Attributes:
        url: Its root (`http://127.0.0.1:PORT`); the OpenAI base URL is `url + "/v1"`.
        accounts: The tenants' accounts it books on.
    """

    url: str
    accounts: TenantAccounts


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


HTTPParser = Literal["auto", "h11", "httptools"]


def _server(
    config: ServerConfig, accounts: TenantAccounts | None, http: HTTPParser = "auto"
) -> tuple[uvicorn.Server, TenantAccounts]:
    app = create_app(config, accounts=accounts)
    limits = config.limits
    ucfg = uvicorn.Config(
        app,
        timeout_graceful_shutdown=max(round(limits.grace_seconds), 0),
        limit_concurrency=limits.max_concurrency * 2 + 16,
        timeout_keep_alive=max(int(limits.keep_alive_seconds), 1),
        log_config=None,  # our `adaptive.server` logger; uvicorn's own go to the root handlers
        access_log=False,
        lifespan="on",
        # "auto": httptools when installed (a C parser; benchmarks/proxy.py measures it), else h11.
        http=http,
    )
    return uvicorn.Server(ucfg), app.state.proxy.accounts


def run_proxy(
    config: ServerConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    accounts: TenantAccounts | None = None,
    on_ready: Callable[[RunningProxy], None] | None = None,
    http: HTTPParser = "auto",
) -> None:
    """Serve until SIGINT / SIGTERM (what `adaptive serve` runs).

    Args:
        config: The server's configuration.
        host: Interface to listen on.
        port: Port (0: any free one).
        accounts: Where tenants' totals live (default: from `config.ledger`).
        on_ready: Called once listening, with the URL.
        http: uvicorn's HTTP/1.1 parser: "auto" (httptools when installed, else h11).

    Raises:
        OSError: The address cannot be bound.
    """
    server, acct = _server(config, accounts, http)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    if on_ready is not None:
        on_ready(RunningProxy(f"http://{shown}:{bound}", acct))
    server.run(sockets=[sock])


@contextlib.contextmanager
def start_proxy(
    config: ServerConfig, host: str = "127.0.0.1", port: int = 0, *, accounts: TenantAccounts | None = None
) -> Iterator[RunningProxy]:
    """Serve the proxy from a background thread while the block runs (port 0: any free port).

    Example:
        >>> with start_proxy(ServerConfig(upstream={"url": url})) as proxy:  # doctest: +SKIP
        ...     client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused")
    """
    server, acct = _server(config, accounts)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced in the caller's thread below
            errors.append(exc)

    thread = threading.Thread(target=serve, name="adaptive-proxy", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the proxy did not start: {errors[0] if errors else 'unknown'}")
            thread.join(0.01)
        yield RunningProxy(f"http://{host}:{bound}", acct)
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
