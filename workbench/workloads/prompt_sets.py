"""Versioned, hashed prompt sets. Pure: the same arguments give the same prompts and hash.

- `synthetic`: random token ids, like `mlx_lm.benchmark`'s prompts; prompt and output lengths
  fixed or drawn from a distribution (`Lengths`: fixed, uniform, normal with min/max, as
  GuideLLM's `prompt_tokens_stdev/min/max` and `vllm bench`'s random dataset), optionally with
  `prefix_groups` shared prefixes of `prefix_tokens` (GuideLLM's `prefix_tokens`, `vllm bench`'s
  prefix-repetition dataset);
- `dataset`: a user's file (`workbench.workloads.datasets`: JSONL, JSON, CSV, parquet, ShareGPT), each
  row rendered to token ids with `workbench.workloads.chat.render` (chat templates), filtered by
  rendered length and limited;
- `task`: the built-in retrieval task's prompts with references;
- `shared_prefix`: one long context reused by many questions (for prompt caching).

A `Workload` holds, index for index:
- `prompts`: token-id tuples (synthetic, dataset: the rendered prompt the model sees) or strings;
- `items`: for a file, the rows as read, `{"prompt": str}` or `{"messages": [{"role", "content"}, ...]}`
  with `max_tokens` when the row gave it (and `conversation`, `turn` for ShareGPT turns), so an
  endpoint client can send messages to /v1/chat/completions and raw text to /v1/completions;
  empty for synthetic prompts;
- `max_tokens`: each request's generation limit (None: the caller's `gen_tokens`); empty: all None;
- `chat_template`: whether a chat template rendered each prompt; empty when none was asked for.

The hash goes into every result row, so rows measured on different prompts never mix; for a
file it covers the file's bytes (SHA-256), the options and the rendered token ids.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import DataError
from workbench.workloads import tasks
from workbench.workloads.options import DATASET_ONLY, OPTIONS, SYNTHETIC_ONLY, WorkloadOptions
from workbench.workloads.options import add_arguments as add_option_arguments

if TYPE_CHECKING:
    from mlx_lm.tokenizer_utils import TokenizerWrapper

VERSION = 1


@dataclass(frozen=True)
class Workload:
    name: str
    prompts: tuple[Any, ...]  # token-id lists (synthetic) or strings
    references: tuple[Any, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION
    items: tuple[Any, ...] = ()
    max_tokens: tuple[Any, ...] = ()
    chat_template: tuple[Any, ...] = ()

    @property
    def hash(self) -> str:
        payload = {
            "name": self.name,
            "version": self.version,
            "params": self.params,
            "prompts": list(self.prompts),
            "references": list(self.references),
        }
        for key in ("items", "max_tokens", "chat_template"):  # absent when empty: older hashes stay valid
            if getattr(self, key):
                payload[key] = list(getattr(self, key))
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def generation_limits(self, gen_tokens: int) -> list[int]:
        """Each request's number of tokens to generate: its own `max_tokens`, else `gen_tokens`."""
        limits = self.max_tokens or (None,) * len(self.prompts)
        return [gen_tokens if limit is None else int(limit) for limit in limits]

    def request_facts(self, index: int) -> dict[str, Any]:
        """Row columns that describe request `index` of the workload (whether a chat template rendered it)."""
        return {"chat_template": bool(self.chat_template[index])} if self.chat_template else {}

    def __len__(self) -> int:
        return len(self.prompts)

    def token_prompts(self, tokenizer: TokenizerWrapper) -> list[list[int]]:
        return [list(p) if not isinstance(p, str) else tokenizer.encode(p) for p in self.prompts]


@dataclass(frozen=True)
class Lengths:
    """A distribution of token counts: `fixed:N`, `uniform:MIN,MAX` (inclusive) or `normal:MEAN,SD,MIN,MAX`
    (rounded to the nearest integer and clipped to [MIN, MAX], as GuideLLM and `vllm bench` clip)."""

    kind: str
    low: int
    high: int
    mean: float = 0.0
    sd: float = 0.0

    @classmethod
    def parse(cls, spec: int | str | Lengths) -> Lengths:
        """`128`, `"fixed:128"`, `"uniform:64,256"` or `"normal:128,32,16,512"`; a `ValueError` names the problem."""
        if isinstance(spec, Lengths):
            return spec
        if isinstance(spec, int) and not isinstance(spec, bool):
            spec = str(spec)
        if not isinstance(spec, str):
            raise ValueError(f"a length distribution is a string such as 'uniform:64,256', got {spec!r}")
        kind, _, rest = spec.strip().partition(":")
        if not rest:
            kind, rest = "fixed", kind
        try:
            numbers = [float(x) for x in rest.split(",")]
        except ValueError:
            raise ValueError(f"{spec!r}: the numbers after {kind!r} must be numbers") from None
        arity = {"fixed": 1, "uniform": 2, "normal": 4}
        if kind not in arity:
            raise ValueError(f"{spec!r}: use fixed:N, uniform:MIN,MAX or normal:MEAN,SD,MIN,MAX")
        if len(numbers) != arity[kind]:
            raise ValueError(f"{spec!r}: {kind} takes {arity[kind]} number(s)")
        if kind == "normal":
            mean, sd, low, high = numbers
        else:
            low, high = numbers[0], numbers[-1]
            mean, sd = (low + high) / 2, 0.0
        if low != int(low) or high != int(high) or not 1 <= low <= high or sd < 0 or not math.isfinite(mean):
            raise ValueError(f"{spec!r}: need whole numbers 1 <= MIN <= MAX and SD >= 0")
        return cls(kind, int(low), int(high), mean, sd)

    @property
    def spec(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.low}"
        if self.kind == "uniform":
            return f"uniform:{self.low},{self.high}"
        return f"normal:{self.mean:g},{self.sd:g},{self.low},{self.high}"

    def sample(self, rng: random.Random, count: int) -> list[int]:
        if self.kind == "fixed":
            return [self.low] * count
        if self.kind == "uniform":
            return [rng.randint(self.low, self.high) for _ in range(count)]
        return [min(self.high, max(self.low, round(rng.gauss(self.mean, self.sd)))) for _ in range(count)]


