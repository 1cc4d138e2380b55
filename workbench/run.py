"""`workbench run EXPERIMENT --params FILE`: one optimisation measured against its baseline in one run.

The config is built by `experiments.build_config` (defaults < params file < `--model`),
checked against the model before anything is measured, then run and saved to
`outputs/runs/<run_id>/`. `--json` prints one summary per variant.

    workbench run quantise [--params params/quantise.yaml] [--model M] [--json]

Without `--params` the experiment's own `params/<experiment>.yaml` is read. The table fits 100 columns: one
line per variant (or load level) in ms, tok/s and MiB, with the throughput change against the baseline of the
same run, its 95% interval and its verdict.
"""

from __future__ import annotations

import sys
from pathlib import Path

from workbench import console, experiments, names, terminal
from workbench.analysis import run_summary
from workbench.errors import ConfigError
from workbench.paths import REPO_ROOT

EXIT_ALL_FAILED = 3  # the run finished and was saved, but every served request failed


def setup_arg_parser() -> console.Parser:
    parser = console.parser("run", "run an optimisation experiment from its params file")
    parser.add_argument("experiment", choices=(*experiments.names(), *experiments.ALIASES))
    parser.add_argument("--params", help="the experiment's params file (default: params/<experiment>.yaml)")
    parser.add_argument("--model", help="replace the model under test (preset, mlx-lm directory or repo id)")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--allow-errors", action="store_true", help="exit 0 even when every served request failed")
    parser.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    overrides = {"model": args.model} if args.model else {}
    config = experiments.build_config(args.experiment, params_file(args.experiment, args.params), overrides)
    if args.no_save:
        experiments.check_models(config)
        frame = experiments.get(args.experiment).run(config)
    else:
        frame, run_dir = experiments.run_and_save(config)
        print(f"results: {run_dir / 'results.parquet'}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        console.print_json(run_summary.variant_summaries(args.experiment, frame))
    else:
        print(variant_table(config, frame))
    module = experiments.get(args.experiment)
    for line in getattr(module, "run_warnings", lambda f: [])(frame):
        print(f"warning: {line}", file=sys.stderr)
    warning = getattr(module, "failure_warning", lambda f: None)(frame)
    if warning and not args.allow_errors:
        print(f"warning: {warning}", file=sys.stderr)
        return EXIT_ALL_FAILED
    return 0


def params_file(experiment: str, given: str | None) -> Path:
    """`--params`, else `params/<experiment>.yaml` of the checkout (a one-line error when neither exists)."""
    if given:
        return Path(given)
    default = REPO_ROOT / "params" / f"{experiment}.yaml"
    if not default.is_file():
        raise ConfigError(f"no --params given and {default.relative_to(REPO_ROOT)} does not exist")
    return default


def workload_line(config) -> str:
    """'nano · 128 prompt + 32 output tokens · 4 requests × 2 trials × 2 rounds': what each variant was timed on."""
    prompt = getattr(config, "dataset", None) or getattr(config, "prompt_dist", None) or config.prompt_tokens
    output = getattr(config, "gen_dist", None) or config.gen_tokens
    if getattr(config, "precision", None) is not None:
        rounds = f" × up to {config.max_rounds} rounds (±{config.precision:.0%})"
    elif getattr(config, "round_limit", None):
        rounds = f" × {config.round_limit} rounds"
    else:
        rounds = ""
    shape = f"{prompt} prompt + {output} output tokens" if not getattr(config, "dataset", None) else f"dataset {prompt}"
    trials = f"{config.trials} trial{'s' if config.trials != 1 else ''}"
    return f"{config.model} · {shape} · {config.requests} requests × {trials}{rounds}"


LEVEL_COLUMNS = ("ttft_s", "ttft_s_p90", "tpot_s", "throughput_tps", "goodput_rps", "error_rate")
VARIANT_COLUMNS = ("ttft_s", "decode_tps", "throughput_tps", "peak_mem_bytes", "perplexity", "task_accuracy")


def variant_table(config, frame) -> str:
    """One line per variant: name, headline values in ms / tok/s / MiB, and the throughput change against the
    baseline with its interval and verdict; an endpoint run gets one line per load level instead."""
    summaries = run_summary.variant_summaries(config.name, frame)
    title = f"{config.name}: {workload_line(config)}"
    if any(s.get("profile") for s in summaries):
        return level_table(summaries, title=title)
    changes = {r["variant"]: r for r in run_summary.throughput_changes(frame).to_dicts()}
    memory = "weights_bytes" if any(s.get("weights_bytes") for s in summaries) else "peak_mem_bytes"
    columns = [memory if c == "peak_mem_bytes" else c for c in VARIANT_COLUMNS]
    columns = [c for c in columns if any(not terminal.missing(s.get(c)) for s in summaries)]
    rows = []
    for s in summaries:
        compared = changes.get(s["variant"], {})
        compared = {**compared, "change_pct": compared.get("throughput_change_pct", compared.get("change_pct"))}
        name = names.configuration_name(s.get("changes"), family=s.get("family"), variant=s["variant"])
        cells = [terminal.value(c, s.get(c)) for c in columns]
        rows.append([name, *cells, terminal.change(compared), terminal.verdict(compared)])
    headers = ["configuration", *map(terminal.header, columns), "throughput\nvs baseline\n(95% CI)", "verdict"]
    caption = "change: paired 95% CI over rounds against the baseline of the same run; verdict against min_effect"
    return terminal.render(headers, rows, title=title, caption=caption)


def level_table(summaries: list[dict], *, title: str) -> str:
    """One line per load level of a served endpoint (the in-process baseline first)."""
    rows = []
    for s in summaries:
        if s.get("profile"):
            level = s["profile"] if terminal.missing(s.get("level")) else f"{s['profile']} {s['level']:g}"
        else:
            level = "in process" if s["variant"] == "baseline" else s["variant"]
        slo = "" if s.get("slo_pass") is None else ("meets" if s["slo_pass"] else "misses")
        if s.get("saturated"):
            slo = "saturated"
        rows.append([level, *[terminal.value(c, s.get(c)) for c in LEVEL_COLUMNS], slo])
    headers = ["load", *map(terminal.header, LEVEL_COLUMNS), "SLOs"]
    return terminal.render(headers, rows, title=title)


if __name__ == "__main__":
    sys.exit(console.entry(main))
