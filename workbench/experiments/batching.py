"""Batching: static batches through `mlx_lm.batch_generate`'s engine, and continuous batching under load.

- static: the same requests sent `batch_size` at a time for each batch size; throughput,
  per-request latency, memory, and whether greedy outputs equal the unbatched ones;
- continuous: `workbench.scheduler` admits requests into the running batch as they
  arrive (Poisson at `arrival_rate_rps` with a seed, or fixed `concurrency`), with
  adaptive batch sizing and priority classes; TTFT/ITL/E2E per priority and goodput under
  the SLO (`slo_ttft_s`, `slo_e2e_s`).

    workbench run batching --params params/batching.yaml [--model M] [--json]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from workbench import bench, models, results, runtime, scheduler, workloads
from workbench.experiments.base import ExperimentConfig


@dataclass(frozen=True)
class BatchingConfig(ExperimentConfig):
    batch_sizes: list = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    requests: int = 32
    continuous: bool = True
    arrival: str = "poisson"  # or "concurrency"
    arrival_rate_rps: float = 8.0
    concurrency: int = 8
    continuous_requests: int = 48
    initial_batch: int = 4
    max_batch: int = 32
    adaptive: bool = True
    memory_limit_bytes: int | None = None
    urgent_fraction: float = 0.2
    slo_ttft_s: float = 1.0
    slo_e2e_s: float = 10.0

    name = "batching"

    def validate(self):
        self.require(
            len(self.batch_sizes) > 0 and all(isinstance(b, int) and b >= 1 for b in self.batch_sizes),
            "batch_sizes",
            "must be a non-empty list of integers >= 1",
        )
        self.require(self.arrival in ("poisson", "concurrency"), "arrival", "must be 'poisson' or 'concurrency'")
        self.require(self.arrival_rate_rps > 0, "arrival_rate_rps", "must be > 0")
        self.require(self.concurrency >= 1, "concurrency", "must be >= 1")
        self.require(self.continuous_requests >= 1, "continuous_requests", "must be >= 1")
        self.require(1 <= self.initial_batch <= self.max_batch, "initial_batch", "must be in [1, max_batch]")
        self.require(0.0 <= self.urgent_fraction <= 1.0, "urgent_fraction", "must be in [0, 1]")
        self.require(self.slo_ttft_s > 0, "slo_ttft_s", "must be > 0")
        self.require(self.slo_e2e_s > 0, "slo_e2e_s", "must be > 0")


def run(config: BatchingConfig) -> pl.DataFrame:
    run_id = results.new_run_id("batching")
    loaded = models.load(config.model)
    frames = []
    for b in sorted(set(config.batch_sizes)):
        frame, _ = bench.run_bench(
            loaded,
            prompt_tokens=config.prompt_tokens,
            gen_tokens=config.gen_tokens,
            batch_size=b,
            trials=config.trials,
            warmup=config.warmup,
            requests=config.requests,
            seed=config.seed,
            run_id=run_id,
            variant="baseline" if b == 1 else f"batch{b}",
            experiment=config.name,
            params={"mode": "static", "batch_size": b},
        )
        frames.append(frame)
    if config.continuous:
        frames.append(run_continuous(loaded, config, run_id))
    return pl.concat(frames, how="vertical")


def run_continuous(loaded: models.LoadedModel, config: BatchingConfig, run_id: str) -> pl.DataFrame:
    vocab = loaded.config["vocab_size"]
    workload = workloads.synthetic(
        prompt_tokens=config.prompt_tokens, count=config.continuous_requests, vocab_size=vocab, seed=config.seed + 1
    )
    prompts = workload.token_prompts(loaded.tokenizer)
    n = len(prompts)
    arrivals = (
        scheduler.poisson_arrivals(n, config.arrival_rate_rps, config.seed)
        if config.arrival == "poisson"
        else [0.0] * n
    )
    priorities = scheduler.assign_priorities(n, config.urgent_fraction, config.seed)
    requests = [scheduler.Request(i, p, a, pr) for i, (p, a, pr) in enumerate(zip(prompts, arrivals, priorities))]
    rows, facts = scheduler.run_continuous(
        loaded.model,
        loaded.tokenizer,
        requests,
        gen_tokens=config.gen_tokens,
        concurrency=config.concurrency if config.arrival == "concurrency" else None,
        initial_batch=config.initial_batch,
        max_batch=config.max_batch,
        adaptive=config.adaptive,
        memory_limit_bytes=config.memory_limit_bytes,
    )
    for row in rows:
        row.update(kind="speed", trial=0, window_s=facts["wall_s"], batch_size=facts["max_active"])
    params = {
        "mode": "continuous",
        "arrival": config.arrival,
        "arrival_rate_rps": config.arrival_rate_rps,
        "concurrency": config.concurrency,
        "adaptive": config.adaptive,
        "initial_batch": config.initial_batch,
        "max_batch": config.max_batch,
        "final_batch_limit": facts["final_batch_limit"],
        "resizes": facts["resizes"],
        "slo_ttft_s": config.slo_ttft_s,
        "slo_e2e_s": config.slo_e2e_s,
    }
    variant = f"continuous-{config.arrival}"
    return results.to_frame(
        rows,
        run_id=run_id,
        experiment=config.name,
        variant=variant,
        model_id=loaded.model_id,
        model_hash=loaded.model_hash,
        backend=runtime.backend(),
        blas=runtime.active_blas(),
        workload=workload.name,
        workload_hash=workload.hash,
        params_json=params,
    )


def continuous_report(frame: pl.DataFrame, *, slo_ttft_s: float, slo_e2e_s: float) -> pl.DataFrame:
    """TTFT/ITL/E2E percentiles overall and per priority, throughput and goodput under the SLOs."""
    df = frame.filter(pl.col("variant").str.starts_with("continuous"))
    if df.is_empty():
        return df
    wall = df["window_s"][0]
    met = (pl.col("ttft_s") <= slo_ttft_s) & (pl.col("e2e_s") <= slo_e2e_s)

    def agg(group):
        return group.agg(
            pl.len().alias("requests"),
            *[
                pl.col(c).quantile(q).alias(f"{c}_p{int(q * 100)}")
                for c in ("ttft_s", "e2e_s")
                for q in (0.5, 0.9, 0.99)
            ],
            pl.col("itl_s").explode().quantile(0.5).alias("itl_s_p50"),
            pl.col("itl_s").explode().quantile(0.99).alias("itl_s_p99"),
            (pl.col("generated_tokens").sum() / wall).alias("throughput_tps"),
            (pl.len() / wall).alias("throughput_rps"),
            (met.sum() / wall).alias("goodput_rps"),
            met.mean().alias("slo_attainment"),
        )

    overall = agg(df.with_columns(pl.lit("all").alias("class")).group_by("class"))
    per_class = agg(
        df.with_columns(
            pl.when(pl.col("priority") == 0).then(pl.lit("urgent")).otherwise(pl.lit("normal")).alias("class")
        ).group_by("class")
    )
    return pl.concat([overall, per_class.sort("class")])