def synthetic(
    *,
    prompt_tokens: int | str | Lengths,
    count: int = 1,
    vocab_size: int,
    seed: int = 0,
    gen_tokens: int | str | Lengths | None = None,
    prefix_tokens: int = 0,
    prefix_groups: int = 1,
) -> Workload:
    """`count` prompts of uniformly random token ids. `prompt_tokens` (a count or a `Lengths` spec) is each prompt's
    own length; with `prefix_tokens`, prompt i starts with shared prefix i % `prefix_groups` of that many tokens.
    `gen_tokens` (a `Lengths` spec), when given, draws each request's `max_tokens`."""
    if count < 1 or vocab_size < 2 or prefix_tokens < 0 or prefix_groups < 1:
        raise ValueError("synthetic workload needs count >= 1, vocab_size >= 2, prefix_tokens >= 0, prefix_groups >= 1")
    lengths = Lengths.parse(prompt_tokens)
    rng = random.Random(f"synthetic-{seed}")
    sizes = lengths.sample(random.Random(f"synthetic-lengths-{seed}"), count)
    suffixes = [tuple(rng.randrange(vocab_size) for _ in range(size)) for size in sizes]
    params: dict[str, Any] = {"prompt_tokens": lengths.low, "count": count, "vocab_size": vocab_size, "seed": seed}
    if lengths.kind != "fixed":
        params["prompt_tokens"] = lengths.spec
    max_tokens: tuple[int, ...] = ()
    if gen_tokens is not None:
        gen = Lengths.parse(gen_tokens)
        max_tokens = tuple(gen.sample(random.Random(f"synthetic-gen-{seed}"), count))
        params["gen_tokens"] = gen.spec
    if prefix_tokens:
        prefix_rng = random.Random(f"synthetic-prefix-{seed}")
        prefixes = [tuple(prefix_rng.randrange(vocab_size) for _ in range(prefix_tokens)) for _ in range(prefix_groups)]
        suffixes = [prefixes[i % prefix_groups] + suffix for i, suffix in enumerate(suffixes)]
        params |= {"prefix_tokens": prefix_tokens, "prefix_groups": prefix_groups}
    return Workload("synthetic", tuple(suffixes), params=params, max_tokens=max_tokens)


