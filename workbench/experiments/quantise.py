"""Quantisation: weight bits x group size x method (affine, mixed recipes, GPTQ, AWQ) and KV-cache bits.

Every variant is measured on the same speed workload and the same quality checks as the
full-precision baseline, in the same run: bits per weight, size on disk, peak memory,
TTFT, decode tok/s, perplexity, KL and greedy agreement vs the baseline, task accuracy.
On the Linux CPU backend quantised matmuls are slower than fp32: there quantisation buys
memory, not speed; each row is labelled with its backend. `peak_mem_bytes` is the
process's MLX peak (the baseline stays loaded for fidelity), so compare variants by
`weights_bytes` and `size_on_disk_bytes`.

    workbench run quantise --params params/quantise.yaml [--model M] [--json]
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

import polars as pl

from workbench import models, results
from workbench.experiments.base import ConfigError, ExperimentConfig

DEFAULT_VARIANTS = [{"bits": 8}, {"bits": 4}, {"bits": 3}, {"bits": 2}]
VARIANT_KEYS = {"bits", "group_size", "method", "recipe"}


@dataclass(frozen=True)
class QuantiseConfig(ExperimentConfig):
    variants: list = field(default_factory=lambda: list(DEFAULT_VARIANTS))
    group_size: int = 64
    kv_bits: list = field(default_factory=list)
    kv_group_size: int = 32

    name = "quantise"

    def validate(self):
        from mlx_lm.convert import QUANT_RECIPES

        self.require(
            self.group_size in models.QUANT_GROUP_SIZES, "group_size", f"must be one of {models.QUANT_GROUP_SIZES}"
        )
        for i, variant in enumerate(self.variants):
            where = f"variants[{i}]"
            self.require(isinstance(variant, dict), "variants", f"{where} must be a mapping like {{bits: 4}}")
            unknown = set(variant) - VARIANT_KEYS
            self.require(not unknown, "variants", f"{where} has unknown keys {sorted(unknown)}")
            self.require(
                variant.get("bits") in models.QUANT_BITS, "variants", f"{where}.bits must be one of {models.QUANT_BITS}"
            )
            self.require(
                variant.get("group_size", self.group_size) in models.QUANT_GROUP_SIZES,
                "variants",
                f"{where}.group_size must be one of {models.QUANT_GROUP_SIZES}",
            )
            self.require(
                variant.get("method", "affine") in models.QUANT_METHODS,
                "variants",
                f"{where}.method must be one of {models.QUANT_METHODS}",
            )
            self.require(
                variant.get("recipe") in (None, *QUANT_RECIPES),
                "variants",
                f"{where}.recipe must be one of {QUANT_RECIPES}",
            )
        for bits in self.kv_bits:
            self.require(bits in (2, 3, 4, 5, 6, 8), "kv_bits", "entries must be in 2, 3, 4, 5, 6, 8")
        self.require(self.kv_group_size in (32, 64, 128), "kv_group_size", "must be 32, 64 or 128")


def variant_name(variant: dict, group_size: int) -> str:
    method = variant.get("method", "affine")
    name = f"{'q' if method == 'affine' else method}{variant['bits']}"
    if variant.get("group_size", group_size) != 64:
        name += f"g{variant.get('group_size', group_size)}"
    if variant.get("recipe"):
        name += f"-{variant['recipe']}"
    return name


def run(config: QuantiseConfig) -> pl.DataFrame:
    from mlx_lm.utils import compute_bits_per_weight

    from workbench.experiments.base import measure_variant

    run_id = results.new_run_id("quantise")
    baseline = models.load(config.model)
    base_facts = {
        "bits_per_weight": compute_bits_per_weight(baseline.model),
        "weights_bytes": models.weights_bytes(baseline.model),
        "size_on_disk_bytes": models.size_on_disk(baseline.path) if baseline.path else None,
    }
    frames = [measure_variant(baseline, config, variant="baseline", run_id=run_id, params=base_facts)]
    for variant in config.variants:
        group_size = variant.get("group_size", config.group_size)
        path = models.quantised(
            config.model,
            bits=variant["bits"],
            group_size=group_size,
            method=variant.get("method", "affine"),
            recipe=variant.get("recipe"),
        )
        loaded = models.load(str(path))
        facts = {
            **variant,
            "group_size": group_size,
            "bits_per_weight": compute_bits_per_weight(loaded.model),
            "weights_bytes": models.weights_bytes(loaded.model),
            "size_on_disk_bytes": models.size_on_disk(path),
        }
        frames.append(
            measure_variant(
                loaded,
                config,
                variant=variant_name(variant, config.group_size),
                run_id=run_id,
                params=facts,
                baseline=baseline,
            )
        )
        del loaded
        gc.collect()
    head_dim = (
        baseline.config.get("head_dim") or baseline.config["hidden_size"] // baseline.config["num_attention_heads"]
    )
    if config.kv_bits and head_dim % config.kv_group_size:
        raise ConfigError(
            f"quantise.kv_group_size: {config.kv_group_size} does not divide the model's head dimension {head_dim}"
        )
    for bits in config.kv_bits:
        kwargs = {"kv_bits": bits, "kv_group_size": config.kv_group_size, "quantized_kv_start": 0}
        frames.append(
            measure_variant(
                baseline,
                config,
                variant=f"kv{bits}",
                run_id=run_id,
                params={**base_facts, **kwargs},
                generate_kwargs=kwargs,
                quality=False,
            )
        )
    return pl.concat(frames, how="vertical")
