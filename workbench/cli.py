"""`workbench <command> ...`: dispatch to the tool module that owns the command, as `mlx_lm.cli` does.

Each tool module owns `setup_arg_parser()` and `main(argv)`. A `WorkbenchError` ends with
one line `workbench: error: ...` on stderr and exit code 2, before anything is written;
any other exception is a bug and keeps its traceback. `--json` prints one JSON value (an
object; a list of per-variant objects for `run`) as the last line of output, never NaN.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "doctor": ("workbench.doctor", "main", "backend, versions, BLAS, hardware, readiness"),
    "build-model": ("workbench.build_model", "main", "build (or load from cache) an embedded model"),
    "bench": ("workbench.measure.bench", "main", "TTFT, ITL, TPOT, E2E and throughput on synthetic prompts"),
    "serve": ("workbench.serve", "main", "start mlx_lm.server on a model (managed; stops on Ctrl-C)"),
    "eval": ("workbench.measure.evaluate", "main", "perplexity, task accuracy and fidelity to a baseline"),
    "run": ("workbench.run", "main", "run an optimisation experiment from its params file"),
    "sweep": ("workbench.present.headline", "sweep_main", "execute a sweep file's points (resumable); a headline"),
    "sweeps": ("workbench.sweep.listing", "list_main", "list sweeps with their point counts and dates (--json)"),
    "export": ("workbench.results.export", "main", "write a sweep's rows to one CSV or Parquet file"),
    "report": ("workbench.present.report", "main", "render a sweep's stakeholder report to one offline HTML file"),
    "import": ("workbench.imports.importer", "main", "read GuideLLM, AIPerf or vllm bench serve results as rows"),
    "install-kernel": ("workbench.jupyter_kernel", "main", "register the 'workbench' Jupyter kernel"),
    "demo": ("workbench.demo", "main", "run the quickstart notebook on the default model with papermill"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "usage: workbench <command> [options]   (workbench <command> --help)\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from workbench import console, runtime

    if argv is None:
        runtime.ensure_optimised_blas()
        argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else console.EXIT_USAGE
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"workbench: error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return console.EXIT_USAGE
    module_name, function, _ = COMMANDS[command]
    return console.entry(getattr(importlib.import_module(module_name), function), rest)


if __name__ == "__main__":
    sys.exit(main())
