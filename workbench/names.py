"""Human names for configurations, built from what each variant declares it changes ("8-bit weights, batch 8"),
never from its code name; a sweep point's `label:` wins. The terminal tables, the report and the dashboard all
call `configuration_name`, so a configuration reads the same everywhere; its point id goes to an "id" column.

    configuration_name({"bits": 8, "group_size": 64, "batch_size": 8})  # '8-bit weights, batch 8'
"""

from __future__ import annotations

import json
from typing import Any

BASELINE = "baseline"
DEFAULT_GROUP_SIZE = 64
SERVER_WORDS = {
    "decode_concurrency": "decode concurrency {}",
    "prompt_concurrency": "prompt concurrency {}",
    "prefill_step_size": "prefill step {}",
    "prompt_cache_size": "prompt cache {}",
    "prompt_cache_bytes": "prompt cache {}",
    "kv_bits": "{}-bit KV cache",
    "num_draft_tokens": "{} draft tokens",
    "draft_model": "draft {}",
    "max_tokens": "max tokens {}",
}
_QUIET = {"group_size", "method", "recipe", "kv_group_size", "quantized_kv_start", "speculative", "mode", "served"}


def _weights(changes: dict[str, Any]) -> str:
    words = f"{changes['bits']}-bit weights"
    details = []
    if changes.get("method") not in (None, "affine"):
        details.append(str(changes["method"]).upper() if changes["method"] in ("gptq", "awq") else changes["method"])
    if changes.get("group_size") not in (None, DEFAULT_GROUP_SIZE):
        details.append(f"group {changes['group_size']}")
    if changes.get("recipe"):
        details.append(f"recipe {changes['recipe']}")
    return f"{words} ({', '.join(details)})" if details else words


def _served(changes: dict[str, Any]) -> list[str]:
    server = changes.get("server") or {}
    parts = ["served"]
    if changes.get("server_model"):
        parts.append(f"model {changes['server_model']}")
    for key, setting in server.items() if isinstance(server, dict) else []:
        parts.append(SERVER_WORDS.get(key, f"{key.replace('_', ' ')} {{}}").format(setting))
    if len(parts) == 1 and not changes.get("target"):
        parts[0] = "served, mlx_lm.server defaults"
    return parts


def describe(changes: dict[str, Any]) -> list[str]:
    """The parts of a name, one per declared change, in a fixed order."""
    parts = []
    if changes.get("bits"):
        parts.append(_weights(changes))
    if changes.get("kv_bits"):
        parts.append(f"{changes['kv_bits']}-bit KV cache")
    if changes.get("batch_size"):
        parts.append(f"batch {changes['batch_size']}")
    if changes.get("mode") == "continuous":
        arrival = changes.get("arrival")
        parts.append("continuous batching" + (f" ({arrival})" if arrival else ""))
    if changes.get("draft") or changes.get("num_draft_tokens"):
        details = [f"draft {changes['draft']}"] if changes.get("draft") else []
        details += [f"{changes['num_draft_tokens']} tokens"] if changes.get("num_draft_tokens") else []
        parts.append("speculative" + (f" ({', '.join(details)})" if details else ""))
    if changes.get("prompt_cache"):
        parts.append(f"prompt cache ({changes['prompt_cache']})")
    if changes.get("response_cache"):
        parts.append(f"response cache ({changes['response_cache']})")
    if changes.get("student"):
        parts.append(f"distilled {changes['student']} (α {changes.get('alpha')})")
    if changes.get("tiers"):
        parts.append("tiered models")
    if changes.get("served"):
        parts.extend(_served(changes))
    known = {"bits", "kv_bits", "batch_size", "draft", "num_draft_tokens", "prompt_cache", "response_cache"}
    known |= {"student", "alpha", "temperature", "steps", "tiers", "thresholds", "server", "server_model", "target"}
    known |= {"arrival"}
    for key in sorted(set(changes) - known - _QUIET):
        parts.append(f"{key.replace('_', ' ')} {changes[key]}")
    return parts


def configuration_name(
    changes: dict[str, Any] | str | None,
    *,
    family: str | None = None,
    variant: str | None = None,
    label: str | None = None,
) -> str:
    """'8-bit weights, batch 8' from a variant's declared `changes` (a dict or its `changes_json`); `label` when
    given; 'baseline' for the reference, 'baseline (A/A copy)' for a copy of it; the code name `variant` when
    nothing was declared (older rows). A point's `label` never renames the run's baseline."""
    if label and variant != BASELINE:  # a point's label names what the point measures, not its baseline
        return str(label)
    declared: dict[str, Any] | None = json.loads(changes or "{}") if isinstance(changes, str) else changes
    if declared is None:  # not declared (older rows, or a frame without the column): the declared family helps
        if family == BASELINE and variant not in (None, BASELINE):
            return "baseline (A/A copy)"
        return variant or "unknown"
    parts = describe(declared)
    if parts:
        return ", ".join(parts)
    if family == BASELINE or variant == BASELINE:
        return BASELINE if variant in (None, BASELINE) else "baseline (A/A copy)"
    return variant or BASELINE
