"""The registry of experiments, and the one path from params to a finished run.

An experiment is a module in this package that defines `Config` (an `ExperimentConfig`
with a `name`) and `run(config) -> polars.DataFrame`; optionally `summary_extras(frame)`
(experiment-specific figures per variant) and `chart(summary, frame)`. Modules are found
by listing the package, so adding an experiment is one new module (plus its params file
and its test): the CLI, the sweep, the notebook and the tests all read `registry()`.

    config = experiments.build_config("quantise", "params/quantise.yaml", {"model": "nano"})
    frame, run_dir = experiments.run_and_save(config)
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from pathlib import Path

import polars as pl

from workbench import runtime
from workbench.errors import ConfigError
from workbench.experiments.base import ExperimentConfig, validate
from workbench.results import store

NOT_EXPERIMENTS = {"base"}
RUN_BYTES = 16 << 20  # rough disk use of one run


@functools.cache
def registry() -> dict:
    """name -> module, for every experiment module in this package."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in NOT_EXPERIMENTS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "Config") and hasattr(module, "run"):  # helper modules are not experiments
            found[module.Config.name] = module
    return dict(sorted(found.items()))


def names() -> tuple[str, ...]:
    return tuple(registry())


def get(name: str):
    if name not in registry():
        raise ConfigError(f"unknown experiment {name!r}; choose one of {', '.join(registry())}")
    return registry()[name]


def build_config(name: str, params_file: str | Path | None = None, overrides: dict | None = None) -> ExperimentConfig:
    """THE config path: the experiment's defaults < `params_file` < `overrides` (an explicit null is kept)."""
    from workbench.paths import read_yaml_mapping

    values = dict(read_yaml_mapping(Path(params_file), ConfigError)) if params_file else {}
    values.update(overrides or {})
    return validate(get(name).Config, values)


def check_models(config: ExperimentConfig) -> None:
    """Resolve every model the config names and run its model-dependent checks, before anything is measured."""
    import json

    from workbench.models import build, loader
    from workbench.optimise import derived

    for spec in config.model_specs():
        if derived.is_derived(spec):
            derived.check(spec)
            continue
        target, _ = loader.resolve(spec, build_missing=False)
        if spec != config.model:
            continue
        if spec in build.PRESETS:
            model_config = build.get_recipe(spec).model_config()
        elif isinstance(target, Path):
            model_config = json.loads((target / "config.json").read_text())
        else:
            continue  # a Hugging Face id: its config arrives with the model
        config.check_context(model_config)
        config.check_model(model_config)
    check_prompts(config)


def check_prompts(config: ExperimentConfig) -> None:
    """A dataset or eval set that needs the model's tokenizer (chat messages, length filters) is rendered with a
    local model's tokenizer now, so a model without a chat template is one line before anything is written."""
    from workbench.measure import evalsets, evaluate
    from workbench.workloads import chat, prompt_sets

    dataset, eval_set = getattr(config, "dataset", None), getattr(config, "eval_set", None)
    if not (dataset or eval_set):
        return
    tokenizer = chat.local_tokenizer(config.model)
    if tokenizer is None:
        return
    if dataset:
        options = prompt_sets.chosen_options(config)
        prompt_sets.build(tokenizer=tokenizer, vocab_size=2, prompt_tokens=1, count=1, seed=config.seed, **options)
    if eval_set:
        evaluate.check_renderable(evalsets.read_eval_set(eval_set), config.model, config.chat)


def run_and_save(config: ExperimentConfig, run_dir: str | Path | None = None) -> tuple[pl.DataFrame, Path]:
    """Check (models; the outputs folder takes a file), run and write `params.yaml`, `env.json` (with the machine's
    load before and after) and the rows; a failed write keeps the rows under the temp dir (`store.write_run`)."""
    from workbench.paths import check_writable, outputs_dir

    check_models(config)  # the inputs first: a bad config creates nothing
    check_writable(Path(run_dir) if run_dir else outputs_dir() / "runs", need_bytes=RUN_BYTES)
    from workbench.experiments import rounds

    affinity_note = rounds.apply_affinity(config.cpu_affinity)
    load_before = runtime.load_average()
    frame = get(config.name).run(config)
    load_after = runtime.load_average()
    env = {**runtime.fingerprint(), "load_before": load_before and load_before[0]}  # 1-minute load averages
    env["load_after"] = load_after and load_after[0]
    env["measurement"] = {**rounds.settings_of(config), "affinity_note": affinity_note, **rounds.thread_settings()}
    path = store.write_run(frame, params={"experiment": config.name, **config.to_dict()}, env=env, run_dir=run_dir)
    return frame, path


