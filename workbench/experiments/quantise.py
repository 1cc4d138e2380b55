"""Quantisation: weight bits x group size x method (affine, mixed recipes, GPTQ, AWQ) and KV-cache bits.

Every variant is measured against the full-precision baseline in interleaved rounds on the
same speed workload, and with the same quality checks: bits per weight, size on disk,
peak memory, TTFT, decode tok/s, perplexity, KL and greedy agreement vs the baseline,
task accuracy. KV-cache variants keep the weights and quantise the cache; their quality is
measured with the quantised cache. On the Linux CPU backend quantised matmuls are slower
than fp32: there quantisation buys memory, not speed; each row is labelled with its
backend and dtype. `peak_mem_bytes` is the process's MLX peak (every variant stays loaded
for interleaving), so compare variants by `weights_bytes` and `size_on_disk_bytes`.

    workbench run quantise --params params/quantise.yaml [--model M] [--json]
"""

from __future__ import annotations

from typing import ClassVar, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from workbench import names, terminal
from workbench.experiments.base import QUALITY_METRICS, Arm, ExperimentConfig, Variant, baseline_variant, measure_arms
from workbench.models import loader
from workbench.optimise import quantise
from workbench.results import store

Bits = Literal[2, 3, 4, 5, 6, 8]
GroupSize = Literal[32, 64, 128]


class WeightVariant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    bits: Bits
    group_size: GroupSize | None = None
    method: Literal["affine", "gptq", "awq"] = "affine"
    recipe: str | None = None


class Config(ExperimentConfig):
    name: ClassVar[str] = "quantise"

    variants: list[WeightVariant] = Field(
        default_factory=lambda: [WeightVariant(bits=b) for b in (8, 4, 3, 2)], max_length=64
    )
    group_size: GroupSize = 64
    kv_bits: list[Literal[2, 3, 4, 5, 6, 8]] = Field(default_factory=list, max_length=8)
    kv_group_size: GroupSize = 32

    def check(self):
        if any(variant.recipe for variant in self.variants):  # mlx_lm.convert takes a second to import
            from mlx_lm.convert import QUANT_RECIPES

            for variant in self.variants:
                recipe_ok = variant.recipe in (None, *QUANT_RECIPES)
                self.require(recipe_ok, "variants", f"recipe must be one of {QUANT_RECIPES}")

    def check_model(self, model_config: dict) -> None:
        heads = model_config.get("num_attention_heads") or 1
        head_dim = model_config.get("head_dim") or model_config.get("hidden_size", 0) // heads
        if self.kv_bits and head_dim % self.kv_group_size:
            raise_kv = f"{self.kv_group_size} does not divide the model's head dimension {head_dim}"
            self.require(False, "kv_group_size", raise_kv)


def weight_variant(spec: WeightVariant, group_size: int) -> Variant:
    group = spec.group_size or group_size
    name = f"{'q' if spec.method == 'affine' else spec.method}{spec.bits}"
    name += f"g{group}" if group != 64 else ""
    name += f"-{spec.recipe}" if spec.recipe else ""
    changes = {"bits": spec.bits, "group_size": group, "method": spec.method, "recipe": spec.recipe}
    return Variant(name, family="quantisation", changes=changes, quality=QUALITY_METRICS)


def kv_variant(bits: int, group_size: int) -> Variant:
    changes = {"kv_bits": bits, "kv_group_size": group_size, "quantized_kv_start": 0}
    return Variant(f"kv{bits}", family="kv-quantisation", changes=changes, quality=QUALITY_METRICS)


def facts(loaded: loader.LoadedModel) -> dict:
    from mlx_lm.utils import compute_bits_per_weight

    return {
        "bits_per_weight": compute_bits_per_weight(loaded.model),
        "weights_bytes": loader.weights_bytes(loaded.model),
        "size_on_disk_bytes": loader.size_on_disk(loaded.path) if loaded.path else None,
    }


def run(config: Config) -> pl.DataFrame:
    run_id = store.new_run_id("quantise")
    baseline = loader.load(config.model, dtype=config.dtype)
    arms = [Arm(baseline_variant(), baseline, params=facts(baseline))]
    for index, spec in enumerate(config.variants, 1):
        variant = weight_variant(spec, config.group_size)
        name = names.configuration_name(variant.changes)
        terminal.step(f"quantise: {name}: quantising ({index}/{len(config.variants)})")
        path = quantise.quantised(
            config.model,
            bits=spec.bits,
            group_size=variant.changes["group_size"],
            method=spec.method,
            recipe=spec.recipe,
            dtype=config.dtype,
        )
        loaded = loader.load(str(path), dtype=config.dtype)
        arms.append(Arm(variant, loaded, params={**variant.changes, **facts(loaded)}))
    for bits in config.kv_bits:
        variant = kv_variant(bits, config.kv_group_size)
        kv = {"kv_bits": bits, "kv_group_size": config.kv_group_size}
        arms.append(
            Arm(
                variant,
                baseline,
                generate_kwargs={**kv, "quantized_kv_start": 0},
                params={**variant.changes, **facts(baseline)},
                quality_kwargs=kv,
            )
        )
    return measure_arms(arms, config, run_id=run_id)
