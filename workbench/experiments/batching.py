"""Batching: static batches through `mlx_lm.batch_generate`'s engine, and continuous batching under load.

- static: the same requests sent `batch_size` at a time for each batch size; throughput,
  per-request latency, memory, and whether greedy outputs equal the unbatched ones;
- continuous: `workbench.optimise.continuous_batching` admits requests into the running batch as they
  arrive (Poisson at `arrival_rate_rps` with a seed, or fixed `concurrency`), with
  adaptive batch sizing and priority classes; TTFT/ITL/E2E per priority and goodput under
  the SLO (`slo_ttft_s`, `slo_e2e_s`).

    workbench run batching --params params/batching.yaml [--model M] [--json]
"""

from __future__ import annotations

from typing import ClassVar, Literal

import polars as pl
from pydantic import Field

from workbench import stats
from workbench.experiments.base import Arm, ExperimentConfig, Variant, baseline_variant, measure_arms
from workbench.models import loader
from workbench.optimise import continuous_batching
from workbench.results import store
from workbench.slo import SLO
from workbench.workloads import prompt_sets
from workbench.workloads.arrivals import poisson_arrivals


class Config(ExperimentConfig):
    name: ClassVar[str] = "batching"

    batch_sizes: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16, 32], min_length=1, max_length=32)
    requests: int = Field(32, ge=1, le=4096)
    continuous: bool = True
    arrival: Literal["poisson", "concurrency"] = "poisson"
    arrival_rate_rps: float = Field(8.0, gt=0)
    concurrency: int = Field(8, ge=1, le=1024)
    continuous_requests: int = Field(48, ge=1, le=100_000)
    initial_batch: int = Field(4, ge=1)
    max_batch: int = Field(32, ge=1, le=1024)
    adaptive: bool = True
    memory_limit_bytes: int | None = None
    urgent_fraction: float = Field(0.2, ge=0.0, le=1.0)
    slo_ttft_s: float = Field(1.0, gt=0)
    slo_e2e_s: float = Field(10.0, gt=0)

    def check(self):
        self.require(all(1 <= b <= 1024 for b in self.batch_sizes), "batch_sizes", "entries must be in [1, 1024]")
        self.require(self.initial_batch <= self.max_batch, "initial_batch", "must be <= max_batch")


def batch_variant(size: int) -> Variant:
    """Batched requests are meant to give the unbatched tokens; quality is inherited only if verified identical."""
    return Variant(f"batch{size}", family="batching", changes={"batch_size": size}, lossless=True)


def run(config: Config) -> pl.DataFrame:
    run_id = store.new_run_id("batching")
    loaded = loader.load(config.model, dtype=config.dtype)
    arms = [Arm(baseline_variant(), loaded, params={"mode": "static"})]
    for size in sorted(set(config.batch_sizes) - {1}):
        arms.append(Arm(batch_variant(size), loaded, batch_size=size, params={"mode": "static"}))
    frames = [measure_arms(arms, config, run_id=run_id)]
    if config.continuous:
        frames.append(run_continuous(loaded, config, run_id))
    return pl.concat(frames, how="diagonal_relaxed")


def run_continuous(loaded: loader.LoadedModel, config: Config, run_id: str) -> pl.DataFrame:
    vocab = loader.vocab_size(loaded)
    workload = prompt_sets.synthetic(
        prompt_tokens=config.prompt_tokens, count=config.continuous_requests, vocab_size=vocab, seed=config.seed + 1
    )
    prompts = workload.token_prompts(loaded.tokenizer)
    n = len(prompts)
    arrivals = poisson_arrivals(n, config.arrival_rate_rps, config.seed) if config.arrival == "poisson" else [0.0] * n
    priorities = continuous_batching.assign_priorities(n, config.urgent_fraction, config.seed)
    requests = [
        continuous_batching.Request(i, p, a, pr) for i, (p, a, pr) in enumerate(zip(prompts, arrivals, priorities))
    ]
    rows, facts = continuous_batching.run_continuous(
        loaded.model,
        loaded.tokenizer,
        requests,
        continuous_batching.Scheduler(
            gen_tokens=config.gen_tokens,
            concurrency=config.concurrency if config.arrival == "concurrency" else None,
            initial_batch=config.initial_batch,
            max_batch=config.max_batch,
            adaptive=config.adaptive,
            memory_limit_bytes=config.memory_limit_bytes,
        ),
    )
    for row in rows:
        row.update(kind="speed", round=0, trial=0, window_s=facts["wall_s"], batch_size=facts["max_active"])
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
    variant = Variant(
        f"continuous-{config.arrival}", family="batching", changes={"mode": "continuous", **params}, lossless=True
    )
    identity = variant.identity(run_id=run_id, experiment=config.name, params_json=params)
    return store.to_frame(rows, **identity, **store.model_identity(loaded, workload))


def continuous_report(frame: pl.DataFrame, *, slo_ttft_s: float, slo_e2e_s: float) -> pl.DataFrame:
    """TTFT/ITL/E2E percentiles overall and per priority, throughput and goodput under the SLOs."""
    df = frame.filter(pl.col("changes_json").str.contains('"mode": "continuous"'))
    if df.is_empty():
        return df
    wall = df["window_s"][0]
    met = SLO(ttft_s_max=slo_ttft_s, e2e_s_max=slo_e2e_s).met_expr()

    def agg(group):
        return group.agg(
            pl.len().alias("requests"),
            *[
                stats.quantile_expr(c, q).alias(f"{c}_p{int(q * 100)}")
                for c in ("ttft_s", "e2e_s")
                for q in (0.5, 0.9, 0.99)
            ],
            *[stats.quantile_expr("itl_s", q, pooled=True).alias(f"itl_s_p{int(q * 100)}") for q in (0.5, 0.99)],
            (pl.col("generated_tokens").sum() / wall).alias("throughput_tps"),
            (pl.len() / wall).alias("throughput_rps"),
            (met.sum() / wall).alias("goodput_rps"),  # workbench.slo.goodput, per group
            met.mean().alias("slo_attainment"),
        )

    overall = agg(df.with_columns(pl.lit("all").alias("class")).group_by("class"))
    per_class = agg(
        df.with_columns(
            pl.when(pl.col("priority") == 0).then(pl.lit("urgent")).otherwise(pl.lit("normal")).alias("class")
        ).group_by("class")
    )
    return pl.concat([overall, per_class.sort("class")])


def summary_extras(frame: pl.DataFrame) -> dict:
    """Continuous batching: percentiles per priority class and goodput under the SLOs."""
    import json

    out = {}
    continuous = frame.filter((pl.col("kind") == "speed") & pl.col("changes_json").str.contains('"mode": "continuous"'))
    for (variant,), group in continuous.group_by("variant"):
        params = json.loads(group["params_json"][0])
        report = continuous_report(group, slo_ttft_s=params["slo_ttft_s"], slo_e2e_s=params["slo_e2e_s"])
        out[variant] = {"continuous": report.to_dicts(), "goodput_rps": report["goodput_rps"][0]}
    return out
