"""An async streaming client for OpenAI-compatible servers: a request in, a `RequestOutcome` out, never an exception.

What is timed (`time.perf_counter`): the send (just before the request is written), then every *content* chunk
of the SSE stream, read when its line arrives and before it is parsed. A content chunk carries generated text,
reasoning text (`reasoning_content` / `reasoning`) or tool calls; role-only deltas, the finish chunk with empty
text, keep-alive comments and the `usage` chunk are not content. Token counts come from the server's `usage`
(`stream_options.include_usage`); a server that sends none falls back to counting content chunks (`usage=False`
on the outcome). Metrics are `workbench.measure.timed.request_metrics` over the content-chunk times, with the token
count from `usage`: ITL is the gaps between chunks (AIPerf's inter_chunk_latency), TPOT divides the span by the
tokens (docs/metrics.md, "Endpoints").

Every failure is an outcome with `ok=False` and a short `error`: "connection refused", "http 500: <body>",
"stalled: no chunk for 5 s", "timed out: no complete reply in 60 s" (the whole request, however fast data
keeps arriving), "malformed: ..." (a line over 1 MiB, a field of the wrong type: `endpoint.replies`),
"redirected: http 302 to <Location>" (unless `follow_redirects`; then the row keeps the `final_url`),
"disconnected: ...". Implausible `usage` counts are ignored with a `note` on the row. Errors are redacted: no
password in a URL reaches a row. `check_target` (`endpoint.preflight`) runs before a measurement and raises
one-line `ConfigError` / `ModelError` instead.

    async with EndpointClient(Target(url="http://127.0.0.1:8080", model="m")) as client:
        outcome = await client.send("Hello", max_tokens=32)
"""

from __future__ import annotations

import asyncio
import errno
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from workbench.endpoint import replies
from workbench.endpoint.preflight import auth_headers, base_url, check_target, get_json, probe_model, run_async
from workbench.endpoint.replies import MalformedReply, SSELines
from workbench.measure.timed import request_metrics
from workbench.redact import redact_text

if TYPE_CHECKING:
    import aiohttp

__all__ = ["EndpointClient", "RequestOutcome", "Target", "base_url", "check_target", "get_json", "probe_model"]
__all__ += ["run_async"]

Prompt = str | Sequence[int] | Sequence[dict[str, Any]]  # text, token ids or chat messages
EOS_BIAS = -100.0  # the most negative bias OpenAI-style servers accept; exp(-100) never wins a sample


class Target(BaseModel):
    """Where and how requests go. `eos_token_ids` are suppressed with `logit_bias` (fixed-length generation)."""

    model_config = ConfigDict(extra="forbid")

    url: str
    model: str
    chat: bool = False
    timeout_s: float = Field(60.0, gt=0)
    stall_s: float | None = Field(None, gt=0, description="longest silence between chunks; default timeout_s")
    eos_token_ids: list[int] = Field(default_factory=list)
    ignore_eos: bool = True
    temperature: float | None = Field(0.0, ge=0)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    follow_redirects: bool = False
    api_key_env: str | None = Field(None, description="environment variable holding a bearer token")
    context_tokens: int | None = Field(None, gt=0, description="bound on a plausible usage.prompt_tokens")

    @property
    def access(self) -> dict[str, Any]:
        """How requests reach the target, as `check_target` takes it."""
        return {"api_key_env": self.api_key_env, "follow_redirects": self.follow_redirects}

    @property
    def base_url(self) -> str:
        return base_url(self.url)

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.chat else "/v1/completions"

    def uses_chat(self, prompt: Prompt) -> bool:
        """Chat messages always go to /v1/chat/completions; text and token ids only when `chat` is set."""
        return self.chat or is_messages(prompt)


def is_messages(prompt: object) -> bool:
    return isinstance(prompt, (list, tuple)) and bool(prompt) and isinstance(prompt[0], dict)


@dataclass
class RequestOutcome:
    """One request: when it was sent, when each content chunk arrived, what the server counted, or why it failed."""

    index: int
    t0: float = math.nan
    chunk_times: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    generated_tokens: int | None = None
    cached_tokens: int | None = None
    usage: bool = False  # the server reported completion_tokens
    usage_raw: dict[str, Any] = field(default_factory=dict)
    ok: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # what was ignored in the reply (implausible usage counts)
    final_url: str | None = None  # where a followed redirect ended
    text: str = ""
    finish_reason: str | None = None
    scheduled_s: float | None = None  # offset from the level's start at which it was due (open loop)
    sent_s: float | None = None  # offset from the level's start at which it was sent
    end: float = math.nan  # clock when the request finished or failed

    def metrics(self) -> dict[str, Any]:
        """`request_metrics` over the content chunks, with the server's token counts; {} for a failed request."""
        if not self.ok:
            return {}
        tokens = self.generated_tokens if self.usage and self.generated_tokens else len(self.chunk_times)
        metrics = request_metrics(self.t0, self.chunk_times, self.prompt_tokens or 0, generated_tokens=tokens)
        if self.prompt_tokens is None:
            metrics.update(prompt_tokens=None, prefill_tps=math.nan)
        return metrics

    def to_row(self) -> dict[str, Any]:
        """Measures in the shared schema (`results.SCHEMA`); failed requests keep their reason and timing offsets."""
        row: dict[str, Any] = {
            "request_index": self.index,
            "ok": self.ok,
            "error": self.error,
            "chunks": len(self.chunk_times),
            "cached_tokens": self.cached_tokens,
            "arrival_s": self.scheduled_s,
            "sent_s": self.sent_s,
            "note": "; ".join(self.notes)[:300] or None,
            "final_url": redact_text(self.final_url) if self.final_url else None,
        }
        return {**row, **self.metrics()}


