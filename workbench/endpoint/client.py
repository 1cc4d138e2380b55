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
"stalled: no chunk for 5 s", "timed out: no complete reply in 60 s", "malformed: ...", "disconnected: ...".
`check_target` runs before a measurement and raises one-line `ConfigError` / `ModelError` instead.

    async with EndpointClient(Target(url="http://127.0.0.1:8080", model="m")) as client:
        outcome = await client.send("Hello", max_tokens=32)
"""

from __future__ import annotations

import asyncio
import errno
import json
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from workbench.errors import ConfigError, ModelError
from workbench.measure.timed import request_metrics

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
    extra_body: dict = Field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return base_url(self.url)

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.chat else "/v1/completions"

    def uses_chat(self, prompt) -> bool:
        """Chat messages always go to /v1/chat/completions; text and token ids only when `chat` is set."""
        return self.chat or is_messages(prompt)


def is_messages(prompt) -> bool:
    return isinstance(prompt, (list, tuple)) and bool(prompt) and isinstance(prompt[0], dict)


def base_url(url: str) -> str:
    """`http://host:port` from what a user may type: a trailing slash or `/v1` is dropped."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"target {url!r} is not an http(s) URL")
    return url[: -len("/v1")] if url.endswith("/v1") else url


@dataclass
class RequestOutcome:
    """One request: when it was sent, when each content chunk arrived, what the server counted, or why it failed."""

    index: int
    t0: float = math.nan
    chunk_times: list = field(default_factory=list)
    prompt_tokens: int | None = None
    generated_tokens: int | None = None
    cached_tokens: int | None = None
    usage: bool = False  # the server reported completion_tokens
    usage_raw: dict = field(default_factory=dict)
    ok: bool = False
    error: str | None = None
    text: str = ""
    finish_reason: str | None = None
    scheduled_s: float | None = None  # offset from the level's start at which it was due (open loop)
    sent_s: float | None = None  # offset from the level's start at which it was sent
    end: float = math.nan  # clock when the request finished or failed

    def metrics(self) -> dict:
        """`request_metrics` over the content chunks, with the server's token counts; {} for a failed request."""
        if not self.ok:
            return {}
        tokens = self.generated_tokens if self.usage and self.generated_tokens else len(self.chunk_times)
        metrics = request_metrics(self.t0, self.chunk_times, self.prompt_tokens or 0, generated_tokens=tokens)
        if self.prompt_tokens is None:
            metrics.update(prompt_tokens=None, prefill_tps=math.nan)
        return metrics

    def to_row(self) -> dict:
        """Measures in the shared schema (`results.SCHEMA`); failed requests keep their reason and timing offsets."""
        row = {
            "request_index": self.index,
            "ok": self.ok,
            "error": self.error,
            "chunks": len(self.chunk_times),
            "cached_tokens": self.cached_tokens,
            "arrival_s": self.scheduled_s,
            "sent_s": self.sent_s,
        }
        return {**row, **self.metrics()}


