"""User files of prompts: JSONL, JSON, CSV and parquet rows, and ShareGPT-style conversations.

A benchmark on random tokens measures a model on traffic nobody sends; these readers turn a
user's own prompts into workload items (`workloads.dataset`) and eval items (`evalsets`).
Every problem with a file is one `DataError` line naming the file and the line or row, raised
before anything runs: missing file, unknown extension, not UTF-8, invalid JSON, a row without
`prompt`/`messages`, a wrong type, an empty set.

Formats, by extension:
- `.jsonl`: one JSON object per line (blank lines skipped); `.json`: one JSON array of objects;
- `.csv`: a header row; a `messages` cell holds a JSON list; an empty cell is an absent field;
- `.parquet`: read with polars; null is an absent field.

An item is a dict with exactly one of `prompt` (a non-empty string) and `messages` (a
non-empty list of `{"role": str, "content": str}`), and optionally `max_tokens` (a positive
integer). A ShareGPT row (`{"conversations": [{"from": "human"|"gpt"|"system", "value": str}, ...]}`)
becomes messages: `turns="first"` keeps the system turn and the first user turn; `turns="all"`
gives one item per user turn with the conversation so far (the recorded replies as assistant
turns), for multi-turn replay, each tagged with `conversation` and `turn` indices.

    from workbench.workloads import datasets
    items, sha256 = datasets.read_items("prompts.jsonl")

Bounds, so a hostile or broken file is one line, not a crash: a `.jsonl` file is read line by line and a line
over `MAX_LINE_BYTES` (16 MiB) is refused without reading the rest of it; whole-file formats are refused over
`MAX_FILE_BYTES` (256 MiB; convert to JSONL); JSON nested deeper than `MAX_JSON_DEPTH` (64) is refused; a
prompt of more than 20 characters per token of the model's context (`check_prompt_size`) is refused before it is
tokenized.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import itertools
import json
from pathlib import Path

from workbench.errors import DataError
from workbench.paths import read_capped

EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")
MAX_LINE_BYTES = 16 << 20
MAX_JSONL_BYTES = 1 << 30
MAX_FILE_BYTES = 256 << 20
MAX_JSON_DEPTH = 64
CHARS_PER_TOKEN_MAX = 20  # no tokenizer packs more characters into one token: beyond this a prompt cannot fit
FALLBACK_CONTEXT_TOKENS = 1 << 17  # when the model's context is not known here
TURNS = ("first", "all")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
SHAREGPT_ROLES |= {"chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant"}


def check_path(path: str | Path) -> Path:
    """The path of an existing file of a known type, or a `DataError`."""
    path = Path(path)
    if path.suffix.lower() not in EXTENSIONS:
        raise DataError(f"{path}: unknown file type {path.suffix or '(none)'!r}; use one of {', '.join(EXTENSIONS)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return path


def read_bytes(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes; a missing file, an unknown extension or a file over `max_bytes` is a `DataError`."""
    path = check_path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if size > max_bytes:
        limit = f"the {max_bytes >> 20} MiB limit for a {path.suffix} file"
        raise DataError(f"{path}: {size >> 20} MiB is over {limit} (convert it to JSONL)")
    return read_capped(path, max_bytes)


def jsonl_rows(path: Path) -> tuple[list[tuple[str, dict]], str]:
    """(where, row) pairs of a JSONL file read line by line, and the SHA-256 of its bytes; a line longer than
    `MAX_LINE_BYTES` is a `DataError` before the rest of it is read."""
    digest, rows, total = hashlib.sha256(), [], 0
    try:
        with path.open("rb") as handle:
            for number in itertools.count(1):
                line = handle.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                total += len(line)
                if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                    raise DataError(f"{path}:{number}: a line longer than {MAX_LINE_BYTES >> 20} MiB (no prompt is)")
                if total > MAX_JSONL_BYTES:
                    raise DataError(f"{path}: over the {MAX_JSONL_BYTES >> 20} MiB limit for a .jsonl file")
                digest.update(line)
                text = decode_text(path, line, first_line=number)
                if text.strip():
                    rows.append((f"{path}:{number}", loads(text, f"{path}:{number}")))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    return rows, digest.hexdigest()


