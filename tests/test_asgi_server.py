"""The ASGI runner every adaptive HTTP server uses (adaptive.sim.serve_app / run_app_in_thread).

Slow or idle connections, oversized and slow bodies, the connection limit, clean start and stop.
The timeouts are set short so the server acts within the test; the tests wait on what the
server does (a closed socket, a status), bounded generously, never on how long it took.
"""

from __future__ import annotations

import socket
import threading
import time

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adaptive import ConfigError
from adaptive.sim import RunningServer, ServerLimits, run_app_in_thread, serve_app

WAIT = 20.0  # a bound on how long the server may take to act, not a timing claim


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"path": request.url.path, "bytes": len(body)})


APP = Starlette(routes=[Route("/echo", echo, methods=["GET", "POST"])])
SHORT = ServerLimits(head_timeout=0.5, body_timeout=0.5, keep_alive=1)


async def closed_by_server(stream: anyio.abc.SocketStream) -> bytes:
    """Read until the server closes the connection; what it sent before closing."""
    data = b""
    with anyio.fail_after(WAIT):
        while True:
            try:
                data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return data


@pytest.mark.asyncio
async def test_idle_and_half_open_connections_do_not_block_a_request_and_are_closed() -> None:
    async with serve_app(APP, limits=SHORT) as server:
        idle = [await anyio.connect_tcp(server.host, server.port) for _ in range(20)]
        half = [await anyio.connect_tcp(server.host, server.port) for _ in range(20)]
        for stream in half:  # slowloris: a request head that never ends
            await stream.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n")
        async with httpx.AsyncClient() as http:
            response = await http.post(server.url + "/echo", content=b"hello")
        assert response.status_code == 200 and response.json() == {"path": "/echo", "bytes": 5}
        # The head deadline closes every one of them without an answer.
        for stream in idle + half:
            assert await closed_by_server(stream) == b""
            await stream.aclose()


@pytest.mark.asyncio
async def test_a_trickling_head_is_closed_even_though_bytes_keep_coming() -> None:
    async with serve_app(APP, limits=SHORT) as server:
        stream = await anyio.connect_tcp(server.host, server.port)
        closed = False
        with anyio.fail_after(WAIT):
            for _ in range(10_000):
                try:
                    await stream.send(b"X-Slow: 1\r\n")
                    await anyio.sleep(0.05)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    closed = True
                    break
                with anyio.move_on_after(0):
                    try:
                        await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        closed = True
                        break
        await stream.aclose()
        assert closed


@pytest.mark.asyncio
async def test_a_body_that_does_not_arrive_gets_408() -> None:
    async with serve_app(APP, limits=SHORT) as server:
        stream = await anyio.connect_tcp(server.host, server.port)
        await stream.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        answer = await closed_by_server(stream)
        await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"did not arrive" in answer


@pytest.mark.asyncio
async def test_an_oversized_body_gets_413_declared_or_streamed() -> None:
    limits = ServerLimits(max_body_bytes=1000)
    async with serve_app(APP, limits=limits) as server, httpx.AsyncClient() as http:
        ok = await http.post(server.url + "/echo", content=b"x" * 1000)
        assert ok.status_code == 200 and ok.json()["bytes"] == 1000
        declared = await http.post(server.url + "/echo", content=b"x" * 1001)
        assert declared.status_code == 413
        assert "over 1000 bytes" in declared.json()["error"]["message"]

        async def chunks() -> anyio.abc.AsyncIterator[bytes]:  # chunked: no Content-Length
            for _ in range(5):
                yield b"y" * 300

        streamed = await http.post(server.url + "/echo", content=chunks())
        assert streamed.status_code == 413
        # The server still answers afterwards.
        assert (await http.get(server.url + "/echo")).status_code == 200


