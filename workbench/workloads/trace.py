"""Timestamped request traces, read and turned into prompts: what to send, and when. Pure.

Poisson arrivals and a file of prompts have neither the bursts nor the prefix reuse of production traffic; a
trace has both. Two kinds of file, by extension JSONL / JSON / CSV / parquet (`workloads.datasets.parse_rows`):

- **Mooncake** rows: `timestamp` (ms), `input_length`, `output_length` and optional `hash_ids`, one id per block of
  `block_tokens` (512, as Mooncake) prompt tokens. Prompts are synthesised from the model's tokenizer so that two
  requests share a block of tokens exactly when they share its hash id (`trace_prompts`): block `h` is the same
  token ids wherever it occurs, a request's last, partial block is the start of it, and blocks past the
  request's hash ids are its own. The ids come from a pool of single-word tokens that encode back to themselves, so
  the decoded text the server tokenizes again gives those very ids (checked for every prompt).
- **Prompt** rows: `timestamp` (ms) and `prompt` or `messages` as a dataset row, with optional `max_tokens` or
  `output_length`.

Every problem is one `DataError` naming the file and line, before anything is sent: a missing or non-numeric
field, a negative timestamp or one before the previous line's, hash ids for more blocks than the prompt has,
a request longer than the model's context, a window or limit that leaves nothing. `--trace-window START:END`
keeps requests from START to END seconds after the trace's first one; `--trace-limit N` the first N of those;
send offsets start at 0 and are divided by `--trace-speed`.

    trace = read_trace(TraceOptions(path="mooncake.jsonl", speed=2.0, limit=100), context_tokens=4096)
    prompts, limits, workload = trace_prompts(trace, tokenizer, gen_tokens=64)
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workbench.errors import DataError, ModelError
from workbench.workloads import datasets, prompt_sets

BLOCK_TOKENS = 512


class TraceOptions(BaseModel):
    """A trace file and how to replay it (`trace:` in the endpoint experiment; `--trace*` flags of bench)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    speed: float = Field(1.0, gt=0, le=1000, description="1: the trace's own pace; 2: twice as fast")
    limit: int | None = Field(None, ge=1, description="replay only the first N requests (after the window)")
    window_s: list[float] | None = Field(None, description="[start, end] seconds after the trace's first request")
    block_tokens: int = Field(BLOCK_TOKENS, ge=1, le=65536, description="tokens per hash id (Mooncake: 512)")

    @model_validator(mode="after")
    def _window(self):
        if self.window_s is not None:
            if len(self.window_s) != 2 or not 0 <= self.window_s[0] < self.window_s[1]:
                raise ValueError(f"window_s must be [start, end] with 0 <= start < end, got {self.window_s}")
        return self


def parse_window(text: str) -> list[float]:
    """`START:END` (seconds) as given to `--trace-window`; a `ValueError` names the problem."""
    start, sep, end = text.partition(":")
    try:
        window = [float(start or 0), float(end)] if sep else None
    except ValueError:
        window = None
    if window is None or not 0 <= window[0] < window[1]:
        raise ValueError(f"--trace-window takes START:END seconds with 0 <= START < END, got {text!r}")
    return window


@dataclass(frozen=True)
class TraceRequest:
    """One line of a trace: where it is, when it is due (ms, as written) and what it asks for."""

    where: str
    timestamp_ms: float
    input_length: int | None = None  # Mooncake rows
    output_length: int | None = None
    hash_ids: tuple = ()
    item: dict | None = None  # prompt rows: {"prompt": ...} or {"messages": [...]}, with max_tokens if given


@dataclass(frozen=True)
class Trace:
    path: str
    sha256: str
    kind: str  # "mooncake" or "prompts"
    requests: tuple
    options: TraceOptions

    def arrivals_s(self) -> list[float]:
        """Send offsets (s) of the requests kept: from 0, divided by the replay speed."""
        first = self.requests[0].timestamp_ms
        return [(r.timestamp_ms - first) / 1000.0 / self.options.speed for r in self.requests]


