"""One point of the speed/quality tradeoff space: weight bits x batch size x speculative decoding.

Where the other experiments sweep one optimisation, a `tradeoff` point combines them, so a
sweep over points (`params/default.yaml`) maps the space a deployment chooses from. Each
point measures the unoptimised baseline and its variant in interleaved rounds on the same
workload. Quality belongs to the weights: it is measured on quantised variants; batching
and speculative decoding are declared lossless and inherit the baseline's quality only
when their greedy outputs are verified identical. A point whose settings equal the
baseline's is an A/A check (family `baseline`): it is measured, never recommended.

    workbench run tradeoff --params params/tradeoff.yaml [--model M] [--json]
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import Field

from workbench.experiments.base import QUALITY_METRICS, Arm, ExperimentConfig, Variant, baseline_variant, measure_arms
from workbench.models import loader
from workbench.optimise import derived, quantise
from workbench.results import store


class Config(ExperimentConfig):
    name: ClassVar[str] = "tradeoff"

    bits: Literal[2, 3, 4, 5, 6, 8] | None = None
    group_size: Literal[32, 64, 128] = 64
    batch_size: int = Field(1, ge=1, le=256)
    speculative: bool = False
    draft: str = "distilled"
    num_draft_tokens: int = Field(3, ge=1, le=32)

    def model_specs(self) -> list[str]:
        return [self.model] + ([self.draft] if self.speculative else [])

    def check_model(self, model_config: dict) -> None:
        if self.speculative:
            from workbench.experiments.speculative import check_draft_tokenizer

            check_draft_tokenizer(self.model, self.draft)

    def check(self):
        self.require(
            not (self.speculative and self.batch_size > 1),
            "speculative",
            "mlx-lm's speculative decoding serves one request at a time; use batch_size 1",
        )


def variant(config: Config) -> Variant:
    """The point's variant: what it changes from the baseline (nothing: an A/A copy of the baseline)."""
    changes: dict[str, Any] = {}
    families: list[str] = []
    if config.bits:
        changes.update(bits=config.bits, group_size=config.group_size)
        families.append("quantisation")
    if config.batch_size > 1:
        changes["batch_size"] = config.batch_size
        families.append("batching")
    if config.speculative:
        changes.update(speculative=True, draft=config.draft, num_draft_tokens=config.num_draft_tokens)
        families.append("speculative")
    parts = [f"q{config.bits}" if config.bits else "fp", f"b{config.batch_size}"]
    name = "-".join(parts + ([f"spec{config.num_draft_tokens}"] if config.speculative else []))
    if not changes:
        return Variant(f"{name}-aa", family="baseline", lossless=True)
    return Variant(
        name,
        family="+".join(families),
        changes=changes,
        lossless=not config.bits,
        quality=QUALITY_METRICS if config.bits else (),
    )


def run(config: Config) -> pl.DataFrame:
    run_id = store.new_run_id("tradeoff")
    baseline = loader.load(config.model, dtype=config.dtype)
    loaded = baseline
    if config.bits:
        loaded = loader.load(
            str(quantise.quantised(config.model, bits=config.bits, group_size=config.group_size, dtype=config.dtype)),
            dtype=config.dtype,
        )
    kwargs = {}
    if config.speculative:
        draft = derived.load_spec(config.draft, baseline, config.model, dtype=config.dtype)
        loader.check_same_tokenizer(baseline, draft, role="draft")
        kwargs = {"draft_model": draft.model, "num_draft_tokens": config.num_draft_tokens}
    point = variant(config)
    arms = [
        Arm(baseline_variant(), baseline),
        Arm(point, loaded, batch_size=config.batch_size, generate_kwargs=kwargs, params=point.changes),
    ]
    return measure_arms(arms, config, run_id=run_id)
