"""`workbench eval`: perplexity of a text, task accuracy, and fidelity to a baseline model.

What it measures, and on what (docs/quality.md):
- `--text FILE`: perplexity of the whole file, cut into non-overlapping chunks of
  `--sequence-length` tokens (the remainder dropped), as `mlx_lm.perplexity.eval_ppl`;
  `--max-chunks N` evaluates the first N chunks only, and the output says "N of M tokens".
- `--eval-set FILE`: a JSONL eval set (generation or multiple-choice items, `workbench.measure.evalsets`),
  one row per item with its metric and score; `--task facts` is the built-in one,
  `workbench/workloads/data/facts_heldout.jsonl` (its first `--task-count` items), scored the same way.
- `--lm-eval TASKS`: lm-evaluation-harness tasks through mlx-lm's wrapper (`workbench.measure.lm_eval_tasks`,
  an optional extra), their documents as rows of the same kind.
- `--baseline M2`: KL(baseline || model), greedy agreement and first divergence on the
  baseline's own continuations; refused when the two tokenizers differ.
- `--kv-bits B`: all of the above with the model reading a quantised KV cache.

Rows come back in the shared schema (one per chunk, task item or fidelity sequence),
with the compute dtype and the metrics measured (`quality_measured`) in their identity.

    workbench eval --model default --text notes.txt
    workbench eval --model default --task facts --baseline default --kv-bits 8 --json
    workbench eval --model default --eval-set my_items.jsonl --chat on --json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict

from workbench import console, runtime
from workbench.errors import DataError, UsageError
from workbench.measure import evalsets, quality, runs
from workbench.measure.eval_parts import (
    Measured,
    measure_fidelity,
    measure_items,
    measure_perplexity,
    read_items,
    row_identity,
    text_chunks,
)
from workbench.models import loader
from workbench.results import store
from workbench.workloads import corpus, prompt_sets


def read_text(text: str | Path) -> tuple[str, str]:
    """(body, name) of a text to evaluate: a UTF-8 file, or `"stdlib"` for the held-out stdlib docstrings."""
    if str(text) == "stdlib":
        return corpus.heldout_text(), f"stdlib:{corpus.corpus_hash()}"
    path = Path(text)
    if not path.exists():
        raise DataError(f"text file {path}: no such file")
    if path.is_dir():
        raise DataError(f"text file {path} is a directory, not a file")
    try:
        return path.read_text(encoding="utf-8"), path.name
    except UnicodeDecodeError as exc:
        raise DataError(f"text file {path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"text file {path} cannot be read ({exc.strerror})") from None


def load_pair(
    model: str | loader.LoadedModel, baseline: str | loader.LoadedModel | None, *, dtype: str
) -> tuple[loader.LoadedModel, loader.LoadedModel | None]:
    """The model and its baseline (specs are loaded in `dtype`); refused when their tokenizers differ."""
    loaded = model if isinstance(model, loader.LoadedModel) else loader.load(model, dtype=dtype)
    if baseline is None:
        return loaded, None
    base = baseline if isinstance(baseline, loader.LoadedModel) else loader.load(baseline, dtype=dtype)
    loader.check_same_tokenizer(loaded, base)
    return loaded, base


class EvalSpec(BaseModel):
    """What `run_eval` measures: perplexity on a text (`"stdlib"` = held-out stdlib docstrings; all chunks unless
    `max_chunks`), scores on an eval set (`task="facts"`: the built-in one, its first `task_count` items; else
    `eval_set`, a JSONL path, up to `eval_limit` items, `metric` for items that name none, `chat` for messages),
    lm-eval tasks, fidelity to a `baseline`; and the identity its rows carry (`run_id`, `variant`, `experiment`,
    `params`, `identity`: family, changes_json, lossless). `dtype` applies to models given as specs; `kv_bits`
    quantises the model's KV cache (not the baseline's)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    text: str | Path | None = None
    sequence_length: int = 128
    max_chunks: int | None = None
    task: str | None = None
    task_count: int = 100
    eval_set: Any = None  # a JSONL path or an `evalsets.EvalSet`, taken as given
    metric: str = "exact_match"
    eval_limit: int | None = None
    chat: str = "auto"
    lm_eval: list[str] | None = None
    lm_eval_include: str | Path | None = None
    allow_task_code: bool = False  # let an include folder's tasks run their Python (lm_eval_tasks.check_include)
    lm_eval_limit: int | None = None
    baseline: Any = None  # a model spec (str) or a `loader.LoadedModel`, taken as given
    fidelity_count: int = 16
    fidelity_tokens: int = 32
    run_id: str | None = None
    variant: str = "baseline"
    experiment: str = "eval"
    params: dict[str, Any] | None = None
    dtype: str = "auto"
    kv_bits: int | None = None
    kv_group_size: int = 64
    identity: dict[str, Any] | None = None


