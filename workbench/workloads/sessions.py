"""Multi-turn chat sessions read from a file: the user turns to replay live, in order. Pure.

`--dataset-turns all` sends each user turn as an independent request whose history is the *recorded*
conversation; a live session (`workbench.endpoint.sessions`) sends turn k+1 only after turn k's reply, with the
server's actual reply in its history. What a file gives is therefore only each session's leading system
messages and its user turns; recorded assistant replies are dropped.

Rows, by extension JSONL / JSON / CSV / parquet (`workloads.datasets.parse_rows`), one session each:
- ShareGPT: `{"conversations": [{"from": "human"|"gpt"|"system", "value": str}, ...]}`;
- messages: `{"messages": [{"role", "content"}, ...]}`, or a bare JSON list of messages on a JSONL line;
- optional `id` or `session_id` (else `s<row number>`) and `max_tokens` (every turn's reply length).

A row that is none of these, a message without role and content, or a session without a user turn is one
`DataError` naming the file and line.

    sessions, sha256 = read_sessions("chats.jsonl")
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from workbench.errors import DataError
from workbench.workloads import datasets, prompt_sets


@dataclass(frozen=True)
class Session:
    session_id: str
    where: str
    system: tuple  # leading system messages, {"role": "system", "content": str}
    turns: tuple  # the user turns' contents, in order
    max_tokens: int | None = None


def row_messages(row, where: str) -> list[dict]:
    """A row's messages in `{"role", "content"}` form (ShareGPT speakers mapped as `datasets.SHAREGPT_ROLES`)."""
    if isinstance(row, list):
        return datasets.check_messages(row, where)
    if not isinstance(row, dict):
        raise DataError(f"{where}: a session must be an object or a list of messages, got {datasets.type_name(row)}")
    if "conversations" in row:
        turns = row["conversations"]
        if not isinstance(turns, list) or not turns:
            raise DataError(f"{where}: conversations must be a non-empty list")
        out = []
        for index, turn in enumerate(turns):
            if not isinstance(turn, dict) or not all(isinstance(turn.get(key), str) for key in ("from", "value")):
                raise DataError(f"{where}: conversations[{index}] must be an object with string from and value")
            role = datasets.SHAREGPT_ROLES.get(turn["from"].lower())
            if role is None:
                raise DataError(f"{where}: conversations[{index}] has an unknown speaker {turn['from']!r}")
            out.append({"role": role, "content": turn["value"]})
        return out
    if "messages" in row:
        return datasets.check_messages(row["messages"], where)
    raise DataError(f"{where}: a session row needs conversations (ShareGPT) or messages")


def parse_session(row, where: str, number: int) -> Session:
    messages = row_messages(row, where)
    system = []
    for message in messages:
        if message["role"] != "system":
            break
        system.append(message)
    turns = tuple(m["content"] for m in messages if m["role"] == "user")
    if not turns:
        raise DataError(f"{where}: the session has no user turn")
    if any(not text.strip() for text in turns):
        raise DataError(f"{where}: a user turn is empty")
    meta = row if isinstance(row, dict) else {}
    name = meta.get("session_id", meta.get("id", f"s{number}"))
    limit = meta.get("max_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise DataError(f"{where}: max_tokens must be a positive integer, got {limit!r}")
    return Session(str(name), where, tuple(system), turns, limit)


def read_sessions(path: str | Path, *, limit: int | None = None) -> tuple[list[Session], str]:
    """Every session of the file (the first `limit`), validated, and the SHA-256 of the file's bytes."""
    data = datasets.read_bytes(path)
    rows = datasets.parse_rows(path, data)
    sessions = [parse_session(row, where, number) for number, (where, row) in enumerate(rows, 1)]
    if not sessions:
        raise DataError(f"{path}: no sessions in the file")
    seen = set()
    for session in sessions:
        if session.session_id in seen:
            raise DataError(f"{session.where}: session id {session.session_id!r} repeats an earlier row's")
        seen.add(session.session_id)
    return sessions[:limit] if limit else sessions, hashlib.sha256(data).hexdigest()


def sessions_workload(path: str | Path, sessions: list[Session], sha256: str, **options) -> prompt_sets.Workload:
    """The workload the rows name: its hash covers the file's SHA-256, the sessions replayed and the options."""
    items = tuple(
        {"session_id": s.session_id, "system": list(s.system), "turns": list(s.turns), "max_tokens": s.max_tokens}
        for s in sessions
    )
    return prompt_sets.Workload(f"sessions:{Path(path).name}", (), params={"sha256": sha256, **options}, items=items)


class SessionsOptions(BaseModel):
    """A sessions file and how to replay it (`sessions:` in the endpoint experiment; the concurrencies are its
    `levels`)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    think_time_s: float = Field(0.0, ge=0, le=3600, description="seconds between a reply and the next turn")
    limit: int | None = Field(None, ge=1, description="only the first N sessions of the file")
