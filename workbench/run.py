"""`workbench run EXPERIMENT --params FILE`: one optimisation measured against its baseline in one run.

The config is built by `experiments.build_config` (defaults < params file < `--model`),
checked against the model before anything is measured, then run and saved to
`outputs/runs/<run_id>/`. `--json` prints one summary per variant.

    workbench run quantise --params params/quantise.yaml [--model M] [--json]
"""

from __future__ import annotations

import sys

from workbench import console, experiments
from workbench.analysis import run_summary

EXIT_ALL_FAILED = 3  # the run finished and was saved, but every served request failed


def setup_arg_parser() -> console.Parser:
    parser = console.parser("run", "run an optimisation experiment from its params file")
    parser.add_argument("experiment", choices=(*experiments.names(), *experiments.ALIASES))
    parser.add_argument("--params", required=True, help="params/<experiment>.yaml")
    parser.add_argument("--model", help="replace the model under test (preset, mlx-lm directory or repo id)")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--allow-errors", action="store_true", help="exit 0 even when every served request failed")
    parser.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    import polars as pl

    args = setup_arg_parser().parse_args(argv)
    overrides = {"model": args.model} if args.model else {}
    config = experiments.build_config(args.experiment, args.params, overrides)
    if args.no_save:
        experiments.check_models(config)
        frame = experiments.get(args.experiment).run(config)
    else:
        frame, run_dir = experiments.run_and_save(config)
        print(f"results: {run_dir / 'results.parquet'}")
    if args.json:
        console.print_json(run_summary.variant_summaries(args.experiment, frame))
    else:
        with pl.Config(tbl_rows=100, tbl_cols=20, tbl_width_chars=200):
            print(run_summary.summary_table(args.experiment, frame))
    module = experiments.get(args.experiment)
    for line in getattr(module, "run_warnings", lambda f: [])(frame):
        print(f"warning: {line}", file=sys.stderr)
    warning = getattr(module, "failure_warning", lambda f: None)(frame)
    if warning and not args.allow_errors:
        print(f"warning: {warning}", file=sys.stderr)
        return EXIT_ALL_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(console.entry(main))