def run_eval(model: str | loader.LoadedModel, spec: EvalSpec) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Measure what `spec` asks of `model`. Writes nothing; `quality_measured` is set to what this call measured."""
    text = spec.text
    sequence_length = spec.sequence_length
    max_chunks = spec.max_chunks
    task = spec.task
    task_count = spec.task_count
    eval_set = spec.eval_set
    metric = spec.metric
    eval_limit = spec.eval_limit
    chat = spec.chat
    lm_eval = spec.lm_eval
    lm_eval_include = spec.lm_eval_include
    allow_task_code = spec.allow_task_code
    lm_eval_limit = spec.lm_eval_limit
    baseline = spec.baseline
    fidelity_count = spec.fidelity_count
    fidelity_tokens = spec.fidelity_tokens
    run_id = spec.run_id
    variant = spec.variant
    experiment = spec.experiment
    params = spec.params
    dtype = spec.dtype
    kv_bits = spec.kv_bits
    kv_group_size = spec.kv_group_size
    identity = spec.identity
    if text is None and task is None and eval_set is None and not lm_eval and baseline is None:
        raise UsageError("nothing to evaluate: give a text, a task, an eval set, lm-eval tasks or a baseline")
    quality.check_kv_quantisation(kv_bits, kv_group_size)
    if lm_eval and kv_bits:
        raise UsageError("lm-eval tasks run on the plain KV cache: leave out kv_bits")
    body, text_name = read_text(text) if text is not None else (None, None)
    items = read_items(task, task_count, eval_set, metric, eval_limit)
    loaded, base = load_pair(model, baseline, dtype=dtype)
    kv = {"kv_bits": kv_bits, "kv_group_size": kv_group_size}
    params = {**(params or {}), **({"kv_bits": kv_bits, "kv_group_size": kv_group_size} if kv_bits else {})}
    summary: dict[str, Any] = {
        "model_id": loaded.model_id,
        "backend": runtime.backend(),
        "dtype": loaded.dtype,
        "kv_bits": kv_bits,
    }
    parts = []
    if body is not None and text_name is not None:
        chunks, total_tokens = text_chunks(loaded.tokenizer, body, text, sequence_length, max_chunks)
        text_params = {"sequence_length": sequence_length, "max_chunks": max_chunks, **params}
        parts.append(measure_perplexity(loaded, chunks, total_tokens, text_name, text_params, summary, **kv))
    if items is not None:
        item_params = {**({"task": task} if task else {"eval_set": items.name, "chat": chat}), **params}
        parts.append(measure_items(loaded, items, item_params, summary, chat, **kv))
    if lm_eval:
        from workbench.measure import lm_eval_tasks

        found, lm_summary = lm_eval_tasks.run_tasks(
            loaded,
            list(lm_eval),
            include=lm_eval_include,
            limit=lm_eval_limit,
            chat_mode=chat,
            allow_code=allow_task_code,
        )
        parts += [Measured("lm_eval", rows, workload, {**p, **params}) for _, rows, workload, p in found]
        summary.update(lm_summary)
    if base is not None:
        workload = prompt_sets.task(task or "facts", count=fidelity_count, seed=1)
        parts.append(measure_fidelity(loaded, base, workload, fidelity_tokens, params, summary, **kv))
    summary["quality_measured"] = ",".join(dict.fromkeys(part.kind for part in parts))
    shared = {
        "run_id": run_id or store.new_run_id(experiment),
        "experiment": experiment,
        "variant": variant,
        **(identity or {}),
        "dtype": loaded.dtype,
        "quality_measured": summary["quality_measured"],
    }
    frames = [store.to_frame(part.rows, **row_identity(loaded, part.workload, part.params, shared)) for part in parts]
    return pl.concat(frames, how="vertical"), summary


def check_renderable(items: evalsets.EvalSet | None, model: str, chat_mode: str) -> None:
    """Chat items for a local model without a chat template (or with `--chat off`), and items too long for the
    model's context (`evalsets.check_fits`): one line before anything is written (a Hugging Face id's tokenizer is
    only known once loaded; `chat.render` refuses it then)."""
    from workbench.workloads import chat

    if items is None:
        return
    if not any(i.messages is not None for i in items.items):
        evalsets.check_fits(items, chat.local_tokenizer(model), chat.local_context(model), chat_mode)
        return
    if chat_mode == "off":
        raise DataError(f"{items.name}: chat messages with --chat off: use --chat auto or on, or give raw prompts")
    tokenizer = chat.local_tokenizer(model)
    if tokenizer is not None and not chat.has_template(tokenizer):
        raise DataError(
            f"{items.name}: the model's tokenizer has no chat template, so chat messages cannot be rendered"
        )
    evalsets.check_fits(items, tokenizer, chat.local_context(model), chat_mode)


def setup_arg_parser() -> console.Parser:
    from workbench.workloads.chat import CHAT_MODES
    from workbench.workloads.tasks import TASKS

    parser = console.parser("eval", "perplexity, eval-set scores, lm-eval tasks and fidelity to a baseline")
    parser.add_argument("--model", default="default", help="preset, mlx-lm directory or Hugging Face repo id")
    parser.add_argument("--text", help="UTF-8 text file for perplexity, or 'stdlib' for held-out stdlib docstrings")
    parser.add_argument("--sequence-length", type=console.int_at_least(2), default=128, help="tokens per chunk")
    parser.add_argument(
        "--max-chunks", type=console.positive_int, help="evaluate only the first N chunks (default: all)"
    )
    parser.add_argument(
        "--task", choices=TASKS, help="the built-in eval set (workbench/workloads/data/facts_heldout.jsonl)"
    )
    parser.add_argument("--task-count", type=console.positive_int, default=100, help="its first N items")
    parser.add_argument("--eval-set", help="JSONL eval set: generation or multiple-choice items (docs/quality.md)")
    parser.add_argument("--metric", choices=evalsets.METRICS, default="exact_match", help="for items naming none")
    parser.add_argument("--eval-limit", type=console.positive_int, help="score only the first N items of --eval-set")
    parser.add_argument("--chat", choices=CHAT_MODES, default="auto", help="auto: template for messages only")
    parser.add_argument("--lm-eval", help="comma-separated lm-evaluation-harness tasks (optional extra lm-eval)")
    parser.add_argument("--lm-eval-include", help="folder of local lm-eval task YAML files (data only by default)")
    parser.add_argument(
        "--allow-task-code", action="store_true", help="let --lm-eval-include tasks run their Python (!function)"
    )
    parser.add_argument("--lm-eval-limit", type=console.positive_int, help="documents per lm-eval task")
    parser.add_argument("--baseline", help="model to measure fidelity against (must share the tokenizer)")
    parser.add_argument("--dtype", choices=loader.DTYPES, default="auto", help="auto: float32 on CPU, else checkpoint")
    parser.add_argument("--kv-bits", type=int, choices=quality.KV_BITS, help="quantise the model's KV cache")
    parser.add_argument("--kv-group-size", type=int, choices=quality.KV_GROUP_SIZES, default=64)
    parser.add_argument("--no-save", action="store_true", help="do not write a run folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return parser


FROM_FLAGS = (
    "text",
    "sequence_length",
    "max_chunks",
    "task",
    "task_count",
    "eval_set",
    "metric",
    "eval_limit",
    "chat",
    "lm_eval_include",
    "allow_task_code",
    "lm_eval_limit",
    "baseline",
    "dtype",
    "kv_bits",
    "kv_group_size",
)  # EvalSpec fields set by flags of the same name


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    if not (args.text or args.task or args.eval_set or args.lm_eval or args.baseline):
        raise UsageError("eval needs at least one of --text, --task, --eval-set, --lm-eval, --baseline")
    if args.text and args.text != "stdlib":
        read_text(args.text)  # a missing or unreadable file is one line before anything is created
    items = read_items(args.task, args.task_count, args.eval_set, args.metric, args.eval_limit)  # before any work
    check_renderable(items, args.model, args.chat)
    lm_tasks = [name.strip() for name in (args.lm_eval or "").split(",") if name.strip()] or None
    if args.lm_eval is not None:
        if args.kv_bits:
            raise UsageError("--lm-eval runs on the plain KV cache: leave out --kv-bits")
        from workbench.measure import lm_eval_tasks

        lm_eval_tasks.find_tasks(lm_tasks or [], args.lm_eval_include, allow_code=args.allow_task_code)
    load_before = runs.prepare_run(args, [args.model, args.baseline])
    frame, summary = run_eval(
        args.model,
        EvalSpec(lm_eval=lm_tasks, **{name: getattr(args, name) for name in FROM_FLAGS}),
    )
    from workbench import terminal

    text = terminal.key_values(display(summary), title=f"eval: {summary.get('model_id', args.model)}")
    runs.save_and_print(args, frame, summary, command="eval", load_before=load_before, text=text)
    return 0


def display(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as a table: the text's token counts as one "N of M tokens" line, nested values left out."""
    shown = {}
    for key, value in summary.items():
        if key == "eval_tokens":
            chunks = f"{summary['chunks']} chunks of {summary['sequence_length']}"
            shown["evaluated"] = f"{value} of {summary['total_tokens']} tokens ({chunks})"
        elif key not in {"total_tokens", "chunks", "sequence_length"} and value is not None:
            if not isinstance(value, dict):
                shown[key] = value
    return shown


if __name__ == "__main__":
    runtime.ensure_optimised_blas()
    sys.exit(console.entry(main))
