"""`make demo`: execute the quickstart notebook on the embedded default model with papermill.

Leaves `outputs/demo/<run_id>/{executed.ipynb, results.parquet, params.yaml, env.json}`.
"""

from __future__ import annotations

from pathlib import Path

from workbench.jupyter_kernel import KERNEL_NAME
from workbench.paths import REPO_ROOT, outputs_dir
from workbench.results.store import new_run_id

QUICKSTART = REPO_ROOT / "notebooks" / "00_quickstart.ipynb"
HEADLINE = (
    "model_id",
    "backend",
    "dtype",
    "ttft_s",
    "tpot_s",
    "decode_tps",
    "prefill_tps",
    "throughput_tps",
    "peak_mem_bytes",
    "perplexity",
    "task_accuracy",
    "task_f1",
)


def quickstart(
    model: str,
    *,
    prompt_tokens: int,
    gen_tokens: int,
    trials: int,
    task_count: int,
    perplexity_chunks: int | None = 64,
    output_dir: str | Path | None = None,
):
    """Speed on synthetic prompts, then held-out perplexity (the first `perplexity_chunks` chunks of 128 tokens,
    as `build-model` checks it; None: all ~460) and task accuracy, in one run folder. Returns (rows, summary, run
    folder)."""
    import polars as pl

    from workbench import runtime
    from workbench.measure import bench, evaluate
    from workbench.models import loader
    from workbench.results import store

    load_before = runtime.load_average()
    loaded = loader.load(model)
    speed, speed_summary = bench.run_bench(
        loaded, bench.BenchSpec(prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, trials=trials)
    )
    quality, quality_summary = evaluate.run_eval(
        loaded,
        evaluate.EvalSpec(
            text="stdlib",
            sequence_length=128,
            max_chunks=perplexity_chunks,
            task="facts",
            task_count=task_count,
            run_id=speed["run_id"][0],
        ),
    )
    frame = pl.concat([speed, quality], how="vertical")
    params = {
        "notebook": "00_quickstart",
        "model": model,
        "prompt_tokens": prompt_tokens,
        "gen_tokens": gen_tokens,
        "trials": trials,
        "task_count": task_count,
        "perplexity_chunks": perplexity_chunks,
    }
    env = {**runtime.fingerprint(), "load_before": load_before and load_before[0]}
    run_dir = store.write_run(frame, params=params, env=env, run_dir=output_dir)
    return frame, {**speed_summary, **quality_summary}, run_dir


def headline(summary: dict):
    """The quickstart's figures as one table row."""
    import polars as pl

    return pl.DataFrame([{key: summary.get(key) for key in HEADLINE}], strict=False)


def task_answers(frame, count: int = 10):
    """The first task answers next to their references."""
    import polars as pl

    answers = frame.filter(pl.col("kind") == "task")
    return answers.select("reference", "prediction", "exact_match", "token_f1").head(count)


def execute_notebook(notebook: Path, out_dir: Path, parameters: dict, *, timeout_s: int = 1800) -> Path:
    """Run a parameterised notebook with the workbench kernel; the executed copy lands in out_dir."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / "executed.ipynb"
    papermill.execute_notebook(
        str(notebook),
        str(executed),
        parameters={**parameters, "output_dir": str(out_dir)},
        kernel_name=KERNEL_NAME,
        cwd=str(REPO_ROOT),
        progress_bar=False,
        execution_timeout=timeout_s,
    )
    return executed


def run_demo(
    *, model: str = "default", prompt_tokens: int = 128, gen_tokens: int = 64, trials: int = 3, task_count: int = 100
) -> Path:
    out_dir = outputs_dir() / "demo" / new_run_id("demo")
    execute_notebook(
        QUICKSTART,
        out_dir,
        {
            "model": model,
            "prompt_tokens": prompt_tokens,
            "gen_tokens": gen_tokens,
            "trials": trials,
            "task_count": task_count,
        },
    )
    return out_dir


def setup_arg_parser():
    from workbench import console

    parser = console.parser("demo", "run the quickstart notebook on the default model with papermill")
    parser.add_argument("--model", default="default")
    parser.add_argument("--trials", type=console.int_at_least(1, 100), default=3)
    return parser


def main(argv: list[str] | None = None) -> int:
    from workbench.models import loader

    args = setup_arg_parser().parse_args(argv)
    loader.resolve(args.model, build_missing=False)
    out_dir = run_demo(model=args.model, trials=args.trials)
    print(f"executed notebook: {out_dir / 'executed.ipynb'}")
    print(f"results:           {out_dir / 'results.parquet'}")
    print(f"headline: {quickstart_headline(out_dir / 'results.parquet')}")
    return 0


def quickstart_headline(results) -> str:
    """The quickstart's figures in one line: model, TTFT, decode speed, perplexity and exact match."""
    import polars as pl

    from workbench import terminal
    from workbench.analysis import per_variant

    frame = pl.read_parquet(results)
    row = per_variant.summarise_variants(frame).row(0, named=True)
    model, backend = frame["model_id"][0], frame["backend"][0]
    return (
        f"{model} on {backend}: TTFT p50 {terminal.value('ttft_s', row.get('ttft_s'))} ms, "
        f"decode {terminal.value('decode_tps', row.get('decode_tps'))} tok/s, "
        f"perplexity {terminal.value('perplexity', row.get('perplexity'))}, "
        f"exact match {terminal.value('task_accuracy', row.get('task_accuracy'))}%"
    )
