"""The parts of `workbench eval` (`measure.evaluate.run_eval`): each measures one quality metric on a loaded
model and returns its rows, the workload they were measured on and the parameters they carry (`Measured`).

Perplexity of a text's chunks, scores on an eval set's items, fidelity to a baseline on its own continuations
(docs/quality.md). Kept apart from `evaluate` (its spec, loading and CLI) so that both stay under 400 lines.

    workbench eval --model default --task facts --baseline default --json
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from workbench import stats
from workbench.errors import DataError, UsageError
from workbench.measure import evalsets, quality
from workbench.models import loader
from workbench.results import store
from workbench.workloads import prompt_sets

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from mlx_lm.tokenizer_utils import TokenizerWrapper


class Measured(NamedTuple):
    """One quality metric's rows, the workload they were measured on and the parameters they carry."""

    kind: str
    rows: list[dict[str, Any]]
    workload: prompt_sets.Workload
    params: dict[str, Any]


def row_identity(
    loaded: loader.LoadedModel, workload: prompt_sets.Workload, params: dict[str, Any], shared: dict[str, Any]
) -> dict[str, Any]:
    return {**store.model_identity(loaded, workload), "params_json": params, **shared}


def text_chunks(
    tokenizer: TokenizerWrapper, body: str, source: object, sequence_length: int, max_chunks: int | None
) -> tuple[npt.NDArray[np.int32], int]:
    """(chunks, total tokens of the text); a text shorter than one chunk is a `DataError` naming it."""
    tokens = tokenizer.encode(body)
    if len(tokens) < sequence_length:
        raise DataError(
            f"text {source} has {len(tokens)} tokens, fewer than one chunk of {sequence_length} "
            "(lower --sequence-length)"
        )
    return quality.chunk_tokens(tokens, sequence_length, max_chunks), len(tokens)


def measure_perplexity(
    loaded: loader.LoadedModel,
    chunks: npt.NDArray[np.int32],
    total_tokens: int,
    name: str,
    params: dict[str, Any],
    summary: dict[str, Any],
    **kv: Any,
) -> Measured:
    workload = prompt_sets.Workload(f"text:{name}", (), params={"text": name, "chunks": chunks.tolist()})
    losses = quality.token_losses(loaded.model, chunks, **kv).reshape(len(chunks), -1)
    rows = [
        {"kind": "perplexity", "request_index": i, "nll_mean": float(chunk.mean()), "eval_tokens": chunk.size}
        for i, chunk in enumerate(losses)
    ]
    summary.update(
        text=name,
        **quality.summarise_losses(losses.reshape(-1)),
        eval_tokens=int(chunks.size),
        total_tokens=total_tokens,
        chunks=len(chunks),
        sequence_length=chunks.shape[1],
    )
    return Measured("perplexity", rows, workload, params)


def read_items(
    task: str | None,
    task_count: int,
    eval_set: str | Path | evalsets.EvalSet | None,
    metric: str,
    eval_limit: int | None,
) -> evalsets.EvalSet | None:
    """The eval set to score: the built-in facts items for `task`, or a file's (read and checked) or a given set."""
    if task is not None and eval_set is not None:
        raise UsageError("give a task or an eval set, not both")
    if task is not None:
        if task != "facts":
            raise UsageError(f"unknown task {task!r}; the built-in task is 'facts'")
        return evalsets.read_facts(task_count)
    if eval_set is None or isinstance(eval_set, evalsets.EvalSet):
        return eval_set
    return evalsets.read_eval_set(eval_set, metric=metric, limit=eval_limit)


def measure_items(
    loaded: loader.LoadedModel,
    items: evalsets.EvalSet,
    params: dict[str, Any],
    summary: dict[str, Any],
    chat: str,
    **kv: Any,
) -> Measured:
    """Every item of an eval set, greedy or by choice log-likelihood; the summary gets each metric's mean, and for
    generation items the mean exact match (`task_accuracy`), token F1 and the answers' diversity."""
    rows = evalsets.score_items(loaded, items, chat_mode=chat, **kv)
    generated = [r for r in rows if r.get("exact_match") is not None]
    summary["eval_set"] = items.name
    if generated:
        summary["task_accuracy"] = sum(r["exact_match"] for r in generated) / len(generated)
        summary["task_f1"] = sum(r["token_f1"] for r in generated) / len(generated)
        summary["diversity"] = quality.diversity([r["prediction"] for r in generated])
    summary.update(evalsets.summarise(rows))
    return Measured("task", rows, items.workload(), params)


def measure_fidelity(
    loaded: loader.LoadedModel,
    base: loader.LoadedModel,
    workload: prompt_sets.Workload,
    fidelity_tokens: int,
    params: dict[str, Any],
    summary: dict[str, Any],
    **kv: Any,
) -> Measured:
    """Fidelity on the baseline's own greedy continuations of held-out task prompts."""
    prompts = workload.token_prompts(base.tokenizer)
    continuations = quality.greedy_continuations(base.model, base.tokenizer, prompts, fidelity_tokens)
    sequences = [p + c for p, c in zip(prompts, continuations)]
    rows = quality.fidelity(base.model, loaded.model, sequences, **kv)
    for i, row in enumerate(rows):
        row.update(kind="fidelity", request_index=i)
    positions = sum(r["positions"] for r in rows)
    divergences = sorted(r["first_divergence"] for r in rows if r["first_divergence"] >= 0)
    summary.update(
        baseline=base.model_id,
        kl_mean=sum(r["kl_mean"] for r in rows) / len(rows),
        greedy_agreement=sum(r["greedy_agreement"] * r["positions"] for r in rows) / positions,
        first_divergence_median=stats.percentile(divergences, 50) if divergences else -1,
    )
    fid_params = {
        "baseline": base.model_id,
        "baseline_hash": base.model_hash,
        "baseline_dtype": base.dtype,
        "fidelity_tokens": fidelity_tokens,
    }
    return Measured("fidelity", rows, workload, {**fid_params, **params})
