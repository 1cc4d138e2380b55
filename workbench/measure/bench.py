"""`workbench bench`: TTFT, ITL, TPOT, E2E, prefill/decode tok/s, throughput and memory of one model.

Synthetic fixed-length prompts (as `mlx_lm.benchmark`), synthetic length distributions and
shared prefixes, or a user's prompt file (`--dataset`, chat templates; docs/workloads.md),
timed by the one loop in `workbench.measure.timed`; returns (rows in the shared schema, summary)
and writes nothing; `main` writes a run folder.

    workbench bench --model default --prompt-tokens 128 --gen-tokens 64 --trials 3 [--json]
    workbench bench --model M --dataset prompts.jsonl --chat auto --dataset-limit 50 --gen-tokens 64
    workbench bench --target http://127.0.0.1:8080 --model M --concurrency 4 --requests 32   (workbench.endpoint)
    workbench bench --target URL --model M --trace mooncake.jsonl [--trace-speed 2]          (endpoint.replay)
    workbench bench --target URL --model M --sessions chats.jsonl --concurrency 8 --think-time 1 (endpoint.sessions)
"""

from __future__ import annotations

import json
import sys

import polars as pl
from pydantic import BaseModel, ConfigDict

from workbench import console, runtime
from workbench.errors import UsageError
from workbench.measure import runs, timed
from workbench.models import loader
from workbench.results import store
from workbench.workloads import chat, datasets, prompt_sets


class BenchSpec(BaseModel):
    """What `run_bench` times: `requests` synthetic prompts (default: one batch) of `prompt_tokens` per trial, sent
    `batch_size` at a time, or the prompts of `workload_options["dataset"]` (`workloads.options.OPTIONS`); and the
    identity its rows carry (`run_id`, `variant`). `dtype` applies to a model given as a spec."""

    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = 128
    gen_tokens: int = 64
    batch_size: int = 1
    trials: int = 3
    warmup: int = 1
    requests: int | None = None
    seed: int = 0
    run_id: str | None = None
    variant: str = "baseline"
    dtype: str = "auto"
    workload_options: dict | None = None


def run_bench(model: str | loader.LoadedModel, spec: BenchSpec | None = None) -> tuple[pl.DataFrame, dict]:
    """Speed rows of `spec` (`BenchSpec`) and their summary. A request generates its `max_tokens` (a dataset row's,
    or drawn from `gen_dist`) or `gen_tokens`, with EOS suppressed as in `mlx_lm.benchmark`."""
    spec = spec or BenchSpec()
    loaded = model if isinstance(model, loader.LoadedModel) else loader.load(model, dtype=spec.dtype)
    workload_options = spec.workload_options or {}
    workload = prompt_sets.build(
        tokenizer=loaded.tokenizer,
        vocab_size=loader.vocab_size(loaded),
        prompt_tokens=spec.prompt_tokens,
        count=spec.requests or spec.batch_size,
        seed=spec.seed,
        context_tokens=loaded.config.get("max_position_embeddings"),
        **workload_options,
    )
    prompt_sets.check_context(workload, spec.gen_tokens, loaded.config.get("max_position_embeddings"))
    records = timed.measure_generation(
        loaded.model,
        loaded.tokenizer,
        workload.token_prompts(loaded.tokenizer),
        timed.Schedule(trials=spec.trials, warmup=spec.warmup, batch_size=spec.batch_size),
        gen_tokens=workload.generation_limits(spec.gen_tokens),
    )
    rows = [
        {**r.to_row(), "kind": "speed", "load_s": loaded.load_s, **workload.request_facts(r.request_index)}
        for r in records
    ]
    params = {
        "prompt_tokens": spec.prompt_tokens,
        "gen_tokens": spec.gen_tokens,
        "batch_size": spec.batch_size,
        "trials": spec.trials,
        "warmup": spec.warmup,
        "seed": spec.seed,
        **workload_options,
    }
    replaced = {"dataset": "prompt_tokens", "prompt_dist": "prompt_tokens", "gen_dist": "gen_tokens"}
    for option in set(replaced) & set(workload_options):
        params.pop(replaced[option], None)  # the option, not this length, says what ran
    identity = {
        "run_id": spec.run_id or store.new_run_id("bench"),
        "experiment": "bench",
        "variant": spec.variant,
        "params_json": params,
        "family": "baseline",
        "changes_json": "{}",
    }
    frame = store.to_frame(rows, **identity, **store.model_identity(loaded, workload))
    summary = {
        "model_id": loaded.model_id,
        "backend": runtime.backend(),
        "dtype": getattr(loaded, "dtype", None),
        "load_s": loaded.load_s,
        **timed.run_summary(records),
    }
    return frame, summary