def _number(row: dict, key: str, where: str) -> float:
    value = row.get(key)
    if value is None:
        raise DataError(f"{where}: no {key}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise DataError(f"{where}: {key} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{where}: {key} must be a number, got {value!r}")
    return value


def _count(row: dict, key: str, where: str) -> int:
    value = _number(row, key, where)
    if value != int(value) or value < 1:
        raise DataError(f"{where}: {key} must be a whole number >= 1, got {row[key]!r}")
    return int(value)


def _hash_ids(row: dict, where: str, input_length: int, block_tokens: int) -> tuple:
    value = row.get("hash_ids")
    if value is None:
        return ()
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise DataError(f"{where}: hash_ids must be a list of integers") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(h, int) and not isinstance(h, bool) for h in value):
        raise DataError(f"{where}: hash_ids must be a list of integers")
    blocks = math.ceil(input_length / block_tokens)
    if len(value) > blocks:
        raise DataError(
            f"{where}: {len(value)} hash_ids for an input_length of {input_length} tokens "
            f"({blocks} block(s) of {block_tokens}); set the trace's block size"
        )
    return tuple(value)


def parse_request(row, where: str, block_tokens: int) -> TraceRequest:
    if not isinstance(row, dict):
        raise DataError(f"{where}: a trace row must be an object, got {datasets.type_name(row)}")
    timestamp = _number(row, "timestamp", where)
    if timestamp < 0:
        raise DataError(f"{where}: timestamp {timestamp:g} is negative")
    if "input_length" in row or "hash_ids" in row:
        input_length = _count(row, "input_length", where)
        output_length = _count(row, "output_length", where)
        ids = _hash_ids(row, where, input_length, block_tokens)
        return TraceRequest(where, timestamp, input_length, output_length, ids)
    if "prompt" not in row and "messages" not in row:
        raise DataError(f"{where}: row has neither input_length (Mooncake) nor prompt/messages")
    item = datasets.check_item({k: row[k] for k in ("prompt", "messages", "max_tokens") if k in row}, where)
    output = _count(row, "output_length", where) if "output_length" in row else item.get("max_tokens")
    return TraceRequest(where, timestamp, output_length=output, item=item)


def read_trace(options: TraceOptions, *, context_tokens: int | None = None) -> Trace:
    """The requests of a trace file that the window and limit keep, validated; one `DataError` line otherwise.
    `context_tokens` (the model's `max_position_embeddings`) bounds a Mooncake row's input + output length."""
    data = datasets.read_bytes(options.path)
    rows = datasets.parse_rows(options.path, data)
    requests, previous = [], None
    for where, row in rows:
        request = parse_request(row, where, options.block_tokens)
        if previous is not None and request.timestamp_ms < previous.timestamp_ms:
            raise DataError(
                f"{where}: timestamp {request.timestamp_ms:g} is before the previous row's "
                f"{previous.timestamp_ms:g} (a trace is in send order)"
            )
        if (
            request.input_length
            and context_tokens
            and request.input_length + (request.output_length or 0) > context_tokens
        ):
            raise DataError(
                f"{where}: input_length {request.input_length} + output_length {request.output_length} "
                f"exceeds the model's context of {context_tokens} tokens"
            )
        if previous is not None and kind_of(request) != kind_of(previous):
            raise DataError(f"{where}: a trace mixes Mooncake rows and prompt rows")
        requests.append(request)
        previous = request
    if not requests:
        raise DataError(f"{options.path}: the trace has no requests")
    kept = window(requests, options)
    if not kept:
        raise DataError(f"{options.path}: no requests in the window {options.window_s} s")
    return Trace(str(options.path), hashlib.sha256(data).hexdigest(), kind_of(kept[0]), tuple(kept), options)


def kind_of(request: TraceRequest) -> str:
    return "mooncake" if request.input_length else "prompts"


