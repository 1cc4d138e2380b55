"""One point of the speed/quality tradeoff space: weight bits x batch size x speculative decoding.

Where the other experiments sweep one optimisation, a `tradeoff` point combines them, so a
sweep over points (`params/default.yaml`) maps the space a deployment chooses from. Each
point measures the unoptimised baseline and its variant on the same workload in the same
run; quality (perplexity, task accuracy, fidelity) belongs to the weights, so it is
measured on the variant's model.

    workbench run tradeoff --params params/tradeoff.yaml [--model M] [--json]
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from workbench import models, results
from workbench.experiments.base import ExperimentConfig, is_generated, load_spec, measure_variant


@dataclass(frozen=True)
class TradeoffConfig(ExperimentConfig):
    bits: int | None = None
    group_size: int = 64
    batch_size: int = 1
    speculative: bool = False
    draft: str = "distilled"
    num_draft_tokens: int = 3

    name = "tradeoff"

    def model_specs(self) -> list[str]:
        return [self.model] + ([self.draft] if self.speculative and not is_generated(self.draft) else [])

    def validate(self):
        self.require(
            self.bits is None or self.bits in models.QUANT_BITS,
            "bits",
            f"must be null (full precision) or one of {models.QUANT_BITS}",
        )
        self.require(
            self.group_size in models.QUANT_GROUP_SIZES, "group_size", f"must be one of {models.QUANT_GROUP_SIZES}"
        )
        self.require(self.batch_size >= 1, "batch_size", "must be >= 1")
        self.require(
            not (self.speculative and self.batch_size > 1),
            "speculative",
            "mlx-lm's speculative decoding serves one request at a time; use batch_size 1",
        )
        self.require(1 <= self.num_draft_tokens <= 32, "num_draft_tokens", "must be in [1, 32]")

    def variant(self) -> str:
        parts = [f"q{self.bits}" if self.bits else "fp", f"b{self.batch_size}"]
        return "-".join(parts + ([f"spec{self.num_draft_tokens}"] if self.speculative else []))


def run(config: TradeoffConfig) -> pl.DataFrame:
    run_id = results.new_run_id("tradeoff")
    baseline = models.load(config.model)
    frames = [
        measure_variant(
            baseline,
            config,
            variant="baseline",
            run_id=run_id,
            params={"bits": None, "batch_size": 1, "speculative": False},
        )
    ]
    loaded = baseline
    if config.bits:
        loaded = models.load(str(models.quantised(config.model, bits=config.bits, group_size=config.group_size)))
    kwargs = {}
    if config.speculative:
        draft = load_spec(config.draft, baseline, config.model)
        kwargs = {"draft_model": draft.model, "num_draft_tokens": config.num_draft_tokens}
    params = {
        "bits": config.bits,
        "batch_size": config.batch_size,
        "speculative": config.speculative,
        "num_draft_tokens": config.num_draft_tokens if config.speculative else None,
    }
    frames.append(
        measure_variant(
            loaded,
            config,
            variant=config.variant(),
            run_id=run_id,
            params=params,
            baseline=baseline if config.bits else None,
            batch_size=config.batch_size,
            generate_kwargs=kwargs,
            quality=bool(config.bits),
        )
    )
    return pl.concat(frames, how="vertical")
