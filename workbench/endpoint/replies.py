"""What a server sends back, checked before it is believed: bounded SSE lines, typed chunks, sane `usage` counts.

A server under test may be broken or hostile. Nothing it sends may end the run, fill the memory or turn into a
number that is not a measurement, so every reply is read through these checks:

- SSE lines are read with a cap (`MAX_LINE_BYTES`, 1 MiB) and a whole reply with another (`reply_cap_bytes`:
  16 MiB plus 4 KiB per requested token), and content chunks with a third (`max_content_chunks`: 10 per
  requested token, plus 64); past any the request fails with a `malformed:` reason;
- a chunk's `choices`, `text`, `delta`, `content` and `finish_reason` must have their OpenAI types, else
  `MalformedReply` (the request's row says which field was wrong);
- `usage` counts must be integers in [0, bound]: completion tokens at most 10x the requested `max_tokens`,
  prompt (and cached) tokens at most the model's context when known, else 10^7. A count outside is ignored, the
  row's `note` says so, and the client's own count (content chunks) stands in, so no rate is negative or infinite.

    lines = SSELines(response.content, max_line_bytes=MAX_LINE_BYTES, max_total_bytes=reply_cap_bytes(64))
    async for line in lines: ...
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_LINE_BYTES = 1 << 20
MAX_DOCUMENT_BYTES = 1 << 20  # a /health or /v1/models reply
MAX_PROMPT_TOKENS = 10**7
COMPLETION_FACTOR = 10  # completion_tokens may exceed max_tokens (servers count differently), never by 10x


class MalformedReply(Exception):
    """A reply that breaks the protocol; its message is the row's reason after `malformed: `."""


def reply_cap_bytes(max_tokens: int) -> int:
    return (16 << 20) + 4096 * max(1, int(max_tokens))


def max_content_chunks(max_tokens: int) -> int:
    """No server sends more content chunks than 10x the tokens asked for (one a token is the usual)."""
    return COMPLETION_FACTOR * max(1, int(max_tokens)) + 64


class ByteStream(Protocol):
    """What a reply body is read from: an aiohttp `StreamReader` (b'' at the end)."""

    async def readany(self) -> bytes: ...


class SSELines:
    """Lines of a streamed body, each at most `max_line_bytes` long, the whole at most `max_total_bytes`.

    `stream` is an aiohttp `StreamReader` (anything with `async readany() -> bytes`, b'' at the end)."""

    def __init__(
        self, stream: ByteStream, *, max_line_bytes: int = MAX_LINE_BYTES, max_total_bytes: int | None = None
    ) -> None:
        self.stream, self.max_line, self.max_total = stream, max_line_bytes, max_total_bytes
        self.pieces: list[bytes] = []  # the unfinished line, in pieces (no copying while it grows)
        self.pending, self.total = 0, 0
        self.lines: deque[bytes] = deque()

    def __aiter__(self) -> SSELines:
        return self

    async def __anext__(self) -> bytes:
        while not self.lines:
            data = await self.stream.readany()
            if not data:
                if self.pieces:
                    line, self.pieces, self.pending = b"".join(self.pieces), [], 0
                    return line
                raise StopAsyncIteration
            self.total += len(data)
            if self.max_total is not None and self.total > self.max_total:
                raise MalformedReply(f"reply longer than {mib(self.max_total)}")
            if b"\n" not in data:
                self.pieces.append(data)
                self.pending += len(data)
            else:
                first, *middle, rest = data.split(b"\n")
                self.lines = deque([b"".join([*self.pieces, first]), *middle])
                self.pieces, self.pending = ([rest], len(rest)) if rest else ([], 0)
            if self.pending > self.max_line or any(len(line) > self.max_line for line in self.lines):
                raise MalformedReply(f"an SSE line longer than {mib(self.max_line)}")
        return self.lines.popleft()


async def read_capped(stream: ByteStream, max_bytes: int) -> bytes:
    """A whole non-streamed body, at most `max_bytes` (else `MalformedReply`); `stream` as for `SSELines`."""
    pieces: list[bytes] = []
    total = 0
    while data := await stream.readany():
        total += len(data)
        if total > max_bytes:
            raise MalformedReply(f"reply longer than {mib(max_bytes)}")
        pieces.append(data)
    return b"".join(pieces)


def mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


@dataclass
class Chunk:
    """One parsed stream chunk: its text (None: not a content chunk), finish reason and raw `usage`."""

    text: str | None = None
    finish_reason: str | None = None
    usage: object = None


def parse_chunk(payload: dict[str, Any], chat: bool) -> Chunk:
    """The checked parts of one chunk; a field of the wrong type is a `MalformedReply` naming it."""
    choices = payload.get("choices")
    usage = payload.get("usage")
    if choices is None or choices == []:
        return Chunk(usage=usage)
    if not isinstance(choices, list):
        raise MalformedReply(f"choices is {type_name(choices)}, not a list")
    choice = choices[0]
    if not isinstance(choice, dict):
        raise MalformedReply(f"choices[0] is {type_name(choice)}, not an object")
    finish = choice.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise MalformedReply(f"finish_reason is {type_name(finish)}, not a string")
    return Chunk(choice_text(choice, chat), finish, usage)


def choice_text(choice: dict[str, Any], chat: bool) -> str | None:
    """The generated text of one choice ('' for a content chunk of tool calls only); None when it carries none."""
    if not chat and "text" in choice:
        return _string(choice["text"], "choices[0].text") or None
    delta = choice.get("delta") or choice.get("message") or {}
    if not isinstance(delta, dict):
        raise MalformedReply(f"choices[0].delta is {type_name(delta)}, not an object")
    text = _string(delta.get("content"), "delta.content")
    text += _string(delta.get("reasoning_content") or delta.get("reasoning"), "delta.reasoning")
    if text:
        return text
    return "" if delta.get("tool_calls") else None


def _string(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedReply(f"{name} is {type_name(value)}, not a string")
    return value


@dataclass
class Usage:
    """The counts of a `usage` object that passed the checks (None: absent or ignored), and why any was ignored."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    notes: list[str] = field(default_factory=list)


def check_usage(usage: Any, *, max_tokens: int, context_tokens: int | None = None) -> Usage:
    """`usage` with every count checked: an integer in [0, bound], else None and a note."""
    out = Usage()
    if not isinstance(usage, dict):
        out.notes.append(f"usage ignored: {type_name(usage)}, not an object")
        return out
    prompt_bound = context_tokens or MAX_PROMPT_TOKENS
    out.prompt_tokens = _count(usage, "prompt_tokens", prompt_bound, out.notes)
    out.completion_tokens = _count(usage, "completion_tokens", COMPLETION_FACTOR * max(1, max_tokens), out.notes)
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict):
        out.cached_tokens = _count(details, "cached_tokens", prompt_bound, out.notes, prefix="prompt_tokens_details.")
    elif details is not None:
        out.notes.append(f"usage.prompt_tokens_details ignored: {type_name(details)}, not an object")
    return out


def _count(usage: dict[str, Any], key: str, bound: int, notes: list[str], *, prefix: str = "") -> int | None:
    if key not in usage or usage[key] is None:
        return None
    value = usage[key]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= bound:
        return value
    shown = repr(value) if isinstance(value, (int, float, bool)) else type_name(value)
    notes.append(f"usage.{prefix}{key} {shown[:40]} ignored (not an integer in [0, {bound}])")
    return None


def type_name(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"