def window(requests: list[TraceRequest], options: TraceOptions) -> list[TraceRequest]:
    first = requests[0].timestamp_ms
    kept = requests
    if options.window_s is not None:
        start_ms, end_ms = (first + 1000.0 * s for s in options.window_s)
        kept = [r for r in requests if start_ms <= r.timestamp_ms < end_ms]
    return kept[: options.limit] if options.limit else kept


def block_pool(tokenizer) -> list[int]:
    """Token ids whose text is one space and ASCII letters and that `encode` gives back alone: a sequence of them,
    decoded, tokenizes to exactly that sequence (a pre-tokenizer splits before each space)."""
    specials = set(getattr(tokenizer, "all_special_ids", None) or []) | set(tokenizer.eos_token_ids or [])
    pool = []
    for token in range(tokenizer.vocab_size):
        if token in specials:
            continue
        text = tokenizer.decode([token])
        word = text[1:]
        if text[:1] == " " and word.isascii() and word.isalpha() and encode(tokenizer, text) == [token]:
            pool.append(token)
    if len(pool) < 16:
        raise ModelError(f"the tokenizer has {len(pool)} single-word tokens; it cannot build exact token blocks")
    return pool


def encode(tokenizer, text: str) -> list[int]:
    """What a server tokenizes a completions prompt to, without the special tokens it may add (BOS)."""
    return list(tokenizer.encode(text, add_special_tokens=False))


def block_ids(requests, block_tokens: int, pool: list[int], *, seed: int = 0) -> list[list[int]]:
    """Each Mooncake request's prompt token ids: block `h` is the same `block_tokens` ids wherever `h` occurs
    (a request's last block is cut to its `input_length`); blocks past its hash ids are its own."""
    blocks: dict = {}

    def block(key) -> list[int]:
        if key not in blocks:
            rng = random.Random(f"trace-block-{seed}-{key}")
            blocks[key] = [rng.choice(pool) for _ in range(block_tokens)]
        return blocks[key]

    prompts = []
    for index, request in enumerate(requests):
        ids: list[int] = []
        for b in range(math.ceil(request.input_length / block_tokens)):
            key = ("h", request.hash_ids[b]) if b < len(request.hash_ids) else ("own", index, b)
            ids += block(key)[: request.input_length - len(ids)]
        prompts.append(ids)
    return prompts


def trace_prompts(
    trace: Trace, tokenizer, *, gen_tokens: int, seed: int = 0
) -> tuple[list, list[int], prompt_sets.Workload]:
    """(prompts to send, each request's max_tokens, the workload): synthesised text for Mooncake rows (see
    `block_ids`), the rows' prompts or messages otherwise. The workload hash covers the file's SHA-256, the replay
    options and the prompts."""
    params = {"trace_sha256": trace.sha256, "kind": trace.kind, "seed": seed}
    params |= trace.options.model_dump(exclude={"path"})
    name = f"trace:{Path(trace.path).name}"
    if trace.kind == "prompts":
        prompts = [r.item.get("messages") or r.item["prompt"] for r in trace.requests]
        limits = [r.output_length or gen_tokens for r in trace.requests]
        items = tuple(r.item for r in trace.requests)
        workload = prompt_sets.Workload(name, (), params=params, items=items, max_tokens=tuple(limits))
        return prompts, limits, workload
    if tokenizer is None:
        raise ModelError("a Mooncake trace needs the model's tokenizer to build its prompts (--tokenizer)")
    ids = block_ids(trace.requests, trace.options.block_tokens, block_pool(tokenizer), seed=seed)
    texts = [tokenizer.decode(p) for p in ids]
    for request, text, prompt in zip(trace.requests, texts, ids):
        if encode(tokenizer, text) != prompt:
            raise ModelError(f"{request.where}: the tokenizer does not give back the synthesised prompt's tokens")
    limits = [r.output_length for r in trace.requests]
    return texts, limits, prompt_sets.Workload(name, tuple(texts), params=params, max_tokens=tuple(limits))
