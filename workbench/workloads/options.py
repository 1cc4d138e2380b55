"""The workload options, declared once: what the speed workload of a run is made of.

`WorkloadOptions` is a pydantic model whose fields are embedded (inherited) in every experiment's config, so a
params file keeps them as top-level keys (`dataset: my.jsonl`); `add_arguments` generates `workbench bench`'s
flags from the same fields (`--dataset`, `--dataset-limit`, ...), with their bounds, choices, defaults and help.
What each option does: docs/workloads.md.
"""

from __future__ import annotations

import argparse
import typing
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field


class WorkloadOptions(BaseModel):
    """Synthetic length distributions and shared prefixes, or a user's file of prompts."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    prompt_dist: str | None = Field(
        None, description="synthetic prompt lengths: fixed:N, uniform:MIN,MAX or normal:MEAN,SD,MIN,MAX"
    )
    gen_dist: str | None = Field(
        None, description="synthetic output lengths (max_tokens per request), same forms as --prompt-dist"
    )
    shared_prefix_tokens: int = Field(0, ge=0, le=32768, description="shared prefix length (tokens)")
    shared_prefix_groups: int = Field(1, ge=1, le=4096, description="distinct shared prefixes")
    dataset: str | None = Field(
        None, description="prompts from a .jsonl/.json/.csv/.parquet file (prompt or messages, max_tokens; ShareGPT)"
    )
    dataset_limit: int | None = Field(None, ge=1, description="at most N prompts (after the length filters)")
    dataset_order: Literal["file", "shuffle"] = Field("file", description="shuffle: seeded by --seed")
    dataset_turns: Literal["first", "all"] = Field("first", description="ShareGPT: first user turn, or every turn")
    min_prompt_tokens: int | None = Field(None, ge=1, description="keep dataset prompts of at least N rendered tokens")
    max_prompt_tokens: int | None = Field(None, ge=1, description="keep dataset prompts of at most N rendered tokens")
    chat: Literal["auto", "on", "off"] = Field("auto", description="auto: template for messages; on: also for prompts")


OPTIONS: dict[str, Any] = {name: field.default for name, field in WorkloadOptions.model_fields.items()}
DATASET_ONLY = ("dataset_limit", "dataset_order", "dataset_turns", "min_prompt_tokens", "max_prompt_tokens", "chat")
SYNTHETIC_ONLY = ("prompt_dist", "gen_dist", "shared_prefix_tokens", "shared_prefix_groups")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per `WorkloadOptions` field: `--name-with-dashes`, its type and bounds, choices and default."""
    from workbench import console

    for name, field in WorkloadOptions.model_fields.items():
        kwargs: dict[str, Any] = {"default": field.default, "help": field.description}
        kinds = [a for a in typing.get_args(field.annotation) if a is not type(None)] or [field.annotation]
        if typing.get_origin(field.annotation) is Literal:
            kwargs["choices"] = typing.get_args(field.annotation)
        elif int in kinds:
            low = next((int(m.ge) for m in field.metadata if isinstance(m, annotated_types.Ge)), 0)  # type: ignore[call-overload]
            high = next((int(m.le) for m in field.metadata if isinstance(m, annotated_types.Le)), None)  # type: ignore[call-overload]
            kwargs["type"] = console.int_at_least(low, high)
        parser.add_argument("--" + name.replace("_", "-"), **kwargs)
