from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import httpx
import pytest
from httpx_sse import aconnect_sse

from adaptive.sim._httpserver import (
    HTTPRequest,
    HTTPResponse,
    HTTPServer,
    SSEResponse,
    run_in_thread,
    serve,
)


async def echo(req: HTTPRequest) -> HTTPResponse:
    return HTTPResponse.json(
        {
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "body": req.body.decode(),
            "x-test": req.headers.get("x-test"),
        },
        headers={"X-Served-By": "test"},
    )


async def post_json(req: HTTPRequest) -> HTTPResponse:
    data = req.json()
    return HTTPResponse.json({"sum": sum(data["numbers"])}, status=201)


async def boom(req: HTTPRequest) -> HTTPResponse:
    raise RuntimeError("handler exploded")


async def events(req: HTTPRequest) -> SSEResponse:
    count = int(req.query.split("=")[1]) if req.query else 3

    async def gen() -> AsyncIterator[str]:
        for i in range(count):
            yield json.dumps({"i": i})
        yield "two\nlines"

    return SSEResponse(gen())


async def broken_events(req: HTTPRequest) -> SSEResponse:
    async def gen() -> AsyncIterator[str]:
        yield "first"
        raise RuntimeError("source died")

    return SSEResponse(gen())


def make_app() -> HTTPServer:
    return HTTPServer(
        {
            ("GET", "/echo"): echo,
            ("POST", "/echo"): echo,
            ("post", "/sum"): post_json,
            ("GET", "/boom"): boom,
            ("GET", "/events"): events,
            ("GET", "/broken"): broken_events,
        }
    )


class CountingServer(HTTPServer):
    def __init__(self) -> None:
        super().__init__(make_app().routes)
        self.connections = 0

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        self.connections += 1
        await super().handle(stream)


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    out = bytearray()
    async with await anyio.connect_tcp("127.0.0.1", port) as sock:
        await sock.send(data)
        with anyio.fail_after(5):
            while True:
                try:
                    out += await sock.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    return bytes(out)


@pytest.mark.asyncio
async def test_routes_query_headers_and_body() -> None:
    async with serve(make_app()) as server, httpx.AsyncClient(base_url=server.url) as client:
        r = await client.get("/echo?a=1&b=2", headers={"X-Test": "yes"})
        assert r.status_code == 200
        assert r.headers["x-served-by"] == "test"
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"method": "GET", "path": "/echo", "query": "a=1&b=2", "body": "", "x-test": "yes"}
        r = await client.post("/echo", content=b"hello body")
        assert r.json()["body"] == "hello body"
        assert r.json()["method"] == "POST"
        r = await client.post("/sum", json={"numbers": [1, 2, 39]})
        assert (r.status_code, r.json()) == (201, {"sum": 42})


@pytest.mark.asyncio
async def test_unknown_route_wrong_method_and_failing_handler() -> None:
    async with serve(make_app()) as server, httpx.AsyncClient(base_url=server.url) as client:
        r = await client.get("/nope")
        assert r.status_code == 404
        assert "no route" in r.json()["error"]["message"]
        r = await client.delete("/echo")
        assert r.status_code == 405
        r = await client.get("/boom")
        assert r.status_code == 500
        assert "handler exploded" in r.json()["error"]["message"]
        # A bad JSON body makes the handler raise: 500, and the server keeps serving.
        r = await client.post("/sum", content=b"{not json")
        assert r.status_code == 500
        assert (await client.get("/echo")).status_code == 200


@pytest.mark.asyncio
async def test_keep_alive_reuses_one_connection() -> None:
    app = CountingServer()
    async with serve(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        for i in range(5):
            r = await client.post("/echo", content=f"n{i}".encode())
            assert r.json()["body"] == f"n{i}"
    assert app.connections == 1


@pytest.mark.asyncio
async def test_concurrent_clients() -> None:
    results: list[int] = []
    async with serve(make_app()) as server, httpx.AsyncClient(base_url=server.url) as client:

        async def one(i: int) -> None:
            r = await client.post("/sum", json={"numbers": [i, i]})
            results.append(r.json()["sum"])

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(one, i)
    assert sorted(results) == [2 * i for i in range(40)]


@pytest.mark.asyncio
async def test_pipelined_requests_and_connection_close() -> None:
    async with serve(make_app()) as server:
        data = (
            b"GET /echo?first HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        )
        out = await raw_exchange(server.port, data)
    assert out.count(b"HTTP/1.1 200 OK") == 2
    assert b'"query":"first"' in out
    assert b'"body":"abc"' in out
    assert b"Connection: close" in out


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /echo SPDY/3\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501),
    ],
)
async def test_bad_requests_get_an_error_and_a_closed_connection(data: bytes, status: int) -> None:
    async with serve(make_app()) as server:
        out = await raw_exchange(server.port, data)
    assert out.startswith(f"HTTP/1.1 {status} ".encode())
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    assert "message" in json.loads(body)["error"]


@pytest.mark.asyncio
async def test_http10_closes_after_one_request() -> None:
    async with serve(make_app()) as server:
        out = await raw_exchange(server.port, b"GET /echo HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in out


@pytest.mark.asyncio
async def test_client_disconnecting_mid_request_does_not_break_the_server() -> None:
    async with serve(make_app()) as server:
        async with await anyio.connect_tcp("127.0.0.1", server.port) as sock:
            await sock.send(b"POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly part")
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/echo")).status_code == 200


@pytest.mark.asyncio
async def test_sse_events_and_keep_alive_after_stream() -> None:
    app = CountingServer()
    async with serve(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        for _ in range(2):
            async with aconnect_sse(client, "GET", "/events?n=4") as source:
                assert source.response.headers["content-type"] == "text/event-stream"
                got = [sse.data async for sse in source.aiter_sse()]
            assert got == [json.dumps({"i": i}) for i in range(4)] + ["two\nlines"]
    assert app.connections == 1


@pytest.mark.asyncio
async def test_sse_source_failure_cuts_the_stream() -> None:
    async with serve(make_app()) as server, httpx.AsyncClient(base_url=server.url) as client:
        got: list[str] = []
        with pytest.raises(httpx.RemoteProtocolError):
            async with aconnect_sse(client, "GET", "/broken") as source:
                async for sse in source.aiter_sse():
                    got.append(sse.data)
        assert got == ["first"]
        # The server still serves new connections.
        assert (await client.get("/echo")).status_code == 200


@pytest.mark.asyncio
async def test_serve_stops_listening_on_exit() -> None:
    async with serve(make_app()) as server:
        port = server.port
        assert server.url == f"http://127.0.0.1:{port}"
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)


@pytest.mark.asyncio
async def test_exception_in_block_propagates_unwrapped() -> None:
    with pytest.raises(KeyError):
        async with serve(make_app()):
            raise KeyError("mine")


def test_run_in_thread_serves_sync_clients() -> None:
    with run_in_thread(make_app()) as server:
        with httpx.Client(base_url=server.url) as client:
            r = client.post("/sum", json={"numbers": [2, 3]})
            assert r.json() == {"sum": 5}
            assert client.get("/missing").status_code == 404
        port = server.port
    with pytest.raises(httpx.ConnectError), httpx.Client() as client:
        client.get(f"http://127.0.0.1:{port}/echo")
