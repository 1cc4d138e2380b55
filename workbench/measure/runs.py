"""What every measuring command (`bench`, `bench --target`, `eval`) does before and after it measures: check that
its models resolve and the outputs folder takes a file, then write the run folder and print the summary."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from workbench import console

if TYPE_CHECKING:
    import polars as pl


def prepare_run(args: argparse.Namespace, model_specs: Iterable[str | None]) -> list[float] | None:
    """Before any work: every named model resolves, and (unless `--no-save`) the outputs folder takes a file.
    Returns the machine's load averages, to record as `load_before`."""
    from workbench import paths, runtime
    from workbench.models import loader

    for spec in filter(None, model_specs):
        loader.resolve(spec, build_missing=False)
    if not args.no_save:
        paths.check_writable(paths.outputs_dir() / "runs")
    return runtime.load_average()


def save_and_print(
    args: argparse.Namespace,
    frame: pl.DataFrame,
    summary: dict[str, Any],
    *,
    command: str,
    table: dict[str, Any] | None = None,
    load_before: list[float] | None = None,
    text: str | None = None,
) -> None:
    """Write the run folder (unless `--no-save`) with the machine's 1-minute load before and after the run, then
    print the summary as JSON, or `text` (a rendered table) and the run folder, or the summary as a table."""
    from workbench import runtime
    from workbench.results import store

    if not args.no_save:
        params = {"command": command, **{k: v for k, v in vars(args).items() if k != "json"}}
        env = runtime.fingerprint()
        env.update(load_before=load_before and load_before[0], load_after=env["load"] and env["load"][0])
        summary["run_dir"] = str(store.write_run(frame, params=params, env=env))
    if args.json:
        console.print_json(summary)
    elif text is not None:
        print(text)
        if summary.get("run_dir"):
            print(f"results: {summary['run_dir']}")
    else:
        console.print_table(
            table if table is not None else {k: v for k, v in summary.items() if not isinstance(v, list)}
        )
