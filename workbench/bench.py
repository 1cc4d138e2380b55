"""`workbench bench`: TTFT, ITL, TPOT, E2E, prefill/decode tok/s, throughput and memory of one model.

Synthetic fixed-length prompts (as `mlx_lm.benchmark`), timed by the one loop in
`workbench.measure`; returns (rows in the shared schema, summary) and writes nothing;
`main` writes a run folder.

    workbench bench --model default --prompt-tokens 128 --gen-tokens 64 --trials 3 [--json]
    workbench bench --target http://127.0.0.1:8080 --model M --concurrency 4 --requests 32   (workbench.endpoint)
"""

from __future__ import annotations

import sys

import polars as pl

from workbench import measure, models, results, runtime, tool, workloads


def run_bench(
    model: str | models.LoadedModel,
    *,
    prompt_tokens: int = 128,
    gen_tokens: int = 64,
    batch_size: int = 1,
    trials: int = 3,
    warmup: int = 1,
    requests: int | None = None,
    seed: int = 0,
    run_id: str | None = None,
    variant: str = "baseline",
    dtype: str = "auto",
) -> tuple[pl.DataFrame, dict]:
    """`requests` synthetic prompts (default: one batch) per trial, sent `batch_size` at a time."""
    loaded = model if isinstance(model, models.LoadedModel) else models.load(model, dtype=dtype)
    workload = workloads.synthetic(
        prompt_tokens=prompt_tokens, count=requests or batch_size, vocab_size=models.vocab_size(loaded), seed=seed
    )
    records = measure.measure_generation(
        loaded.model,
        loaded.tokenizer,
        workload.token_prompts(loaded.tokenizer),
        gen_tokens=gen_tokens,
        trials=trials,
        warmup=warmup,
        batch_size=batch_size,
    )
    rows = [{**r.to_row(), "kind": "speed", "load_s": loaded.load_s} for r in records]
    params = {
        "prompt_tokens": prompt_tokens,
        "gen_tokens": gen_tokens,
        "batch_size": batch_size,
        "trials": trials,
        "warmup": warmup,
        "seed": seed,
    }
    identity = {
        "run_id": run_id or results.new_run_id("bench"),
        "experiment": "bench",
        "variant": variant,
        "params_json": params,
        "family": "baseline",
        "changes_json": "{}",
    }
    frame = results.to_frame(rows, **identity, **results.model_identity(loaded, workload))
    summary = {
        "model_id": loaded.model_id,
        "backend": runtime.backend(),
        "dtype": getattr(loaded, "dtype", None),
        "load_s": loaded.load_s,
        **measure.run_summary(records),
    }
    return frame, summary


def setup_arg_parser() -> tool.Parser:
    parser = tool.parser("bench", "TTFT, ITL, TPOT, E2E and throughput on synthetic prompts")
    parser.add_argument(
        "--model", help="preset, mlx-lm directory or Hugging Face repo id (default: default); or the served name"
    )
    parser.add_argument("--prompt-tokens", type=tool.int_at_least(1, 32768), default=128)
    parser.add_argument("--gen-tokens", type=tool.int_at_least(1, 8192), default=64)
    parser.add_argument("--batch", dest="batch_size", type=tool.int_at_least(1, 1024), default=1)
    parser.add_argument(
        "--dtype", choices=models.DTYPES, default="auto", help="auto: float32 on CPU, else the checkpoint's"
    )
    parser.add_argument("--trials", type=tool.int_at_least(1, 100), default=3)
    parser.add_argument("--warmup", type=tool.int_at_least(0, 10), default=1)
    served = parser.add_argument_group("served endpoint (workbench.endpoint)")
    served.add_argument("--target", help="URL of an OpenAI-compatible server to measure instead")
    served.add_argument("--tokenizer", help="model spec whose tokenizer builds the prompts (default: --model)")
    served.add_argument("--concurrency", type=tool.int_at_least(1, 4096), default=1, help="requests in flight")
    served.add_argument("--rate", type=float, help="Poisson arrivals at this many requests/s (open loop)")
    served.add_argument("--requests", type=tool.int_at_least(1, 1_000_000), help="requests per trial")
    served.add_argument("--chat", action="store_true", help="use /v1/chat/completions")
    served.add_argument("--timeout", type=float, default=60.0, help="seconds per request and between chunks")
    parser.add_argument("--no-save", action="store_true", help="do not write a run folder")
    parser.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    if args.target:
        from workbench.endpoint import bench as endpoint_bench

        return endpoint_bench.main(args)
    args.model = args.model or "default"
    load_before = tool.prepare_run(args, [args.model])
    options = ("prompt_tokens", "gen_tokens", "batch_size", "trials", "warmup", "dtype")
    frame, summary = run_bench(args.model, **{key: getattr(args, key) for key in options})
    tool.save_and_print(args, frame, summary, command="bench", load_before=load_before)
    return 0


if __name__ == "__main__":
    sys.exit(tool.entry(main))