def dataset(
    path: str | Path,
    *,
    tokenizer: TokenizerWrapper,
    options: WorkloadOptions | None = None,
    seed: int = 0,
    context_tokens: int | None = None,
) -> Workload:
    """The prompts of a user's file rendered for `tokenizer` (`chat.render`: `options.chat` auto/on/off), in file
    order or shuffled with `seed` (`dataset_order="shuffle"`), kept when the rendered length is within
    [min, max]_prompt_tokens, at most `dataset_limit` of them (the dataset fields of `options`). A file problem, or
    nothing left after the filters, is a `DataError` (one line); so is a prompt too long for `context_tokens` by its
    characters alone, before it is tokenized (`datasets.check_prompt_size`)."""
    from workbench.workloads import chat as chat_module
    from workbench.workloads import datasets

    o = options or WorkloadOptions()
    chat, turns, limit, order = o.chat, o.dataset_turns, o.dataset_limit, o.dataset_order
    min_prompt_tokens, max_prompt_tokens = o.min_prompt_tokens, o.max_prompt_tokens
    chat_module.check_chat_mode(chat)
    items, sha256 = datasets.read_items(path, turns=turns)
    if order == "shuffle":
        random.Random(f"dataset-{seed}").shuffle(items)
    kept, prompts, applied = [], [], []
    for index, item in enumerate(items):
        datasets.check_prompt_size(item, f"{path}: item {index + 1}", context_tokens)
        try:
            ids, templated = chat_module.render(
                tokenizer, prompt=item.get("prompt"), messages=item.get("messages"), chat=chat
            )
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        if (min_prompt_tokens and len(ids) < min_prompt_tokens) or (max_prompt_tokens and len(ids) > max_prompt_tokens):
            continue
        kept.append(item)
        prompts.append(tuple(ids))
        applied.append(templated)
        if limit and len(kept) >= limit:
            break
    if not kept:
        bounds = f"prompt tokens in [{min_prompt_tokens or 1}, {max_prompt_tokens or 'any'}]"
        raise DataError(f"{path}: no prompt of the file's {len(items)} has {bounds}")
    params = {"sha256": sha256, "chat": chat, "turns": turns, "limit": limit, "order": order}
    params |= {"min_prompt_tokens": min_prompt_tokens, "max_prompt_tokens": max_prompt_tokens}
    if order == "shuffle":
        params["seed"] = seed
    return Workload(
        f"dataset:{Path(path).name}",
        tuple(prompts),
        params=params,
        items=tuple(kept),
        max_tokens=tuple(item.get("max_tokens") for item in kept),
        chat_template=tuple(applied),
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


def chosen_options(source: object) -> dict[str, Any]:
    """The workload options an argparse namespace or a config sets away from their defaults."""
    values = {key: getattr(source, key, default) for key, default in OPTIONS.items()}
    return {key: value for key, value in values.items() if value != OPTIONS[key]}


def option_problem(options: dict[str, Any]) -> tuple[str, str] | None:
    """(option, problem) for an impossible combination of workload options, else None. Files are not read here."""
    options = {**OPTIONS, **options}
    for key in ("prompt_dist", "gen_dist"):
        if options[key] is not None:
            try:
                Lengths.parse(options[key])
            except ValueError as exc:
                return key, str(exc)
    wrong = SYNTHETIC_ONLY if options["dataset"] else DATASET_ONLY
    for key in wrong:
        if options[key] != OPTIONS[key]:
            return key, f"applies to {'dataset' if key in DATASET_ONLY else 'synthetic'} prompts only"
    if options["shared_prefix_groups"] > 1 and not options["shared_prefix_tokens"]:
        return "shared_prefix_groups", "needs shared_prefix_tokens > 0"
    low, high = options["min_prompt_tokens"], options["max_prompt_tokens"]
    if low and high and low > high:
        return "min_prompt_tokens", f"is above max_prompt_tokens ({high})"
    return None


def longest_synthetic(prompt_tokens: int, gen_tokens: int, options: dict[str, Any]) -> int:
    """The most tokens one synthetic request can hold (prefix, the longest prompt, the longest generation)."""
    options = {**OPTIONS, **options}
    prompt = Lengths.parse(options["prompt_dist"]).high if options["prompt_dist"] else prompt_tokens
    gen = Lengths.parse(options["gen_dist"]).high if options["gen_dist"] else gen_tokens
    return int(options["shared_prefix_tokens"]) + prompt + gen


def build(
    *, tokenizer: TokenizerWrapper, vocab_size: int, prompt_tokens: int, count: int, seed: int = 0, **options: Any
) -> Workload:
    """The workload that `workbench bench` and experiments' speed phase time: a user's file (`dataset`) or
    synthetic prompts (`count` of `prompt_tokens`, or `prompt_dist`; `gen_dist`; shared prefixes). `context_tokens`
    (the model's context, when known) bounds a dataset's prompts before they are tokenized."""
    context_tokens = options.pop("context_tokens", None)
    options = {**OPTIONS, **options}
    if options["dataset"]:
        chosen = WorkloadOptions.model_construct(**{name: options[name] for name in WorkloadOptions.model_fields})
        return dataset(
            options["dataset"], tokenizer=tokenizer, options=chosen, seed=seed, context_tokens=context_tokens
        )
    return synthetic(
        prompt_tokens=options["prompt_dist"] or prompt_tokens,
        count=count,
        vocab_size=vocab_size,
        seed=seed,
        gen_tokens=options["gen_dist"],
        prefix_tokens=options["shared_prefix_tokens"],
        prefix_groups=options["shared_prefix_groups"],
    )


def check_context(workload: Workload, gen_tokens: int, context: int | None) -> None:
    """Refuse a request whose prompt plus generation exceeds the model's context (`max_position_embeddings`)."""
    if not context:
        return
    for index, (prompt, limit) in enumerate(zip(workload.prompts, workload.generation_limits(gen_tokens))):
        if len(prompt) + limit > context:
            raise DataError(
                f"{workload.name}: request {index} would hold {len(prompt)} prompt + {limit} generated tokens; "
                f"the model's context is {context}"
            )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The workload flags of `workbench bench`: requests and seed, then one per `WorkloadOptions` field."""
    from workbench import console

    add = parser.add_argument
    add(
        "--requests",
        type=console.int_at_least(1, 100_000),
        help="synthetic prompts per trial: a run sends requests × trials (default: one batch; "
        "with --target max(8, 2 × concurrency))",
    )
    add("--seed", type=console.int_at_least(0), default=0, help="seeds synthetic prompts and --dataset-order shuffle")
    add_option_arguments(parser)
