"""Before a measurement: the target answers, serves the model, and how requests reach it (URL, credentials).

`check_target` GETs `/health` and `/v1/models` with a deadline on each *whole* request and a 1 MiB cap on each
reply (a body that never ends or trickles a byte at a time is a one-line `ConfigError`, not a hang), follows no
redirect unless asked (a 3xx names its `Location`), and never prints a password: URLs in messages are redacted
(`workbench.redact`). Credentials go with every request: `user:password@` in the URL as HTTP basic auth, or a
bearer token from the environment variable named by `api_key_env` (`--api-key-env NAME`).

    name = check_target("http://127.0.0.1:8080/v1", None)   # the only model the server lists
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from workbench.endpoint.replies import MAX_DOCUMENT_BYTES, mib
from workbench.errors import ConfigError, ModelError
from workbench.redact import has_credentials, redact_text

T = TypeVar("T")


def base_url(url: str) -> str:
    """`http://host:port` from what a user may type: a trailing slash or `/v1` is dropped."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"target {redact_text(url)!r} is not an http(s) URL")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def auth_headers(api_key_env: str | None) -> dict[str, str]:
    """`Authorization: Bearer <token>` from the environment variable `api_key_env`; a variable that is not set
    is a one-line `ConfigError` naming it (never its value)."""
    if not api_key_env:
        return {}
    token = os.environ.get(api_key_env)
    if not token:
        raise ConfigError(f"api_key_env: the environment variable {api_key_env} is not set")
    return {"Authorization": f"Bearer {token}"}


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, also from inside a running event loop (a Jupyter kernel has one): then on a thread of its own,
    which the caller waits for, so nothing else runs while a level is timed."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class Reply:
    """A bounded reply: status, the document (None when not JSON), and where a redirect pointed."""

    def __init__(self, status: int, document: Any = None, location: str | None = None) -> None:
        self.status, self.document, self.location = status, document, location


async def _fetch(method: str, url: str, *, timeout_s: float, body: Any, headers: dict[str, str], follow: bool) -> Reply:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout_s)) as session:
        async with asyncio.timeout(timeout_s):
            async with session.request(method, url, headers=headers, allow_redirects=follow, json=body) as response:
                if 300 <= response.status < 400:
                    return Reply(response.status, location=response.headers.get("Location", "(no Location)"))
                declared = response.content_length
                if declared is not None and declared > MAX_DOCUMENT_BYTES:
                    raise DocumentTooLarge
                data = b""
                while chunk := await response.content.readany():
                    data += chunk
                    if len(data) > MAX_DOCUMENT_BYTES:
                        raise DocumentTooLarge
                try:
                    return Reply(response.status, json.loads(data or b"null"))
                except (ValueError, RecursionError):
                    return Reply(response.status)


class DocumentTooLarge(Exception):
    pass


def request_json(
    method: str, url: str, *, timeout_s: float, access: dict[str, Any] | None = None, body: Any = None
) -> Reply:
    """One bounded request: the whole of it within `timeout_s`, at most 1 MiB read. Connection problems, the
    deadline and an oversized reply are one-line `ConfigError`s naming the target (its password redacted)."""
    import aiohttp

    access = access or {}
    headers = auth_headers(access.get("api_key_env"))
    follow = bool(access.get("follow_redirects"))
    scheme, _, rest = url.partition("://")
    root, _, path = rest.partition("/")
    where = f"target {redact_text(f'{scheme}://{root}')}"
    what = f"{method} /{path}"
    coroutine = _fetch(method, url, timeout_s=timeout_s, body=body, headers=headers, follow=follow)
    try:
        reply = run_async(coroutine)
    except DocumentTooLarge:
        raise ConfigError(f"{where}: {what} answered more than {mib(MAX_DOCUMENT_BYTES)}") from None
    except (asyncio.TimeoutError, TimeoutError):
        raise ConfigError(f"{where} did not answer {what} within {timeout_s:g} s") from None
    except aiohttp.TooManyRedirects:
        raise ConfigError(f"{where}: {what} redirects too many times") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        reason = getattr(exc, "os_error", None) or exc
        if isinstance(reason, ConnectionRefusedError) or "Connect call failed" in str(reason):
            reason = "connection refused"
        text = " ".join(str(reason).split())[:120] or type(exc).__name__
        raise ConfigError(f"{where} is unreachable ({what}: {redact_text(text)})") from None
    if reply.location is not None:
        raise ConfigError(
            f"{where} redirects {what} (http {reply.status}) to {redact_text(reply.location)[:120]}; "
            "point --target at the final address, or pass --follow-redirects"
        )
    return reply


def get_json(url: str, timeout_s: float, access: dict[str, Any] | None = None) -> tuple[int, Any]:
    """GET a JSON document; (status, document or None). Bounded as `request_json`."""
    reply = request_json("GET", url, timeout_s=timeout_s, access=access)
    return reply.status, reply.document


def check_target(
    url: str, model: str | None = None, *, timeout_s: float = 5.0, access: dict[str, Any] | None = None
) -> str:
    """Before a run: the target answers (`/health` where it has one) and serves `model`. Returns the model name
    to send: `model`, or the only model the server lists when `model` is None. One-line errors otherwise.
    `access`: `api_key_env` and `follow_redirects`, as the `Target` has them."""
    root = base_url(url)
    shown = redact_text(root)
    if (access or {}).get("api_key_env") and has_credentials(root):
        raise ConfigError(f"target {shown}: give credentials in the URL or with --api-key-env, not both")
    status, _ = get_json(f"{root}/health", timeout_s, access)
    if status >= 500:
        raise ConfigError(f"target {shown} is not healthy: /health answered {status}")
    status, listing = get_json(f"{root}/v1/models", timeout_s, access)
    if status < 400 and not isinstance(listing, dict) and model is not None:
        return probe_model(root, model, timeout_s, access)  # mlx_lm.server's listing breaks without a HF cache
    if status >= 400 or not isinstance(listing, dict) or not isinstance(listing.get("data"), list):
        raise ConfigError(f"target {shown} is not an OpenAI-compatible server: GET /v1/models answered {status}")
    ids = [entry.get("id") for entry in listing["data"] if isinstance(entry, dict)]
    served = [name if isinstance(name, str) else repr(name) for name in ids][:1000]
    listed = ", ".join(name[:80] for name in served[:20]) or "none"
    if model is None:
        if len(served) != 1:
            raise ModelError(f"target {shown} serves {len(served)} models ({listed}): name one")
        return served[0]
    if model not in served:
        raise ModelError(f"model {model!r} is not served by {shown}; it serves: {listed}")
    return model


def probe_model(root: str, model: str, timeout_s: float, access: dict[str, Any] | None = None) -> str:
    """When the server lists no models: one 1-token completion naming `model`; a 4xx reply is a `ModelError`."""
    body = {"model": model, "prompt": "hi", "max_tokens": 1}
    reply = request_json("POST", f"{root}/v1/completions", timeout_s=max(timeout_s, 30.0), access=access, body=body)
    if 400 <= reply.status < 500:
        detail = reply.document.get("error") if isinstance(reply.document, dict) else reply.document
        detail = " ".join(str(detail).split())[:100]
        raise ModelError(f"model {model!r} is not served by {redact_text(root)} (http {reply.status}: {detail})")
    if reply.status >= 500:
        raise ConfigError(f"target {redact_text(root)} failed a 1-token completion (http {reply.status})")
    return model
