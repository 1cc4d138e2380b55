"""`workbench bench --target URL`: the bench measurement against a served OpenAI-compatible endpoint.

Synthetic text prompts of `--prompt-tokens` tokens (random token ids of the model's tokenizer, decoded and
adjusted until the server's own `tokenizer.encode` gives that length; the server's `usage` records the real
count per row), `--gen-tokens` tokens each with the end-of-sequence token suppressed by `logit_bias`, sent at
`--concurrency` (closed loop) or `--rate` (Poisson); rows in the shared schema with `target` set.

    workbench bench --target http://127.0.0.1:8080 --model M --prompt-tokens 128 --gen-tokens 64 \
        --concurrency 4 --requests 32 [--rate 2] [--chat] [--timeout 60] [--json]
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field

import polars as pl

from workbench import paths, runtime
from workbench.endpoint.client import Target, check_target
from workbench.endpoint.load import Level, LoadOptions, run_levels
from workbench.endpoint.slo import lag_warning, short_output_warning
from workbench.errors import ModelError, UsageError
from workbench.measure import runs
from workbench.models import loader
from workbench.redact import redact_text
from workbench.results import store
from workbench.workloads import datasets, prompt_sets

WORDS = "time people year way day thing man world life hand part child eye woman place work week case point".split()


def load_tokenizer(spec: str | None):
    """The tokenizer of a model spec that resolves to a local directory (presets included); None otherwise.
    Nothing is downloaded: a Hugging Face id that is not a local directory gives None."""
    if not spec:
        return None
    try:
        path, _ = loader.resolve(spec, build_missing=False)
    except ModelError:
        return None
    if isinstance(path, str) or not path.exists():
        return None
    from mlx_lm.tokenizer_utils import load

    return load(path)


def synthetic_texts(tokenizer, *, prompt_tokens: int, count: int, seed: int = 0, start: int = 0) -> list[str]:
    """`count` texts that `tokenizer.encode` (what mlx_lm.server applies to a completions prompt) turns into
    `prompt_tokens` tokens: random non-special ids, decoded, then trimmed or extended a few times to fit.
    Text `index` depends only on `seed` and `index` (`start` .. `start + count - 1`)."""
    specials = set(getattr(tokenizer, "all_special_ids", None) or []) | set(tokenizer.eos_token_ids or [])
    vocab = [i for i in range(tokenizer.vocab_size) if i not in specials]
    texts = []
    for index in range(start, start + count):
        rng = random.Random(f"endpoint-synthetic-{seed}-{index}")
        ids = [rng.choice(vocab) for _ in range(prompt_tokens)]
        for _ in range(10):
            text = tokenizer.decode(ids)
            length = len(tokenizer.encode(text))
            if length == prompt_tokens:
                break
            if length > prompt_tokens:
                ids = ids[: max(1, len(ids) - (length - prompt_tokens))]
            else:
                ids += [rng.choice(vocab) for _ in range(prompt_tokens - length)]
        texts.append(text)
    return texts


def word_texts(*, prompt_tokens: int, count: int, seed: int = 0) -> list[str]:
    """Without a tokenizer: `prompt_tokens` common English words (about one token each; the rows hold the real
    counts the server reports)."""
    rng = random.Random(f"endpoint-words-{seed}")
    return [" ".join(rng.choice(WORDS) for _ in range(prompt_tokens)) for _ in range(count)]


def warmup_texts(tokenizer, *, prompt_tokens: int, count: int, measured: int, seed: int = 0) -> list[str]:
    """Prompts for the unrecorded warm-up requests, none of them a measured one: mlx_lm.server keeps a warm-up's
    KV in its prompt cache, and a measured request on the same prompt would then prefill 1 token, not 128."""
    if tokenizer is not None:
        return synthetic_texts(tokenizer, prompt_tokens=prompt_tokens, count=count, seed=seed, start=measured)
    return word_texts(prompt_tokens=prompt_tokens, count=measured + count, seed=seed)[measured:]


def endpoint_workload(
    tokenizer, *, prompt_tokens: int, gen_tokens: int, count: int, seed: int = 0, options: dict | None = None
) -> tuple[list, list[int], prompt_sets.Workload, str]:
    """(prompts to send, each request's max_tokens, the workload for the rows, where the prompts came from).

    A `dataset` sends its rows as read: chat messages go to /v1/chat/completions (the server applies the
    template), raw text to /v1/completions; the tokenizer renders them only to filter by length and hash them.
    Other synthetic options (length distributions, shared prefixes) send the token prompts decoded to text (the
    server's `usage` records the counts it saw); plain fixed-length prompts are fitted to exactly
    `prompt_tokens` tokens (`synthetic_texts`)."""
    options = options or {}
    if (
        options.get("dataset")
        or options.get("prompt_dist")
        or options.get("gen_dist")
        or options.get("shared_prefix_tokens")
    ):
        if tokenizer is None:
            raise UsageError("--dataset and synthetic distributions with --target need a local --tokenizer")
        workload = prompt_sets.build(
            tokenizer=tokenizer,
            vocab_size=tokenizer.vocab_size,
            prompt_tokens=prompt_tokens,
            count=count,
            seed=seed,
            **options,
        )
        if workload.items:
            prompts = [item.get("messages") or item["prompt"] for item in workload.items]
            return prompts, workload.generation_limits(gen_tokens), workload, "dataset"
        prompts = [tokenizer.decode(list(p)) for p in workload.prompts]
        return prompts, workload.generation_limits(gen_tokens), workload, "tokenizer"
    if tokenizer is not None:
        texts, source = synthetic_texts(tokenizer, prompt_tokens=prompt_tokens, count=count, seed=seed), "tokenizer"
    else:
        texts, source = word_texts(prompt_tokens=prompt_tokens, count=count, seed=seed), "words"
    workload = prompt_sets.Workload("endpoint:synthetic", tuple(texts), params={"prompt_tokens": prompt_tokens})
    return texts, [gen_tokens] * len(texts), workload, source


def served_model(url: str, spec: str | None, access: dict | None = None) -> str:
    """The name to send: `spec` as served, or the served directory `spec` resolves to here (a preset such as
    `nano`, served by mlx_lm.server under its absolute path), or the only served model when `spec` is None.
    `access`: `api_key_env` and `follow_redirects` (`Target.access`)."""
    try:
        return check_target(url, spec, access=access)
    except ModelError:
        try:
            path, _ = loader.resolve(spec, build_missing=False) if spec else (None, None)
        except ModelError:
            path = None
        if path is None or isinstance(path, str):
            raise
        return check_target(url, str(path), access=access)


EXIT_ALL_FAILED = 3


def all_failed_warning(summary: dict) -> str | None:
    """A one-line warning when every request failed (error rate 1.0): the figures describe no reply at all."""
    if not summary.get("requests") or summary.get("error_rate") != 1.0:
        return None
    return (
        f"every one of the {summary['requests']} requests failed (error rate 1.0; commonest: "
        f"{summary.get('top_error')}); pass --allow-errors to accept such a run"
    )


def bench_levels(concurrency: int | list[int] = 1, rate: float | list[float] | None = None) -> list[Level]:
    """The load levels of one bench: each rate (Poisson, open loop), else each concurrency (1 is synchronous)."""
    rates = [rate] if isinstance(rate, (int, float)) else list(rate or [])
    if rates:
        return [Level("rate", float(r)) for r in rates]
    values = [concurrency] if isinstance(concurrency, int) else list(concurrency)
    return [Level("synchronous" if c == 1 else "concurrency", c) for c in values]


@dataclass(frozen=True)
class BenchOptions:
    """What one `bench --target` run sends: the workload, the load levels and how to reach the server."""

    prompt_tokens: int = 128
    gen_tokens: int = 64
    concurrency: int | list[int] = 1
    rate: float | list[float] | None = None
    requests: int | None = None
    chat: bool = False
    timeout_s: float = 60.0
    tokenizer: str | None = None
    trials: int = 1
    warmup: int = 1
    seed: int = 0
    workload_options: dict | None = None
    access: dict = field(default_factory=dict)  # `api_key_env` and `follow_redirects` (`Target.access`)


def run_endpoint_bench(
    url: str, model: str | None = None, options: BenchOptions | None = None, *, run_id: str | None = None
) -> tuple:
    """Measure the endpoint at each level of `concurrency` (or `rate`); (rows in the shared schema, summary).
    `requests` prompts are sent per trial at every level. The summary's figures are the one level's, or, for
    several levels, per level under `levels`. Checks the target first (one-line errors)."""
    from workbench.endpoint.slo import summarise

    o = options or BenchOptions()
    name = served_model(url, model, o.access)
    tok = load_tokenizer(o.tokenizer or model or name)
    if o.tokenizer and tok is None:
        raise ModelError(f"tokenizer {o.tokenizer!r} is not a preset or a local model directory")
    levels = bench_levels(o.concurrency, o.rate)
    count = o.requests or max(8, 2 * max(int(level.value) for level in levels))
    shape = {"prompt_tokens": o.prompt_tokens, "gen_tokens": o.gen_tokens, "seed": o.seed}
    texts, limits, workload, source = endpoint_workload(tok, count=count, options=o.workload_options, **shape)
    eos = sorted(tok.eos_token_ids or []) if tok is not None else []
    context = model_context(o.tokenizer or model or name)
    target = Target(url=url, model=name, chat=o.chat, timeout_s=o.timeout_s, eos_token_ids=eos, **o.access)
    target.context_tokens = context
    warm = warmup_texts(tok, prompt_tokens=o.prompt_tokens, count=o.warmup, measured=count, seed=o.seed)
    params = {
        "prompt_tokens": o.prompt_tokens,
        "gen_tokens": o.gen_tokens,
        "concurrency": o.concurrency,
        "rate": o.rate,
    }
    params |= {"requests": count, "chat": o.chat, "timeout_s": o.timeout_s, "trials": o.trials, "warmup": o.warmup}
    run_id = run_id or store.new_run_id("bench")
    try:
        level_results = run_levels(
            target,
            texts,
            levels,
            LoadOptions(max_tokens=limits, trials=o.trials, warmup=o.warmup, warmup_prompts=warm, seed=o.seed),
        )
    except BaseException as exc:  # a fault (ours, or Ctrl-C): the rows measured so far are kept first
        partial = {"baseline": getattr(exc, "rows_so_far", [])}
        store.rescue_partial(partial, run_id=run_id, experiment="bench", params=params)
        raise
    rows = [{**row, **workload.request_facts(row["request_index"])} for r in level_results for row in r.rows]
    frame = bench_frame(rows, target=target, workload=workload, params=params, run_id=run_id)
    shown = redact_text(target.base_url)
    summary = {"target": shown, "model_id": name, "prompts": source, "eos_suppressed": bool(eos)}
    summary |= {"requests_per_trial": count, "trials": o.trials}
    per_level = [{**summarise(r.rows, gen_tokens=o.gen_tokens), "unsent": r.unsent} for r in level_results]
    if len(per_level) == 1:
        summary |= summarise(rows, gen_tokens=o.gen_tokens)
    summary["levels"] = per_level
    summary["unsent"] = sum(r.unsent for r in level_results)
    return frame, summary


def bench_frame(rows: list[dict], *, target: Target, workload, params: dict, run_id: str | None) -> pl.DataFrame:
    """The rows of a `bench --target` run in the shared schema (the served model is its `model_id`)."""
    identity = {
        "run_id": run_id or store.new_run_id("bench"),
        "experiment": "bench",
        "variant": "baseline",
        "params_json": params,
        "family": "baseline",
        "changes_json": "{}",
        "model_id": target.model,
        "workload": workload.name,
        "workload_hash": workload.hash,
        "target": redact_text(target.base_url),
    }
    return store.to_frame(rows, **identity)


def model_context(spec: str | None) -> int | None:
    """`max_position_embeddings` of a model spec that resolves to a local directory; None otherwise."""
    import json

    try:
        path, _ = loader.resolve(spec, build_missing=False) if spec else (None, None)
    except ModelError:
        return None
    if path is None or isinstance(path, str) or not (path / "config.json").is_file():
        return None
    return json.loads((path / "config.json").read_text()).get("max_position_embeddings")


LEVEL_COLUMNS = ("ttft_s", "ttft_s_p90", "tpot_s", "itl_s_p50", "e2e_s", "throughput_tps", "throughput_rps")


def levels_table(summary: dict, *, prompt_tokens: int, gen_tokens: int) -> str:
    """One line per load level, as GuideLLM's console summary: latencies in ms, throughput, errors."""
    from workbench import terminal

    rows = []
    for level in summary["levels"]:
        load = level["profile"] if level["profile"] == "synchronous" else f"{level['profile']} {level['level']:g}"
        errors = terminal.value("error_rate", level["error_rate"])
        if level.get("top_error"):
            errors += f" ({level['top_error']})"
        rows.append([load, *[terminal.value(c, level.get(c)) for c in LEVEL_COLUMNS], errors])
    headers = ["load", *[terminal.header("itl_s" if c == "itl_s_p50" else c) for c in LEVEL_COLUMNS], "errors\n%"]
    trials = summary["trials"]
    title = (
        f"{summary['model_id']} at {summary['target']}: {prompt_tokens} prompt + {gen_tokens} output tokens, "
        f"{summary['requests_per_trial']} requests × {trials} trial{'s' if trials != 1 else ''} per level"
    )
    note = {"tokenizer": "prompts fitted to the model's tokenizer", "words": "prompts of common words (no tokenizer)"}
    caption = note.get(summary["prompts"], f"prompts from the {summary['prompts']}")
    caption += "; EOS suppressed" if summary["eos_suppressed"] else "; EOS not suppressed"
    return terminal.render(headers, rows, title=title, caption=caption)


def main(args) -> int:
    """The `--target` branch of `workbench bench` (`args` parsed by `workbench.measure.bench.setup_arg_parser`)."""
    if args.rate and args.concurrency != [1]:
        raise UsageError("workbench bench: give --concurrency or --rate levels, not both")
    if not args.timeout > 0:
        raise UsageError(f"workbench bench: --timeout must be > 0, got {args.timeout}")
    workload_options = prompt_sets.chosen_options(args)
    synthetic_chat = {key: value for key, value in workload_options.items() if key != "chat"}  # --chat on: chat API
    if problem := prompt_sets.option_problem(synthetic_chat if not args.dataset else workload_options):
        raise UsageError(f"--{problem[0].replace('_', '-')}: {problem[1]}")
    if args.dataset:
        datasets.read_items(args.dataset, turns=args.dataset_turns)  # a bad file: one line, before anything is written
    if not args.no_save:
        paths.check_writable(paths.outputs_dir() / "runs")
    load_before = runtime.load_average()
    options = BenchOptions(
        prompt_tokens=args.prompt_tokens,
        gen_tokens=args.gen_tokens,
        concurrency=args.concurrency[0] if len(args.concurrency) == 1 else args.concurrency,
        rate=(args.rate[0] if len(args.rate) == 1 else args.rate) if args.rate else None,
        requests=args.requests,
        chat=args.chat == "on",
        timeout_s=args.timeout,
        tokenizer=args.tokenizer,
        trials=args.trials,
        warmup=args.warmup,
        workload_options=workload_options,
        access={"api_key_env": args.api_key_env, "follow_redirects": args.follow_redirects},
    )
    frame, summary = run_endpoint_bench(args.target, args.model, options)
    if summary["prompts"] == "words":
        print("note: no local tokenizer: prompts are common words and EOS is not suppressed", file=sys.stderr)
    warnings = [short_output_warning(level, args.gen_tokens) for level in summary["levels"]] + [lag_warning(summary)]
    for warning in filter(None, warnings):
        print(f"warning: {warning}", file=sys.stderr)
    text = levels_table(summary, prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens)
    runs.save_and_print(args, frame, summary, command="bench", load_before=load_before, text=text)
    failed = all_failed_warning(summary)
    if failed and not args.allow_errors:
        print(f"warning: {failed}", file=sys.stderr)
        return EXIT_ALL_FAILED
    return 0