@pytest.mark.asyncio
async def test_connections_over_the_limit_get_503_not_a_crash() -> None:
    limits = ServerLimits(max_connections=3)
    async with serve_app(APP, limits=limits) as server:
        held = [await anyio.connect_tcp(server.host, server.port) for _ in range(3)]
        # Let the server register the held connections before the next one arrives.
        async with httpx.AsyncClient() as http:
            with anyio.fail_after(WAIT):
                while True:
                    response = await http.get(server.url + "/echo", headers={"connection": "close"})
                    if response.status_code == 503:
                        break
                    await anyio.sleep(0.01)
        for stream in held:
            await stream.aclose()
        async with httpx.AsyncClient() as http:
            with anyio.fail_after(WAIT):
                while True:
                    if (await http.get(server.url + "/echo")).status_code == 200:
                        break
                    await anyio.sleep(0.01)


@pytest.mark.asyncio
async def test_port_zero_reports_the_bound_port_and_stop_closes_it() -> None:
    async with serve_app(APP) as server:
        assert isinstance(server, RunningServer) and server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient() as http:
            assert (await http.get(server.url + "/echo")).status_code == 200
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", server.port)


@pytest.mark.asyncio
async def test_a_busy_port_raises_oserror() -> None:
    async with serve_app(APP) as server:
        with pytest.raises(OSError):
            async with serve_app(APP, port=server.port):
                pass


@pytest.mark.asyncio
async def test_an_error_in_the_block_propagates_unwrapped() -> None:
    with pytest.raises(KeyError, match="boom"):
        async with serve_app(APP):
            raise KeyError("boom")


def test_run_in_thread_leaves_no_thread_or_socket_behind() -> None:
    before = set(threading.enumerate())
    with run_app_in_thread(APP) as server:
        assert httpx.get(server.url + "/echo").json() == {"path": "/echo", "bytes": 0}
        # A client that keeps its connection open does not hold the stop up.
        keep = httpx.Client()
        assert keep.post(server.url + "/echo", content=b"abc").json()["bytes"] == 3
        # The kept-alive one is listed (the first client's closes once the server reads its FIN).
        deadline = time.monotonic() + WAIT
        while len(server.connections()) != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(server.connections()) == 1
    assert set(threading.enumerate()) == before
    assert server.connections() == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=WAIT):
        pass
    keep.close()


@pytest.mark.parametrize(
    "bad",
    [
        {"head_timeout": 0},
        {"body_timeout": -1.0},
        {"keep_alive": float("inf")},
        {"graceful_shutdown": True},
        {"max_body_bytes": 0},
        {"max_connections": 2.5},
    ],
)
def test_bad_limits_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        ServerLimits(**bad)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_cancelled_block_still_shuts_the_server_down_cleanly() -> None:
    with anyio.move_on_after(0.2) as scope:
        async with serve_app(APP) as first:
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    # Nothing of the first server is left registered with the event loop: the next one, whose
    # listening socket takes the first one's (now free) descriptor, serves.
    async with serve_app(APP) as second, httpx.AsyncClient(timeout=WAIT) as http:
        assert (await http.get(second.url + "/echo")).status_code == 200
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", first.port)


@pytest.mark.asyncio
async def test_an_idle_kept_alive_connection_outlives_the_head_deadline() -> None:
    # Idle after a response, a connection is governed by keep_alive, not by head_timeout.
    seen: list[tuple[str, int]] = []

    async def who(request: Request) -> JSONResponse:
        assert request.client is not None
        seen.append((request.client.host, request.client.port))
        return JSONResponse({})

    app = Starlette(routes=[Route("/who", who)])
    limits = ServerLimits(head_timeout=0.2, keep_alive=60)
    async with serve_app(app, limits=limits) as server, httpx.AsyncClient() as http:
        assert (await http.get(server.url + "/who")).status_code == 200
        await anyio.sleep(1.0)  # five head deadlines
        assert (await http.get(server.url + "/who")).status_code == 200
    assert len(seen) == 2 and seen[0] == seen[1]  # the same connection served both