def loads(text: str, where: str, *, invalid: str = "invalid JSON"):
    """`json.loads` with nesting capped at `MAX_JSON_DEPTH`; an invalid or too deep document is a `DataError`."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise DataError(f"{where}: JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        line = f" line {exc.lineno}" if exc.lineno > 1 else ""
        raise DataError(f"{where}: {invalid}{line} ({exc.msg})") from None
    if too_deep(value, MAX_JSON_DEPTH):
        raise DataError(f"{where}: JSON nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def too_deep(value, limit: int) -> bool:
    """The value nests lists or objects more than `limit` levels (walked without recursion)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def prompt_chars(item: dict) -> int:
    if "prompt" in item:
        return len(item["prompt"])
    return sum(len(m.get("content") or "") for m in item.get("messages") or [])


def check_prompt_size(item: dict, where: str, context_tokens: int | None) -> None:
    """Refuse, before tokenizing, a prompt that cannot fit: more than 20 characters per token of the context."""
    context = context_tokens or FALLBACK_CONTEXT_TOKENS
    chars = prompt_chars(item)
    if chars > CHARS_PER_TOKEN_MAX * context:
        known = f"the model's context of {context}" if context_tokens else f"a {context}-token context"
        raise DataError(f"{where}: a prompt of {chars} characters is certainly longer than {known} tokens")