def build_body(target: Target, prompt: Prompt, max_tokens: int) -> dict[str, Any]:
    """The JSON body: a string or token ids go to /v1/completions as `prompt`, messages to chat as `messages`."""
    body: dict[str, Any] = {
        "model": target.model,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if target.uses_chat(prompt):
        body["messages"] = list(prompt) if is_messages(prompt) else [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if target.temperature is not None:
        body["temperature"] = target.temperature
    if target.ignore_eos:
        body["ignore_eos"] = True  # vLLM-style servers; mlx_lm.server ignores it, hence the logit bias
    if target.eos_token_ids:
        body["logit_bias"] = {str(t): EOS_BIAS for t in target.eos_token_ids}
    return {**body, **target.extra_body}


def chunk_content(payload: dict[str, Any], chat: bool) -> str | None:
    """The generated text of one chunk ('' for a content chunk of tool calls only); None when it carries none.
    A field of the wrong type is a `replies.MalformedReply`."""
    return replies.parse_chunk(payload, chat).text


TRANSPORT_MODULES = ("/aiohttp/", "/yarl/", "/multidict/", "/asyncio/", "/ssl.py", "/socket.py", "/zlib", "/brotli")


class RequestDeadline(Exception):
    """The whole request ran past `Target.timeout_s` (checked per line too: decompressed data may keep coming)."""


class EndpointClient:
    """An aiohttp session to one target; `send` streams one request and returns its `RequestOutcome`."""

    def __init__(self, target: Target, *, connections: int = 0) -> None:
        self.target = target
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}

    async def __aenter__(self) -> EndpointClient:
        import aiohttp

        self.headers |= {"Accept-Encoding": "identity", **auth_headers(self.target.api_key_env)}
        stall = self.target.stall_s or self.target.timeout_s
        timeout = aiohttp.ClientTimeout(total=None, sock_read=stall, sock_connect=stall)  # the total: `send`
        connector = aiohttp.TCPConnector(limit=self.connections, force_close=False)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open aiohttp session (inside `async with` only)."""
        if self._session is None:
            raise RuntimeError("EndpointClient is used outside `async with`")
        return self._session

    async def send(
        self, prompt: Prompt, max_tokens: int, *, index: int = 0, outcome: RequestOutcome | None = None
    ) -> RequestOutcome:
        """Stream one request. Whatever the server does becomes `outcome.error` (never an exception); the clock is
        never left open. A fault raised in this package's own code (not in the transport) still propagates."""
        import aiohttp

        outcome = outcome or RequestOutcome(index=index)
        data = json.dumps(build_body(self.target, prompt, max_tokens)).encode()
        chat = self.target.uses_chat(prompt)
        url = self.target.base_url + ("/v1/chat/completions" if chat else "/v1/completions")
        outcome.t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self.target.timeout_s):
                async with self.session.post(
                    url, data=data, headers=self.headers, allow_redirects=self.target.follow_redirects
                ) as response:
                    await self._read(response, outcome, chat, max_tokens, url)
        except aiohttp.ClientConnectorError as exc:
            refused = getattr(exc, "os_error", None) and exc.os_error.errno == errno.ECONNREFUSED
            outcome.error = "connection refused" if refused else f"cannot connect: {exc.strerror or exc}"
        except aiohttp.ConnectionTimeoutError:
            outcome.error = f"connect timed out after {self.target.stall_s or self.target.timeout_s:g} s"
        except aiohttp.ServerTimeoutError:
            outcome.error = f"stalled: no chunk for {self.target.stall_s or self.target.timeout_s:g} s"
        except (asyncio.TimeoutError, RequestDeadline):
            outcome.error = f"timed out: no complete reply in {self.target.timeout_s:g} s"
        except MalformedReply as exc:
            outcome.error = f"malformed: {exc}"
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            outcome.error = f"disconnected: {exc.__class__.__name__} after {len(outcome.chunk_times)} chunks"
        except aiohttp.TooManyRedirects:
            outcome.error = "redirected: too many redirects"
        except aiohttp.ClientError as exc:
            outcome.error = f"client error: {exc.__class__.__name__}: {str(exc)[:100]}"
        except Exception as exc:
            if not raised_in_transport(exc):
                raise  # a fault of ours: the caller saves the rows so far (store.rescue_rows) and it surfaces
            outcome.error = f"transport error: {exc.__class__.__name__}: {' '.join(str(exc).split())[:100]}"
        outcome.end = time.perf_counter()
        outcome.ok = outcome.error is None
        if outcome.error:
            outcome.error = redact_text(outcome.error)
        return outcome

    async def _read(
        self, response: aiohttp.ClientResponse, outcome: RequestOutcome, chat: bool, max_tokens: int, url: str
    ) -> None:
        if 300 <= response.status < 400:
            location = response.headers.get("Location", "(no Location)")
            outcome.error = f"redirected: http {response.status} to {' '.join(location.split())[:100]}"
            return
        if str(response.url) != url:
            outcome.final_url = str(response.url)
        if response.status >= 400:
            body = (await response.content.read(400)).decode(errors="replace")
            outcome.error = f"http {response.status}: {' '.join(body.split())[:100]}"
            return
        kind = response.headers.get("Content-Type", "")
        if "text/event-stream" not in kind:
            body = (await response.content.read(200)).decode(errors="replace")
            shown = " ".join(body.split())[:60]
            outcome.error = f"malformed: not an SSE stream ({kind[:60] or 'no content type'}): {shown}"
            return
        parts: list[str] = []  # the text, joined once at the end (a str grown chunk by chunk is quadratic)
        try:
            await self._read_stream(response, outcome, chat, max_tokens, parts)
        finally:
            outcome.text = "".join(parts)

    async def _read_stream(
        self, response: aiohttp.ClientResponse, outcome: RequestOutcome, chat: bool, max_tokens: int, parts: list[str]
    ) -> None:
        deadline = outcome.t0 + self.target.timeout_s
        most_chunks = replies.max_content_chunks(max_tokens)
        done = False
        lines = SSELines(response.content, max_total_bytes=replies.reply_cap_bytes(max_tokens))
        async for raw in lines:
            now = time.perf_counter()
            if now > deadline:
                raise RequestDeadline
            line = raw.strip()
            if not line or line.startswith(b":"):
                continue
            if not line.startswith(b"data:"):
                if line.split(b":", 1)[0] in (b"event", b"id", b"retry"):
                    continue
                outcome.error = f"malformed: not an SSE line: {line[:60].decode(errors='replace')}"
                return
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            try:
                payload = json.loads(data)
            except (ValueError, RecursionError):
                outcome.error = f"malformed: chunk is not JSON: {data[:60].decode(errors='replace')}"
                return
            if not isinstance(payload, dict) or "error" in payload:
                detail = payload.get("error") if isinstance(payload, dict) else payload
                outcome.error = f"server error in stream: {short_text(detail)}"
                return
            chunk = replies.parse_chunk(payload, chat)
            if chunk.text is not None:
                if len(outcome.chunk_times) == most_chunks:
                    raise MalformedReply(f"more than {most_chunks} content chunks for max_tokens {max_tokens}")
                outcome.chunk_times.append(now)
                parts.append(chunk.text)
            if chunk.finish_reason:
                outcome.finish_reason = chunk.finish_reason
            if chunk.usage:
                read_usage(chunk.usage, outcome, max_tokens=max_tokens, context_tokens=self.target.context_tokens)
        if not done:
            outcome.error = f"disconnected: stream ended before [DONE] after {len(outcome.chunk_times)} chunks"
        elif not outcome.chunk_times:
            outcome.error = "empty: the stream carried no generated text"


def read_usage(usage: Any, outcome: RequestOutcome, *, max_tokens: int, context_tokens: int | None = None) -> None:
    """The server's counts, where plausible (`replies.check_usage`); the rest are ignored with a note."""
    checked = replies.check_usage(usage, max_tokens=max_tokens, context_tokens=context_tokens)
    outcome.usage_raw = usage if isinstance(usage, dict) else {}
    outcome.usage = checked.completion_tokens is not None
    outcome.prompt_tokens = checked.prompt_tokens
    outcome.generated_tokens = checked.completion_tokens
    outcome.cached_tokens = checked.cached_tokens
    outcome.notes = [n for n in outcome.notes if n not in checked.notes] + checked.notes


def short_text(value: object, limit: int = 100) -> str:
    try:
        return " ".join(str(value).split())[:limit]
    except (RecursionError, ValueError):
        return type(value).__name__


def raised_in_transport(exc: BaseException) -> bool:
    """The exception was raised inside the HTTP stack (aiohttp, yarl, asyncio, ssl...), not in this package."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and any(part in last.replace("\\", "/") for part in TRANSPORT_MODULES)
