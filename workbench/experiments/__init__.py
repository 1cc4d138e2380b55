"""The registry of experiments, and the one path from params to a finished run.

An experiment is a module in this package that defines `Config` (an `ExperimentConfig`
with a `name`) and `run(config) -> polars.DataFrame`; optionally `summary_extras(frame)`
(experiment-specific figures per variant) and `chart(summary, frame)`. Modules are found
by listing the package, so adding an experiment is one new module (plus its params file
and its test): the CLI, the sweep, the notebook and the tests all read `registry()`.

    config = experiments.build_config("quantise", "params/quantise.yaml", {"model": "nano"})
    frame, run_dir = experiments.run_and_save(config)

Modules: `registry` (which modules are experiments), `runner` (params to a saved run), `base` (configs,
variants, interleaved measurement), one module per experiment. Summaries are in `workbench.analysis.run_summary`,
charts in `workbench.present.experiment_charts`.
"""

from workbench.experiments.registry import ALIASES, canonical, get, names, registry
from workbench.experiments.runner import build_config, check_models, check_prompts, run_and_save

__all__ = [
    "ALIASES",
    "canonical",
    "build_config",
    "check_models",
    "check_prompts",
    "get",
    "names",
    "registry",
    "run_and_save",
]