def variant_summaries(name: str, frame: pl.DataFrame) -> list[dict]:
    """One dict per variant: speed, quality, declared identity, ratios to the baseline, and the experiment's extras."""
    import json

    from workbench.stats import json_safe

    summary = store.summarise_variants(frame)
    identity = frame.group_by("variant", maintain_order=True).agg(
        pl.col("params_json").first(),
        pl.col("family").drop_nulls().first(),
        pl.col("changes_json").drop_nulls().first(),
    )
    declared = {r["variant"]: r for r in identity.to_dicts()}
    base = next(iter(summary.filter(variant="baseline").to_dicts()), {})
    extras = getattr(get(name), "summary_extras", lambda f: {})(frame)
    rows = []
    for row in summary.to_dicts():
        info = declared.get(row["variant"], {})
        out = {**json.loads(info.get("params_json") or "{}"), **row, "family": info.get("family")}
        out["changes"] = json.loads(info.get("changes_json") or "{}")
        for metric, ratio in (
            ("decode_tps", "decode_speedup"),
            ("ttft_s", "ttft_ratio"),
            ("throughput_tps", "throughput_ratio"),
        ):
            if base.get(metric) and out.get(metric):
                out[ratio] = out[metric] / base[metric]
        out.update(extras.get(row["variant"], {}))
        rows.append(json_safe(out))
    return rows


SUMMARY_COLUMNS = (
    "variant",
    "family",
    "ttft_s",
    "decode_tps",
    "throughput_tps",
    "peak_mem_bytes",
    "perplexity",
    "task_accuracy",
    "kl_mean",
    "greedy_agreement",
    "identical_to_baseline",
)


def throughput_changes(frame: pl.DataFrame) -> pl.DataFrame:
    """Per variant: its throughput change against the run's baseline, the 95% paired interval over rounds, the
    half-width reached (the widest over the headline metrics), the rounds it took and the verdict, printed with
    its resolution ("inconclusive (±18%)"; `workbench.analysis.verdicts`)."""
    from workbench.analysis import verdicts

    compared = verdicts.speed_comparisons(frame)
    widths = verdicts.precision_by_variant(compared).select("variant", pl.col("half_width_pct").alias("_hw"))
    return (
        compared.filter(metric="throughput_tps")
        .join(widths, on="variant", how="left")
        .select(
            "variant",
            pl.col("change_pct").alias("throughput_change_pct"),
            "ci_low_pct",
            "ci_high_pct",
            pl.col("_hw").alias("half_width_pct"),
            "rounds",
            pl.col("label").alias("verdict"),
        )
    )


def summary_table(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """The headline columns of `variant_summaries`, with each variant's throughput change, interval and verdict."""
    rows = variant_summaries(name, frame)
    columns = getattr(get(name), "SUMMARY_COLUMNS", SUMMARY_COLUMNS)  # an experiment may name its own headline
    table = pl.DataFrame([{k: r.get(k) for k in columns} for r in rows], strict=False)
    return table.join(throughput_changes(frame), on="variant", how="left", maintain_order="left")


def chart(name: str, frame: pl.DataFrame, *, enabled: bool = True):
    """The experiment's own chart, or throughput per variant against the baseline (None when not `enabled`)."""
    if not enabled:
        return None
    from workbench.present import charts

    module = get(name)
    summary = pl.DataFrame(variant_summaries(name, frame), strict=False)
    if hasattr(module, "chart"):
        return module.chart(summary, frame)
    return charts.variant_bars(summary, "throughput_tps", "Generated tokens per second")