def decode_text(path: Path, data: bytes, *, first_line: int = 1) -> str:
    try:
        return data.decode("utf-8-sig" if first_line == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + first_line
        raise DataError(f"{path}:{line}: not UTF-8 (byte {exc.start})") from None


def parse_rows(path: str | Path, data: bytes) -> list[tuple[str, dict]]:
    """(where, row) pairs from a file's bytes; `where` is `file:line` or `file:row N` for messages."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return parquet_rows(path, data)
    text = decode_text(path, data)
    if suffix == ".csv":
        return csv_rows(path, text)
    if suffix == ".json":
        value = loads(text, str(path))
        if not isinstance(value, list):
            raise DataError(f"{path}: a .json file must hold one array of objects (use .jsonl for one per line)")
        return [(f"{path}: item {i}", row) for i, row in enumerate(value, 1)]
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            rows.append((f"{path}:{number}", loads(line, f"{path}:{number}")))
    return rows


def csv_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    try:
        reader = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DataError(f"{path}: invalid CSV ({exc})") from None
    rows = []
    for number, record in enumerate(reader, 2):
        where = f"{path}:{number}"
        if None in record:
            raise DataError(f"{where}: more cells than the header has columns")
        row = {key: value for key, value in record.items() if value not in ("", None)}
        if "messages" in row:
            row["messages"] = loads(row["messages"], where, invalid="messages is not a JSON list")
        if "max_tokens" in row:
            text_value = row["max_tokens"].strip()
            row["max_tokens"] = int(text_value) if text_value.lstrip("-").isdigit() else text_value
        rows.append((where, row))
    return rows


def parquet_rows(path: Path, data: bytes) -> list[tuple[str, dict]]:
    import polars as pl

    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # polars raises several kinds for a corrupt file
        raise DataError(f"{path}: not a readable parquet file ({type(exc).__name__})") from None
    return [
        (f"{path}: row {i}", {k: v for k, v in row.items() if v is not None})
        for i, row in enumerate(frame.to_dicts(), 1)
    ]


def check_messages(messages, where: str) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: messages must be a non-empty list of {{role, content}}, got {type_name(messages)}")
    out = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not {"role", "content"} <= set(message):
            raise DataError(f"{where}: messages[{index}] must be an object with role and content")
        role, content = message["role"], message["content"]
        if not isinstance(role, str) or not role or not isinstance(content, str):
            raise DataError(f"{where}: messages[{index}] role and content must be strings")
        out.append({"role": role, "content": content})
    return out


def check_item(row, where: str) -> dict:
    """One validated item: `{"prompt": str}` or `{"messages": [...]}`, plus `max_tokens` when given.

    Other keys of the row are left to the caller (an eval set reads `reference`, `choices`...)."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: a row must be an object, got {type_name(row)}")
    has_prompt, has_messages = "prompt" in row, "messages" in row
    if has_prompt == has_messages:
        problem = "has both prompt and messages" if has_prompt else "has neither prompt nor messages"
        raise DataError(f"{where}: row {problem}")
    if has_prompt:
        if not isinstance(row["prompt"], str):
            raise DataError(f"{where}: prompt must be a string, got {type_name(row['prompt'])}")
        if not row["prompt"]:
            raise DataError(f"{where}: prompt is empty")
        item = {"prompt": row["prompt"]}
    else:
        item = {"messages": check_messages(row["messages"], where)}
    if "max_tokens" in row:
        value = row["max_tokens"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DataError(f"{where}: max_tokens must be a positive integer, got {value!r}")
        item["max_tokens"] = value
    return item


def sharegpt_items(row: dict, where: str, conversation: int, turns: str) -> list[dict]:
    turns_list = row["conversations"]
    if not isinstance(turns_list, list):
        raise DataError(f"{where}: conversations must be a list, got {type_name(turns_list)}")
    messages = []
    for index, turn in enumerate(turns_list):
        if not isinstance(turn, dict) or not all(isinstance(turn.get(key), str) for key in ("from", "value")):
            raise DataError(f"{where}: conversations[{index}] must be an object with string from and value")
        role = SHAREGPT_ROLES.get(turn["from"].lower())
        if role is None:
            raise DataError(f"{where}: conversations[{index}] has an unknown speaker {turn['from']!r}")
        messages.append({"role": role, "content": turn["value"]})
    items = []
    for index, message in enumerate(messages):
        if message["role"] == "user":
            items.append({"messages": messages[: index + 1], "conversation": conversation, "turn": len(items)})
            if turns == "first":
                break
    return items


def rows_to_items(rows: list[tuple[str, dict]], *, turns: str = "first") -> list[dict]:
    """Validated items from parsed rows; ShareGPT rows (`conversations`) are split into turns."""
    if turns not in TURNS:
        raise DataError(f"turns must be one of {', '.join(TURNS)}, got {turns!r}")
    items = []
    for conversation, (where, row) in enumerate(rows):
        if isinstance(row, dict) and "conversations" in row and not ({"prompt", "messages"} & set(row)):
            items.extend(sharegpt_items(row, where, conversation, turns))
        else:
            items.append(check_item(row, where))
    return items


_PARSED: dict = {}  # (path, SHA-256, turns) -> items, for the last few files read


def read_items(path: str | Path, *, turns: str = "first") -> tuple[list[dict], str]:
    """Every item of a prompt file (validated) and the SHA-256 of the file's bytes.

    Parsed items are kept by (path, SHA-256, turns), so validating a config and then running it validates once."""
    rows, sha256 = read_rows(path, allow_empty=True)
    key = (str(path), sha256, turns)
    if key not in _PARSED:
        items = rows_to_items(rows, turns=turns)
        if not items:
            raise DataError(f"{path}: no prompts in the file")
        while len(_PARSED) >= 4:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = tuple(items)
    return copy.deepcopy(list(_PARSED[key])), sha256


def read_rows(path: str | Path, *, allow_empty: bool = False) -> tuple[list[tuple[str, dict]], str]:
    """Raw rows of a JSONL/JSON/CSV/parquet file as (where, row) pairs, and the SHA-256 of its bytes; for readers
    that want their own keys (eval sets) and validate the prompt part with `check_item(row, where)`."""
    path = check_path(path)
    if path.suffix.lower() == ".jsonl":
        rows, sha256 = jsonl_rows(path)
    else:
        data = read_bytes(path)
        rows, sha256 = parse_rows(path, data), hashlib.sha256(data).hexdigest()
    if not rows and not allow_empty:
        raise DataError(f"{path}: the file has no rows")
    return rows, sha256


def type_name(value) -> str:
    return "null" if value is None else type(value).__name__
