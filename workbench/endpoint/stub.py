"""A minimal streaming OpenAI-compatible stub server, for the endpoint client's tests and its capacity benchmark.

It is not a model: it streams canned tokens (`"tok "`) on 127.0.0.1 over a hand-written HTTP/1.1 keep-alive
loop (asyncio protocol, no framework), fast enough that the client, not the stub, limits a load test. Numbers
measured against it describe the client only; they never stand for a model's speed.

Modes: `ok` (stream `max_tokens` tokens), `http500`, `stall` (headers and one chunk, then silence), `malformed`
(a JSON reply, not SSE), `garbage` (an SSE line that is not JSON). `token_delay_s` paces tokens, `prefill_s`
delays the first, `capacity` lets only that many requests be served at once (the rest queue: a known capacity
for the saturation search), `eos_after` ends a reply early unless the request's `logit_bias` suppresses
token id 0 (the stub's end-of-sequence token). A request naming another model gets a 404, as vLLM answers.

    python -m workbench.endpoint.stub --port 0 --mode ok     # prints "listening http://127.0.0.1:<port>"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from types import TracebackType
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field

EOS_ID = 0
MODES = ("ok", "http500", "stall", "malformed", "garbage")


class StubConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = "stub"
    mode: str = Field("ok", pattern="|".join(MODES))
    token_delay_s: float = Field(0.0, ge=0)
    prefill_s: float = Field(0.0, ge=0)
    capacity: int | None = Field(None, ge=1)
    eos_after: int | None = Field(None, ge=1)
    tokens_per_chunk: int = Field(1, ge=1)


def _response(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "Error")
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _chunk_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\r\n\r\n"


def _http_chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class StubProtocol(asyncio.Protocol):
    def __init__(self, server: StubServer) -> None:
        self.server, self.buffer = server, b""
        self.transport: asyncio.Transport  # set by connection_made, before any data arrives

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP server's connections are stream transports

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < head_end + 4 + length:
                return
            body = self.buffer[head_end + 4 : head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length :]
            method, path = head[0].split(" ")[:2]
            self.server.handle(self.transport, method, path, body)


class StubServer:
    """The stub's state: its config and the requests it has handled."""

    def __init__(self, config: StubConfig) -> None:
        self.config = config
        self.handled = 0
        self.prompts: list[Any] = []  # the prompt (or messages) of every completion request, in arrival order
        self.in_flight = self.peak_in_flight = 0
        self.slots = asyncio.Semaphore(config.capacity) if config.capacity else None

    def handle(self, transport: asyncio.Transport, method: str, path: str, body: bytes) -> None:
        start = time.perf_counter()
        if method == "GET" and path == "/health":
            transport.write(_response(200, b'{"status": "ok"}'))
        elif method == "GET" and path.startswith("/v1/models"):
            listing = {"object": "list", "data": [{"id": self.config.model, "object": "model"}]}
            transport.write(_response(200, json.dumps(listing).encode()))
        elif method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
            request = json.loads(body)
            self.prompts.append(request.get("prompt") or request.get("messages"))
            if request.get("model") != self.config.model:
                message = {"error": {"message": f"The model `{request.get('model')}` does not exist."}}
                transport.write(_response(404, json.dumps(message).encode()))
            elif self.config.mode == "http500":
                transport.write(_response(500, b'{"error": "stub: internal error"}'))
            elif self.config.mode == "malformed":
                transport.write(_response(200, b'{"choices": [{"text": "not a stream"}]}'))
            elif self.config.token_delay_s or self.config.prefill_s or self.slots or self.config.mode != "ok":
                asyncio.ensure_future(self.stream_paced(transport, request, path))
            else:
                transport.write(self.stream_at_once(request, path, start))
        else:
            transport.write(_response(404, b"Not Found", "text/plain"))
        self.handled += 1

    def reply_tokens(self, request: dict[str, Any]) -> int:
        tokens = int(request.get("max_tokens") or 16)
        suppressed = str(EOS_ID) in (request.get("logit_bias") or {})
        if self.config.eos_after and not suppressed:
            tokens = min(tokens, self.config.eos_after)
        return tokens

    def events(self, request: dict[str, Any], path: str, tokens: int) -> list[dict[str, Any]]:
        chat = path.endswith("chat/completions")
        per = self.config.tokens_per_chunk
        text = "tok " * per
        choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
        return [{"choices": [choice]} for _ in range(-(-tokens // per))]

    def tail(self, request: dict[str, Any], path: str, tokens: int, start: float) -> bytes:
        prompt = request.get("prompt") or request.get("messages") or ""
        usage = {
            "prompt_tokens": len(str(prompt).split()),
            "completion_tokens": tokens,
            "stub_handling_s": time.perf_counter() - start,
        }
        finish = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}]}
        return _chunk_event(finish) + _chunk_event({"choices": [], "usage": usage}) + b"data: [DONE]\r\n\r\n"

    def stream_at_once(self, request: dict[str, Any], path: str, start: float) -> bytes:
        tokens = self.reply_tokens(request)
        body = b"".join(_chunk_event(e) for e in self.events(request, path, tokens))
        body += self.tail(request, path, tokens, start)
        return _response(200, body, "text/event-stream")

    async def stream_paced(self, transport: asyncio.Transport, request: dict[str, Any], path: str) -> None:
        start = time.perf_counter()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if self.slots:
            await self.slots.acquire()
        try:
            head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            transport.write(head.encode())
            await asyncio.sleep(self.config.prefill_s)
            tokens = self.reply_tokens(request)
            for i, event in enumerate(self.events(request, path, tokens)):
                if transport.is_closing():
                    return
                if self.config.mode == "garbage":
                    transport.write(_http_chunk(b"data: {not json\r\n\r\n"))
                    break
                transport.write(_http_chunk(_chunk_event(event)))
                if self.config.mode == "stall" and i == 0:
                    await asyncio.sleep(3600)
                if self.config.token_delay_s:
                    await asyncio.sleep(self.config.token_delay_s)
            transport.write(_http_chunk(self.tail(request, path, tokens, start)) + b"0\r\n\r\n")
        except asyncio.CancelledError:
            pass
        finally:
            self.in_flight -= 1
            if self.slots:
                self.slots.release()


async def serve(config: StubConfig, port: int = 0) -> asyncio.Server:
    """Start the stub on 127.0.0.1 in the running loop; returns the asyncio server."""
    stub = StubServer(config)
    server = await asyncio.get_running_loop().create_server(lambda: StubProtocol(stub), "127.0.0.1", port)
    server.stub = stub  # type: ignore[attr-defined]  # tests read the requests it saw off the server
    return server


class StubThread:
    """The stub in a daemon thread with its own event loop (tests): `url`, `stop()`, a context manager."""

    def __init__(self, config: StubConfig | None = None, **fields: Any) -> None:
        self.config = config or StubConfig(**fields)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(serve(self.config))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def __enter__(self) -> StubThread:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.endpoint.stub", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    for name, info in StubConfig.model_fields.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(info.default) if info.default else float)
    args = parser.parse_args(argv)
    fields = {k: v for k, v in vars(args).items() if k != "port" and v is not None}
    config = StubConfig(**fields)

    async def run() -> None:
        server = await serve(config, args.port)
        print(f"listening http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
