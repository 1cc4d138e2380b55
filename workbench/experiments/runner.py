"""The one path from params to a finished run: build the config, check its models and prompts, run, save.

config = experiments.build_config("quantise", "params/quantise.yaml", {"model": "nano"})
frame, run_dir = experiments.run_and_save(config)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from workbench import runtime
from workbench.errors import ConfigError
from workbench.experiments.base import ExperimentConfig, validate
from workbench.experiments.registry import get
from workbench.results import store

RUN_BYTES = 16 << 20  # rough disk use of one run


def build_config(name: str, params_file: str | Path | None = None, overrides: dict | None = None) -> ExperimentConfig:
    """THE config path: the experiment's defaults < `params_file` < `overrides` (an explicit null is kept).
    Relative paths (the params file, a top-level value naming a file such as `dataset` or `eval_set`) that exist
    only from the repository root are read from there, so a notebook's kernel in `notebooks/` finds them."""
    from workbench.paths import from_repo_root
    from workbench.yamlfile import read_yaml_mapping

    values = dict(read_yaml_mapping(from_repo_root(params_file), ConfigError)) if params_file else {}
    values.update(overrides or {})
    values = {key: _from_repo_root(value) for key, value in values.items()}
    return validate(get(name).Config, values)


def _from_repo_root(value):
    """A string value that is a relative path found only from the repository root, as that path; else unchanged."""
    from workbench.paths import from_repo_root

    if not isinstance(value, str) or not value or "\n" in value or len(value) > 4096:
        return value
    try:
        found = from_repo_root(value)
    except (OSError, ValueError):  # not a path this system can look up
        return value
    return str(found) if found != Path(value) else value


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
        context = chat.local_context(config.model)
        sizes: dict[str, Any] = {"vocab_size": 2, "prompt_tokens": 1, "count": 1, "context_tokens": context}
        prompt_sets.build(tokenizer=tokenizer, seed=config.seed, **sizes, **options)
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
    machine = env["machine"]  # which machine measured the rows: a report never pools machines silently
    frame = frame.with_columns(machine_id=pl.lit(machine["machine_id"]), machine=pl.lit(machine["label"]))
    env["measurement"] = {**rounds.settings_of(config), "affinity_note": affinity_note, **rounds.thread_settings()}
    path = store.write_run(frame, params={"experiment": config.name, **config.to_dict()}, env=env, run_dir=run_dir)
    return frame, path
