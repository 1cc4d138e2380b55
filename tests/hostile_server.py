"""A small hostile HTTP server for the attack tests: raw asyncio streams on 127.0.0.1 (no framework), in a thread.

Each route is an `async def handler(request, writer)` that may misbehave at will: never end, trickle, send a 100 MB
line, a gzip bomb, a redirect, wrong JSON types. `/health` and `/v1/models` answer correctly unless a test
overrides them, so attacks on the completion stream pass the pre-flight check. Every handler stops once the
client has gone (a write to a closed connection ends it), so a test never leaves a server busy.

    with HostileServer({("POST", "/v1/completions"): long_line}) as server:
        outcome = send_one(server.url)
"""

from __future__ import annotations

import asyncio
import json
import threading
import zlib
from dataclasses import dataclass, field

MODEL = "hostile"


@dataclass
class Request:
    method: str
    path: str
    headers: dict = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> dict:
        return json.loads(self.body or b"{}")


def head(status: int = 200, content_type: str = "text/event-stream", **extra) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}", "Connection: close"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def send(writer, data: bytes) -> bool:
    """Write and drain; False once the client has gone."""
    if writer.is_closing():
        return False
    try:
        writer.write(data)
        await writer.drain()
    except (ConnectionError, RuntimeError):
        return False
    return True


def event(payload) -> bytes:
    return b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"


def text_chunk(text: str = "tok ") -> dict:
    return {"choices": [{"index": 0, "text": text}]}


async def stream_events(writer, events: list, *, done: bool = True) -> None:
    """An SSE reply of `events` (dicts or raw bytes after `data: `), then `[DONE]`."""
    body = b"".join(event(e) for e in events) + (b"data: [DONE]\n\n" if done else b"")
    await send(writer, head() + body)


def usage_reply(usage) -> callable:
    """A normal 3-chunk reply whose `usage` is `usage` (any JSON value, raw bytes for NaN)."""

    async def handler(request, writer):
        tail = b'{"choices": [], "usage": ' + (usage if isinstance(usage, bytes) else json.dumps(usage).encode()) + b"}"
        await stream_events(writer, [text_chunk(), text_chunk(), text_chunk(), tail])

    return handler


def chunks_reply(*events) -> callable:
    async def handler(request, writer):
        await stream_events(writer, list(events))

    return handler


async def long_line(request, writer, *, total_bytes: int = 100 << 20) -> None:
    """An SSE line of `total_bytes` (100 MB) that never ends with a newline."""
    if not await send(writer, head() + b"data: "):
        return
    block = b"x" * (1 << 20)
    for _ in range(total_bytes // len(block)):
        if not await send(writer, block):
            return


def gzip_stream(unit: bytes, *, block_bytes: int = 4 << 20, pause_s: float = 0.001) -> callable:
    """A gzip-encoded body repeating `unit` forever (zeros: a bomb with no newline; keep-alive lines: data that
    keeps arriving with no content), `block_bytes` (decompressed) every `pause_s`, flushed every block so the
    client decompresses as it goes."""

    async def handler(request, writer):
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        if not await send(writer, head(Content_Encoding="gzip")):
            return
        block = unit * max(1, block_bytes // len(unit))
        for _ in range(100_000):
            data = compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)
            if not await send(writer, data):
                return
            await asyncio.sleep(pause_s)

    return handler


async def trickle(request, writer, *, every_s: float = 0.2, content_type: str = "text/event-stream") -> None:
    """Headers, then one byte of a comment line every `every_s`, never a newline: no per-read timeout fires."""
    if not await send(writer, head(content_type=content_type) + b":"):
        return
    for _ in range(10_000):
        await asyncio.sleep(every_s)
        if not await send(writer, b"x"):
            return


async def endless_body(request, writer) -> None:
    """A 200 JSON reply with no length that never ends."""
    if not await send(writer, head(content_type="application/json") + b'{"data": ["'):
        return
    block = b"m" * (1 << 20)
    for _ in range(10_000):
        if not await send(writer, block):
            return


async def endless_stream(request, writer) -> None:
    """Well-formed content chunks, as fast as the client reads, forever."""
    if not await send(writer, head()):
        return
    block = event(text_chunk("x")) * 2000
    for _ in range(100_000):
        if not await send(writer, block):
            return


def redirect(location: str, status: int = 302) -> callable:
    async def handler(request, writer):
        await send(writer, head(status, "text/plain", Location=location, Content_Length=0))

    return handler


def status_reply(status: int, body: bytes = b'{"error": "no"}') -> callable:
    async def handler(request, writer):
        await send(writer, head(status, "application/json", Content_Length=len(body)) + body)

    return handler


def good_stream(tokens: int = 3) -> callable:
    async def handler(request, writer):
        usage = {"prompt_tokens": 3, "completion_tokens": tokens}
        await stream_events(writer, [*(text_chunk() for _ in range(tokens)), {"choices": [], "usage": usage}])

    return handler


async def health(request, writer) -> None:
    body = b'{"status": "ok"}'
    await send(writer, head(200, "application/json", Content_Length=len(body)) + body)


async def models(request, writer) -> None:
    body = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()
    await send(writer, head(200, "application/json", Content_Length=len(body)) + body)


class HostileServer:
    """The server in a daemon thread with its own loop: `url`, `requests` (every Request seen), a context manager.
    `routes` maps (method, path) to a handler; a list of handlers is used in turn, one per request."""

    def __init__(self, routes: dict | None = None):
        self.routes = {("GET", "/health"): health, ("GET", "/v1/models"): models, **(routes or {})}
        self.turns: dict = {}
        self.requests: list[Request] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(asyncio.start_server(self.handle, "127.0.0.1", 0))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    async def handle(self, reader, writer) -> None:
        try:
            line = await reader.readline()
            method, path = line.decode("latin-1").split(" ")[:2]
            headers = {}
            while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = header.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length") or 0))
            request = Request(method, path.split("?")[0], headers, body)
            self.requests.append(request)
            handler = self.routes.get((method, request.path))
            if isinstance(handler, list):
                turn = self.turns.get(request.path, 0)
                self.turns[request.path] = turn + 1
                handler = handler[turn % len(handler)]
            await (handler or status_reply(404, b"not found"))(request, writer)
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        async def close():
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class Finished:
    """A finished CLI process: exit code, output, wall time and peak resident memory (its own and its children's)."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_bytes: int


MEASURED = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(r.returncode)"
)


def run_cli(args: list[str], *, outputs, timeout_s: float = 120, env: dict | None = None) -> Finished:
    """`workbench ARGS` in a fresh process (this checkout on PYTHONPATH), timed, with its peak RSS measured by a
    parent that has no other child."""
    import os
    import subprocess
    import sys
    import time

    from workbench.paths import REPO_ROOT

    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "WORKBENCH_OUTPUTS": str(outputs), **(env or {})}
    started = time.perf_counter()
    command = [sys.executable, "-c", MEASURED, sys.executable, "-m", "workbench.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=environment)
    wall = time.perf_counter() - started
    lines = done.stderr.splitlines()
    peak = int(lines[-1].split()[-1]) * 1024 if lines and lines[-1].startswith("peak_rss_kb") else -1
    stderr = "\n".join(lines[:-1]) if peak >= 0 else done.stderr
    return Finished(done.returncode, done.stdout, stderr, wall, peak)


def written_files(root) -> list:
    """Every file under `root` (a run's outputs folder)."""
    from pathlib import Path

    return [p for p in Path(root).rglob("*") if p.is_file()]