def setup_arg_parser() -> console.Parser:
    parser = console.parser("bench", "TTFT, ITL, TPOT, E2E and throughput on synthetic prompts")
    parser.add_argument(
        "--model", help="preset, mlx-lm directory or Hugging Face repo id (default: default); or the served name"
    )
    parser.add_argument("--prompt-tokens", type=console.int_at_least(1, 32768), default=128)
    parser.add_argument("--gen-tokens", type=console.int_at_least(1, 8192), default=64)
    parser.add_argument("--batch", dest="batch_size", type=console.int_at_least(1, 1024), default=1)
    parser.add_argument(
        "--dtype", choices=loader.DTYPES, default="auto", help="auto: float32 on CPU, else the checkpoint's"
    )
    parser.add_argument("--trials", type=console.int_at_least(1, 100), default=3)
    parser.add_argument("--warmup", type=console.int_at_least(0, 10), default=1)
    prompt_sets.add_arguments(parser)
    served = parser.add_argument_group("served endpoint (workbench.endpoint)")
    served.add_argument("--target", help="URL of an OpenAI-compatible server to measure instead")
    served.add_argument("--tokenizer", help="model spec whose tokenizer builds the prompts (default: --model)")
    served.add_argument(
        "--concurrency",
        type=console.list_of(console.int_at_least(1, 4096), "integers in [1, 4096]"),
        default=[1],
        help="requests in flight; a list (1,2,4) measures each level into one table",
    )
    served.add_argument(
        "--rate",
        type=console.list_of(console.positive_float, "positive numbers"),
        help="Poisson arrivals at this many requests/s (open loop); a list (2,4,8) measures each level",
    )
    served.add_argument("--timeout", type=float, default=60.0, help="seconds per request and between chunks")
    served.add_argument("--trace", help="replay a timestamped trace (Mooncake JSONL, or prompts with a timestamp)")
    served.add_argument("--trace-speed", type=float, default=1.0, help="replay this many times faster than recorded")
    served.add_argument("--trace-limit", type=console.int_at_least(1), help="replay only the first N requests")
    served.add_argument("--trace-window", help="START:END seconds after the trace's first request")
    served.add_argument("--trace-block-tokens", type=console.int_at_least(1, 65536), default=512, help="per hash id")
    served.add_argument("--sessions", help="multi-turn sessions (ShareGPT or JSONL of message lists), replayed live")
    served.add_argument("--think-time", type=float, default=0.0, help="seconds between a reply and the next turn")
    served.add_argument("--api-key-env", metavar="NAME", help="send a bearer token read from environment variable NAME")
    served.add_argument("--follow-redirects", action="store_true", help="follow 3xx replies (default: a failure)")
    served.add_argument("--allow-errors", action="store_true", help="exit 0 even when every request failed")
    parser.add_argument("--no-save", action="store_true", help="do not write a run folder")
    parser.add_argument("--json", action="store_true")
    return parser


def check_workload(args) -> dict:
    """Before anything is written: the workload flags fit together, and a `--dataset` file reads, renders with the
    model's tokenizer (a local model's, loaded without weights) and fits its context. Returns the chosen options."""
    options = prompt_sets.chosen_options(args)
    if problem := prompt_sets.option_problem(options):
        raise UsageError(f"--{problem[0].replace('_', '-')}: {problem[1]}")
    if args.dataset and args.requests:
        raise UsageError("--requests: applies to synthetic prompts only; use --dataset-limit")
    if args.dataset:
        datasets.read_items(args.dataset, turns=args.dataset_turns)
        tokenizer = chat.local_tokenizer(args.model)
        if tokenizer is not None:
            config = json.loads((loader.resolve(args.model, build_missing=False)[0] / "config.json").read_text())
            context = config.get("max_position_embeddings")
            workload = prompt_sets.build(
                tokenizer=tokenizer, vocab_size=2, prompt_tokens=1, count=1, context_tokens=context, **options
            )
            prompt_sets.check_context(workload, args.gen_tokens, context)
    return options


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    if args.target:
        from workbench.endpoint import replay, sessions
        from workbench.endpoint import target_bench as endpoint_bench

        if args.trace and args.sessions:
            raise UsageError("--trace and --sessions: choose one")
        return (replay if args.trace else sessions if args.sessions else endpoint_bench).main(args)
    args.model = args.model or "default"
    workload_options = check_workload(args)
    load_before = runs.prepare_run(args, [args.model])
    options = ("prompt_tokens", "gen_tokens", "batch_size", "trials", "warmup", "dtype", "requests", "seed")
    spec = BenchSpec(**{key: getattr(args, key) for key in options}, workload_options=workload_options)
    frame, summary = run_bench(args.model, spec)
    text = bench_table(summary, args)
    runs.save_and_print(args, frame, summary, command="bench", load_before=load_before, text=text)
    return 0


BENCH_COLUMNS = ("ttft_s", "ttft_s_p90", "tpot_s", "prefill_tps", "decode_tps", "throughput_tps", "peak_mem_bytes")


def bench_table(summary: dict, args) -> str:
    """The run as one table line in ms, tok/s and MiB, titled with what was timed."""
    from workbench import terminal

    requests, trials = summary.get("requests", 0) // max(summary.get("trials", 1), 1), summary.get("trials", 0)
    shape = f"dataset {args.dataset}" if args.dataset else f"{args.prompt_tokens} prompt + {args.gen_tokens} output"
    title = (
        f"bench: {summary['model_id']} ({summary.get('dtype')} on {summary.get('backend')}) · {shape} tokens · "
        f"{requests} requests × {trials} trials, batch {args.batch_size}"
    )
    row = [f"{summary['model_id']}", *[terminal.value(c, summary.get(c)) for c in BENCH_COLUMNS]]
    return terminal.render(["model", *map(terminal.header, BENCH_COLUMNS)], [row], title=title)


if __name__ == "__main__":
    sys.exit(console.entry(main))
