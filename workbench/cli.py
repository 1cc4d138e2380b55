"""`workbench` command line: doctor, build-model, bench, eval.

Bad input ends with one line `workbench: error: ...` on stderr and exit code 2, before
anything is written. `--json` prints one JSON object as the last line of output.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(message)


def int_at_least(minimum: int):
    """An argparse type: an integer >= minimum, with a message that names the bound."""
    words = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {words}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def build_parser() -> Parser:
    from workbench.build import PRESETS
    from workbench.experiments import NAMES as EXPERIMENT_NAMES
    from workbench.tasks import TASKS

    parser = Parser(prog="workbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    doctor = sub.add_parser("doctor", help="backend, versions, BLAS, hardware, readiness")
    doctor.add_argument("--json", action="store_true")

    build = sub.add_parser("build-model", help="build (or load from cache) an embedded model")
    build.add_argument("--preset", default="default", choices=sorted(PRESETS))
    build.add_argument("--force", action="store_true", help="rebuild even if cached or committed")
    build.add_argument("--output", help="also copy the model directory here")
    build.add_argument("--no-eval", action="store_true", help="skip the held-out perplexity and task check")
    build.add_argument("--json", action="store_true")

    bench = sub.add_parser("bench", help="TTFT, ITL, TPOT, E2E and throughput on synthetic prompts")
    bench.add_argument("--model", default="default", help="preset, mlx-lm directory or Hugging Face repo id")
    bench.add_argument("--prompt-tokens", type=positive_int, default=128)
    bench.add_argument("--gen-tokens", type=positive_int, default=64)
    bench.add_argument("--batch", type=positive_int, default=1)
    bench.add_argument("--trials", type=positive_int, default=3)
    bench.add_argument("--warmup", type=non_negative_int, default=1)
    bench.add_argument("--no-save", action="store_true", help="do not write a run folder")
    bench.add_argument("--json", action="store_true")

    ev = sub.add_parser("eval", help="perplexity, task accuracy and fidelity to a baseline")
    ev.add_argument("--model", default="default")
    ev.add_argument("--text", help="text file for perplexity, or 'stdlib' for held-out stdlib docstrings")
    ev.add_argument("--sequence-length", type=positive_int, default=128)
    ev.add_argument("--max-chunks", type=positive_int, default=64)
    ev.add_argument("--task", choices=TASKS)
    ev.add_argument("--task-count", type=positive_int, default=100)
    ev.add_argument("--baseline", help="model to measure fidelity against")
    ev.add_argument("--no-save", action="store_true")
    ev.add_argument("--json", action="store_true")
    run = sub.add_parser("run", help="run an optimisation experiment from its params file")
    run.add_argument("experiment", choices=EXPERIMENT_NAMES)
    run.add_argument("--params", required=True, help="params/<experiment>.yaml")
    run.add_argument("--model", help="replace the model under test (preset, mlx-lm directory or repo id)")
    run.add_argument("--no-save", action="store_true")
    run.add_argument("--json", action="store_true")

    sw = sub.add_parser("sweep", help="expand a sweep file and execute its points with papermill (resumable)")
    sw.add_argument("params", help="params/<sweep>.yaml")
    sw.add_argument("--workers", type=positive_int)
    sw.add_argument("--executor", choices=("local", "dask"), default="local")
    sw.add_argument("--scheduler", help="address of an existing Dask scheduler")
    sw.add_argument("--timeout", type=positive_int, help="seconds per notebook cell")
    sw.add_argument("--retries", type=non_negative_int)
    sw.add_argument("--prepare-only", action="store_true", help="write parameterised notebooks, run nothing")
    sw.add_argument("--json", action="store_true")

    sub.add_parser("sweeps", help="list sweeps with their done/failed point counts")

    rep = sub.add_parser("report", help="render a sweep's stakeholder report to one offline HTML file")
    rep.add_argument("sweep", help="name of a sweep under outputs/sweeps/")
    rep.add_argument("--baseline", help="a previous sweep to check for regressions")
    rep.add_argument("--slo", help="YAML of SLO targets (ttft_s_p90_max, throughput_tps_min, task_accuracy_min, ...)")
    rep.add_argument("--quality", choices=("task_accuracy", "perplexity", "kl_mean"), default="task_accuracy")
    rep.add_argument("-o", "--output", default=None, help="report.html path (default: outputs/reports/<sweep>.html)")

    sub.add_parser("install-kernel", help="register the 'workbench' Jupyter kernel (BLAS preloaded)")

    demo = sub.add_parser("demo", help="run the quickstart notebook on the default model with papermill")
    demo.add_argument("--model", default="default")
    demo.add_argument("--trials", type=positive_int, default=3)
    return parser


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def print_table(summary: dict) -> None:
    width = max(map(len, summary), default=0)
    for key, value in summary.items():
        print(f"{key:<{width}}  {_fmt(value)}")


def cmd_doctor(args) -> int:
    from workbench import runtime

    info, problems = runtime.doctor()
    info["ready"] = not problems
    info["problems"] = problems
    args.summary = info
    if not args.json:
        print_table({k: v for k, v in info.items() if k != "problems"})
        for problem in problems:
            print(f"problem: {problem}")
    return 0 if not problems else 1


def cmd_build(args) -> int:
    import shutil
    import time

    from workbench import build, models

    start = time.perf_counter()
    path = build.build_model(args.preset, force=args.force)
    loaded = models.load(str(path))
    info = json.loads((path / "build.json").read_text())
    if args.output:
        shutil.copytree(path, args.output, dirs_exist_ok=True)
    summary = {
        "preset": args.preset,
        "path": str(path),
        "recipe_hash": info["recipe_hash"],
        "parameters": models.parameter_count(loaded.model),
        "seconds": time.perf_counter() - start,
        "build_seconds": info.get("build_seconds"),
        "final_loss": info.get("final_loss"),
    }
    if not args.no_eval:
        summary.update(build_quality(loaded, build.get_recipe(args.preset)))
    if not args.json:
        print_table(summary)
    args.summary = summary
    return 0


def build_quality(loaded, recipe) -> dict:
    """Held-out perplexity of the trained model against its untrained self, and task accuracy."""
    from workbench import bench, build, corpus, quality

    chunks = quality.chunk_tokens(loaded.tokenizer.encode(corpus.heldout_text()), 128, 64)
    untrained = quality.perplexity(build.init_model(recipe), chunks)["perplexity"]
    _, measured = bench.run_eval(
        loaded, text="stdlib", sequence_length=128, max_chunks=64, task="facts", task_count=200
    )
    return {
        "heldout_perplexity": measured["perplexity"],
        "untrained_perplexity": untrained,
        "task_accuracy": measured["task_accuracy"],
        "task_f1": measured["task_f1"],
    }


def _check_text(args) -> None:
    from pathlib import Path

    if args.text and args.text != "stdlib" and not Path(args.text).is_file():
        raise UsageError(f"--text {args.text}: no such file")
    if not (args.text or args.task or args.baseline):
        raise UsageError("eval needs at least one of --text, --task, --baseline")


def cmd_bench(args) -> int:
    from workbench import bench

    frame, summary = bench.run_bench(
        args.model,
        prompt_tokens=args.prompt_tokens,
        gen_tokens=args.gen_tokens,
        batch_size=args.batch,
        trials=args.trials,
        warmup=args.warmup,
    )
    if not args.no_save:
        summary["run_dir"] = str(bench.save(frame, params={"command": "bench", **_params(args)}))
    if not args.json:
        print_table(summary)
    args.summary = summary
    return 0


def cmd_eval(args) -> int:
    from workbench import bench

    frame, summary = bench.run_eval(
        args.model,
        text=args.text,
        sequence_length=args.sequence_length,
        max_chunks=args.max_chunks,
        task=args.task,
        task_count=args.task_count,
        baseline=args.baseline,
    )
    if not args.no_save:
        summary["run_dir"] = str(bench.save(frame, params={"command": "eval", **_params(args)}))
    if not args.json:
        print_table({k: v for k, v in summary.items() if not isinstance(v, dict)})
    args.summary = summary
    return 0


def _params(args) -> dict:
    return {k: v for k, v in vars(args).items() if k not in {"json", "summary", "func"}}


def load_experiment_config(args):
    from workbench import experiments
    from workbench.models import resolve

    config_cls, _ = experiments.get(args.experiment)
    config = config_cls.from_yaml(args.params, model=args.model)
    for spec in config.model_specs():
        resolve(spec, build_missing=False)
    return config


def cmd_run(args) -> int:
    from workbench import experiments, results, runtime

    config = args.config
    _, run = experiments.get(args.experiment)
    frame = run(config)
    summaries = experiments.summarise(args.experiment, frame)
    if not args.no_save:
        run_dir = results.write_run(
            frame, params={"experiment": args.experiment, **config.to_dict()}, env=runtime.fingerprint()
        )
        print(f"results: {run_dir / 'results.parquet'}")
    if not args.json:
        import polars as pl

        keys = [
            "variant",
            "ttft_s",
            "decode_tps",
            "throughput_tps",
            "peak_mem_bytes",
            "perplexity",
            "task_accuracy",
            "kl_mean",
            "greedy_agreement",
            "identical_to_baseline",
        ]
        table = pl.DataFrame([{k: s.get(k) for k in keys} for s in summaries], strict=False)
        with pl.Config(tbl_rows=100, tbl_cols=20, tbl_width_chars=200):
            print(table)
    args.summary = summaries
    return 0


def cmd_sweep(args) -> int:
    from workbench import sweep as sweeps

    plan = args.sweep_plan
    if args.prepare_only:
        for point in plan.points:
            print(sweeps.prepare_point(plan, point) / "prepared.ipynb")
        args.summary = {"sweep": plan.name, "points": len(plan.points), "prepared": len(plan.points)}
        return 0
    outcomes = sweeps.run_sweep(
        plan,
        workers=args.workers or sweeps.default_workers(),
        executor=args.executor,
        scheduler=args.scheduler,
        timeout_s=args.timeout,
        retries=args.retries,
    )
    failed = [o for o in outcomes if o["status"] == "failed"]
    summary = {
        "sweep": plan.name,
        "points": len(plan.points),
        "ran": sum(o["status"] == "done" for o in outcomes),
        "skipped": sum(o["status"] == "skipped" for o in outcomes),
        "failed": len(failed),
        "root": str(plan.root),
    }
    if not args.json:
        print_table(summary)
        for o in failed:
            print(f"failed {o['point_id']}: {o['error']} (see {o['executed_notebook']})")
    args.summary = {**summary, "failures": failed}
    return 1 if failed else 0


def cmd_sweeps(args) -> int:
    from workbench.sweep import list_sweeps

    for row in list_sweeps():
        print(f"{row['sweep']:<30} done {row['done']:>4}  failed {row['failed']:>4}")
    return 0


def _check_report(args) -> None:
    from pathlib import Path

    from workbench.paths import outputs_dir

    for name in filter(None, (args.sweep, args.baseline)):
        if not list((outputs_dir() / "sweeps" / name).glob("*/results.parquet")):
            raise UsageError(f"sweep {name!r} has no finished points under {outputs_dir() / 'sweeps'}")
    if args.slo:
        from workbench.analysis import load_slo

        if not Path(args.slo).is_file():
            raise UsageError(f"--slo {args.slo}: no such file")
        load_slo(args.slo)


def cmd_report(args) -> int:
    from pathlib import Path

    from workbench import report
    from workbench.paths import outputs_dir

    output = Path(args.output) if args.output else outputs_dir() / "reports" / f"{args.sweep}.html"
    path = report.render(args.sweep, output, baseline_sweep=args.baseline, slo_file=args.slo, quality=args.quality)
    print(f"report: {path}")
    print(f"charts: {path.parent / (path.stem + '_charts')}")
    args.summary = {"report": str(path)}
    return 0


def cmd_install_kernel(args) -> int:
    from workbench.kernel import install_kernel

    print(f"installed Jupyter kernel 'workbench' at {install_kernel()}")
    return 0


def cmd_demo(args) -> int:
    from workbench.demo import run_demo

    out_dir = run_demo(model=args.model, trials=args.trials)
    print(f"executed notebook: {out_dir / 'executed.ipynb'}")
    print(f"results:           {out_dir / 'results.parquet'}")
    return 0


COMMANDS = {
    "doctor": cmd_doctor,
    "build-model": cmd_build,
    "bench": cmd_bench,
    "eval": cmd_eval,
    "install-kernel": cmd_install_kernel,
    "demo": cmd_demo,
    "run": cmd_run,
    "sweep": cmd_sweep,
    "sweeps": cmd_sweeps,
    "report": cmd_report,
}


def main(argv: list[str] | None = None) -> int:
    from workbench import runtime

    if argv is None:
        runtime.ensure_optimised_blas()
    from workbench.models import ModelError

    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "model", None) is not None and args.command != "run":
            from workbench.models import resolve

            resolve(args.model, build_missing=False)  # fail fast on a missing model, before any work
        if getattr(args, "baseline", None):
            resolve(args.baseline, build_missing=False)
        if args.command == "eval":
            _check_text(args)
        if args.command == "run":
            args.config = load_experiment_config(args)
        if args.command == "report":
            _check_report(args)
        if args.command == "sweep":
            from workbench.sweep import load_sweep

            args.sweep_plan = load_sweep(args.params)
        code = COMMANDS[args.command](args)
    except (UsageError, ModelError, ValueError) as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "json", False):
        print(json.dumps(getattr(args, "summary", None), default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