def build_body(target: Target, prompt, max_tokens: int) -> dict:
    """The JSON body: a string or token ids go to /v1/completions as `prompt`, messages to chat as `messages`."""
    body = {
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


def chunk_content(payload: dict, chat: bool) -> str | None:
    """The generated text of one chunk ('' for a content chunk of tool calls only); None when it carries none."""
    choices = payload.get("choices") or []
    if not choices:
        return None
    choice = choices[0]
    if not chat and "text" in choice:
        return choice["text"] or None
    delta = choice.get("delta") or choice.get("message") or {}
    text = (delta.get("content") or "") + (delta.get("reasoning_content") or delta.get("reasoning") or "")
    if text:
        return text
    return "" if delta.get("tool_calls") else None


class EndpointClient:
    """An aiohttp session to one target; `send` streams one request and returns its `RequestOutcome`."""

    def __init__(self, target: Target, *, connections: int = 0):
        self.target = target
        self.connections = connections
        self.session = None

    async def __aenter__(self) -> EndpointClient:
        import aiohttp

        stall = self.target.stall_s or self.target.timeout_s
        timeout = aiohttp.ClientTimeout(total=self.target.timeout_s, sock_read=stall, sock_connect=stall)
        connector = aiohttp.TCPConnector(limit=self.connections, force_close=False)
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    async def send(self, prompt, max_tokens: int, *, index: int = 0, outcome: RequestOutcome | None = None):
        """Stream one request. Every failure is caught and becomes `outcome.error`; the clock is never left open."""
        import aiohttp

        outcome = outcome or RequestOutcome(index=index)
        data = json.dumps(build_body(self.target, prompt, max_tokens)).encode()
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        outcome.t0 = time.perf_counter()
        try:
            chat = self.target.uses_chat(prompt)
            url = self.target.base_url + ("/v1/chat/completions" if chat else "/v1/completions")
            async with self.session.post(url, data=data, headers=headers) as response:
                await self._read(response, outcome, chat)
        except aiohttp.ClientConnectorError as exc:
            refused = getattr(exc, "os_error", None) and exc.os_error.errno == errno.ECONNREFUSED
            outcome.error = "connection refused" if refused else f"cannot connect: {exc.strerror or exc}"
        except aiohttp.ConnectionTimeoutError:
            outcome.error = f"connect timed out after {self.target.stall_s or self.target.timeout_s:g} s"
        except aiohttp.ServerTimeoutError:
            outcome.error = f"stalled: no chunk for {self.target.stall_s or self.target.timeout_s:g} s"
        except asyncio.TimeoutError:
            outcome.error = f"timed out: no complete reply in {self.target.timeout_s:g} s"
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            outcome.error = f"disconnected: {exc.__class__.__name__} after {len(outcome.chunk_times)} chunks"
        except RuntimeError as exc:  # aiohttp: "Connection closed." when a shared connection is torn down
            outcome.error = f"disconnected: {str(exc)[:100]}"
        except aiohttp.ClientError as exc:
            outcome.error = f"client error: {exc.__class__.__name__}: {str(exc)[:100]}"
        outcome.end = time.perf_counter()
        outcome.ok = outcome.error is None
        return outcome

    async def _read(self, response, outcome: RequestOutcome, chat: bool) -> None:
        if response.status >= 400:
            body = (await response.content.read(400)).decode(errors="replace")
            outcome.error = f"http {response.status}: {' '.join(body.split())[:100]}"
            return
        kind = response.headers.get("Content-Type", "")
        if "text/event-stream" not in kind:
            body = (await response.content.read(200)).decode(errors="replace")
            outcome.error = f"malformed: not an SSE stream ({kind or 'no content type'}): {' '.join(body.split())[:60]}"
            return
        done = False
        async for raw in response.content:
            now = time.perf_counter()
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
            except ValueError:
                outcome.error = f"malformed: chunk is not JSON: {data[:60].decode(errors='replace')}"
                return
            if not isinstance(payload, dict) or "error" in payload:
                detail = payload.get("error") if isinstance(payload, dict) else payload
                outcome.error = f"server error in stream: {str(detail)[:100]}"
                return
            text = chunk_content(payload, chat)
            if text is not None:
                outcome.chunk_times.append(now)
                outcome.text += text
            if payload.get("choices") and payload["choices"][0].get("finish_reason"):
                outcome.finish_reason = payload["choices"][0]["finish_reason"]
            if payload.get("usage"):
                read_usage(payload["usage"], outcome)
        if not done:
            outcome.error = f"disconnected: stream ended before [DONE] after {len(outcome.chunk_times)} chunks"
        elif not outcome.chunk_times:
            outcome.error = "empty: the stream carried no generated text"


def read_usage(usage: dict, outcome: RequestOutcome) -> None:
    outcome.usage_raw = usage
    outcome.usage = usage.get("completion_tokens") is not None
    outcome.prompt_tokens = usage.get("prompt_tokens")
    outcome.generated_tokens = usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details") or {}
    outcome.cached_tokens = details.get("cached_tokens")


def get_json(url: str, timeout_s: float):
    """GET a JSON document; (status, document or None). Connection problems raise `ConfigError` with one line."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (http(s) checked by base_url)
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionRefusedError):
            reason = "connection refused"
        root, _, path = url.partition("://")[2].partition("/")
        raise ConfigError(f"target {url.split('://')[0]}://{root} is unreachable (GET /{path}: {reason})") from None
    except ValueError:
        return 200, None


def check_target(url: str, model: str | None = None, *, timeout_s: float = 5.0) -> str:
    """Before a run: the target answers (`/health` where it has one) and serves `model`. Returns the model name
    to send: `model`, or the only model the server lists when `model` is None. One-line errors otherwise."""
    root = base_url(url)
    status, _ = get_json(f"{root}/health", timeout_s)
    if status >= 500:
        raise ConfigError(f"target {root} is not healthy: /health answered {status}")
    status, listing = get_json(f"{root}/v1/models", timeout_s)
    if status < 400 and not isinstance(listing, dict) and model is not None:
        return probe_model(root, model, timeout_s)  # mlx_lm.server's listing breaks without a Hugging Face cache
    if status >= 400 or not isinstance(listing, dict) or not isinstance(listing.get("data"), list):
        raise ConfigError(f"target {root} is not an OpenAI-compatible server: GET /v1/models answered {status}")
    served = [entry.get("id") for entry in listing["data"] if isinstance(entry, dict)]
    if model is None:
        if len(served) != 1:
            raise ModelError(f"target {root} serves {len(served)} models ({', '.join(served) or 'none'}): name one")
        return served[0]
    if model not in served:
        raise ModelError(f"model {model!r} is not served by {root}; it serves: {', '.join(served) or 'none'}")
    return model


def probe_model(root: str, model: str, timeout_s: float) -> str:
    """When the server lists no models: one 1-token completion naming `model`; a 4xx reply is a `ModelError`."""
    body = json.dumps({"model": model, "prompt": "hi", "max_tokens": 1}).encode()
    request = urllib.request.Request(f"{root}/v1/completions", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=max(timeout_s, 30.0)):  # noqa: S310
            return model
    except urllib.error.HTTPError as exc:
        detail = " ".join(exc.read(200).decode(errors="replace").split())[:100]
        raise ModelError(f"model {model!r} is not served by {root} (http {exc.code}: {detail})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"target {root} is unreachable (POST /v1/completions: {reason})") from None
