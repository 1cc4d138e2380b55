"""`workbench build-model`: build (or reuse from the cache) an embedded model, and measure its quality.

workbench build-model --preset default [--force] [--output DIR] [--no-eval] [--json]
"""

from __future__ import annotations

import json
import shutil
import sys
import time

from workbench import console
from workbench.models import build, loader


def setup_arg_parser() -> console.Parser:
    parser = console.parser("build-model", "build (or load from cache) an embedded model")
    parser.add_argument("--preset", default="default", choices=sorted(build.PRESETS))
    parser.add_argument("--force", action="store_true", help="rebuild even if cached or committed")
    parser.add_argument("--output", help="also copy the model directory here")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out perplexity and task check")
    parser.add_argument("--json", action="store_true")
    return parser


def build_quality(loaded, recipe) -> dict:
    """Held-out perplexity of the trained model against its untrained self, and task accuracy."""
    from workbench.measure import evaluate, quality
    from workbench.workloads import corpus

    chunks = quality.chunk_tokens(loaded.tokenizer.encode(corpus.heldout_text()), 128, 64)
    untrained = quality.perplexity(build.init_model(recipe), chunks)["perplexity"]
    _, measured = evaluate.run_eval(
        loaded, evaluate.EvalSpec(text="stdlib", sequence_length=128, max_chunks=64, task="facts", task_count=200)
    )
    return {
        "heldout_perplexity": measured["perplexity"],
        "untrained_perplexity": untrained,
        "task_accuracy": measured["task_accuracy"],
        "task_f1": measured["task_f1"],
    }


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    start = time.perf_counter()
    path = build.build_model(args.preset, force=args.force)
    loaded = loader.load(str(path))
    info = json.loads((path / "build.json").read_text())
    if args.output:
        shutil.copytree(path, args.output, dirs_exist_ok=True)
    summary = {
        "preset": args.preset,
        "path": str(path),
        "recipe_hash": info["recipe_hash"],
        "parameters": loader.parameter_count(loaded.model),
        "seconds": time.perf_counter() - start,
        "build_seconds": info.get("build_seconds"),
        "final_loss": info.get("final_loss"),
    }
    if not args.no_eval:
        summary.update(build_quality(loaded, build.get_recipe(args.preset)))
    if args.json:
        console.print_json(summary)
    else:
        console.print_table(summary)
    return 0


if __name__ == "__main__":
    sys.exit(console.entry(main))
