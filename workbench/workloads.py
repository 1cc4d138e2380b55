"""Versioned, hashed prompt sets. Pure: the same arguments give the same prompts and hash.

- `synthetic`: random token ids of a fixed length, like `mlx_lm.benchmark`'s prompts;
- `task`: the built-in retrieval task's prompts with references;
- `shared_prefix`: one long context reused by many questions (for prompt caching).

The hash goes into every result row, so rows measured on different prompts never mix.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field

from workbench import tasks

VERSION = 1


@dataclass(frozen=True)
class Workload:
    name: str
    prompts: tuple  # token-id lists (synthetic) or strings
    references: tuple = ()
    params: dict = field(default_factory=dict)
    version: int = VERSION

    @property
    def hash(self) -> str:
        payload = {
            "name": self.name,
            "version": self.version,
            "params": self.params,
            "prompts": list(self.prompts),
            "references": list(self.references),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.prompts)

    def token_prompts(self, tokenizer) -> list[list[int]]:
        return [list(p) if not isinstance(p, str) else tokenizer.encode(p) for p in self.prompts]


def synthetic(*, prompt_tokens: int, count: int = 1, vocab_size: int, seed: int = 0) -> Workload:
    """`count` prompts of `prompt_tokens` uniformly random token ids."""
    if prompt_tokens < 1 or count < 1 or vocab_size < 2:
        raise ValueError("synthetic workload needs prompt_tokens >= 1, count >= 1, vocab_size >= 2")
    rng = random.Random(f"synthetic-{seed}")
    prompts = tuple(tuple(rng.randrange(vocab_size) for _ in range(prompt_tokens)) for _ in range(count))
    return Workload(
        "synthetic",
        prompts,
        params={"prompt_tokens": prompt_tokens, "count": count, "vocab_size": vocab_size, "seed": seed},
    )


def task(name: str = "facts", *, count: int = 100, seed: int = 0) -> Workload:
    """Held-out items of a built-in task: prompts and reference answers."""
    if name not in tasks.TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(tasks.TASKS)}")
    items = tasks.make_items(count, seed=seed)
    return Workload(
        f"task:{name}",
        tuple(i.prompt for i in items),
        tuple(i.reference for i in items),
        params={"task": name, "count": count, "seed": seed},
    )


def shared_prefix(*, num_facts: int = 40, count: int = 8, seed: int = 0) -> Workload:
    """`count` questions about one shared context of `num_facts` facts (a long common prefix)."""
    rng = random.Random(f"shared-prefix-{seed}")
    num_facts = min(num_facts, len(tasks.NAMES))
    context, facts = tasks.make_context(rng, num_facts)
    asked = [facts[i % len(facts)] for i in range(count)]
    prompts = tuple(context + tasks.format_question(n, a) for n, a, _ in asked)
    return Workload(
        "shared_prefix",
        prompts,
        tuple(v for _, _, v in asked),
        params={"num_facts": num_facts, "count": count, "seed": seed, "prefix": context},
    )
