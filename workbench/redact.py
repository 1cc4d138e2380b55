"""Secrets never leave the process: credentials in a URL are redacted wherever text is printed or stored.

A target or Redis URL may carry `user:password@` (or a bare token as `user@`). Every message, row, `params.yaml`,
`env.json`, log and report shows it as `user:***@host`: `redact_text` rewrites any URL in a string,
`redact` walks dicts, lists and tuples. Credentials are better passed without the URL at all:
`--api-key-env NAME` (a bearer token read from the environment variable NAME) for endpoints, `redis_url_env` for
Redis (docs/endpoints.md, "Credentials").

    redact_text("http://me:s3cret@host:8080/v1")  # -> "http://me:***@host:8080/v1"
"""

from __future__ import annotations

import re
from typing import Any

# scheme://userinfo@ : userinfo is everything up to the last '@' before the host (no '/', '?', '#' or space)
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s@'\"]*)@")


def _mask(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    if not colon:  # `token@host`: the whole userinfo may be the secret
        return f"{match['scheme']}***@"
    return f"{match['scheme']}{user}:***@"


def redact_text(text: str) -> str:
    """`text` with the password (or token) of every URL in it replaced by `***`."""
    if "@" not in text or "://" not in text:
        return text
    return _CREDENTIALS.sub(_mask, text)


def redact(value: Any) -> Any:
    """`value` with `redact_text` applied to every string in it (dicts, lists and tuples walked; keys too)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact(k): redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value


def has_credentials(url: str) -> bool:
    return redact_text(url) != url
