"""The two basic runs every later experiment builds on: a speed benchmark and a quality evaluation.

Both return (rows as a polars frame in the shared schema, summary dict) and write nothing;
`save` writes a run folder. Used by the CLI and the notebooks alike:

    workbench bench --model default --prompt-tokens 128 --gen-tokens 64 --trials 3
    workbench eval --model default --task facts --baseline default
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from workbench import corpus, measure, models, quality, results, runtime, workloads


def _identity(
    loaded: models.LoadedModel,
    workload: workloads.Workload,
    *,
    run_id: str,
    experiment: str,
    variant: str,
    params: dict,
) -> dict:
    return {
        "run_id": run_id,
        "experiment": experiment,
        "variant": variant,
        "model_id": loaded.model_id,
        "model_hash": loaded.model_hash,
        "backend": runtime.backend(),
        "blas": runtime.active_blas(),
        "workload": workload.name,
        "workload_hash": workload.hash,
        "params_json": params,
    }


def run_bench(
    model: str | models.LoadedModel,
    *,
    prompt_tokens: int = 128,
    gen_tokens: int = 64,
    batch_size: int = 1,
    trials: int = 3,
    warmup: int = 1,
    requests: int | None = None,
    seed: int = 0,
    run_id: str | None = None,
    variant: str = "baseline",
    experiment: str = "bench",
    params: dict | None = None,
    generate_kwargs: dict | None = None,
) -> tuple[pl.DataFrame, dict]:
    """Synthetic fixed-length prompts, `requests` of them (default: one batch) per trial.

    `generate_kwargs` go to mlx-lm's generation (e.g. `draft_model`, `kv_bits`); `params`
    are the variant's parameters recorded with every row."""
    loaded = model if isinstance(model, models.LoadedModel) else models.load(model)
    vocab = loaded.config.get("vocab_size") or loaded.config["text_config"]["vocab_size"]
    workload = workloads.synthetic(
        prompt_tokens=prompt_tokens, count=requests or batch_size, vocab_size=vocab, seed=seed
    )
    rows = measure.measure_generation(
        loaded.model,
        loaded.tokenizer,
        workload.token_prompts(loaded.tokenizer),
        gen_tokens=gen_tokens,
        trials=trials,
        warmup=warmup,
        batch_size=batch_size,
        **(generate_kwargs or {}),
    )
    for row in rows:
        row.update(kind="speed", load_s=loaded.load_s)
    params = {
        "prompt_tokens": prompt_tokens,
        "gen_tokens": gen_tokens,
        "batch_size": batch_size,
        "trials": trials,
        "warmup": warmup,
        "seed": seed,
        **(params or {}),
    }
    frame = results.to_frame(
        rows,
        **_identity(
            loaded,
            workload,
            run_id=run_id or results.new_run_id(experiment),
            experiment=experiment,
            variant=variant,
            params=params,
        ),
    )
    summary = {
        "model_id": loaded.model_id,
        "backend": runtime.backend(),
        "load_s": loaded.load_s,
        **measure.run_summary(rows),
    }
    return frame, summary


def run_eval(
    model: str | models.LoadedModel,
    *,
    text: str | Path | None = None,
    sequence_length: int = 128,
    max_chunks: int | None = 64,
    task: str | None = None,
    task_count: int = 100,
    baseline: str | models.LoadedModel | None = None,
    fidelity_count: int = 16,
    fidelity_tokens: int = 32,
    run_id: str | None = None,
    variant: str = "baseline",
    experiment: str = "eval",
    params: dict | None = None,
) -> tuple[pl.DataFrame, dict]:
    """Perplexity on a text (`"stdlib"` = held-out stdlib docstrings), task score, fidelity to a baseline."""
    loaded = model if isinstance(model, models.LoadedModel) else models.load(model)
    run_id = run_id or results.new_run_id(experiment)
    frames, summary = [], {"model_id": loaded.model_id, "backend": runtime.backend()}
    params = params or {}
    base_params = {"sequence_length": sequence_length, "max_chunks": max_chunks, **params}

    if text is not None:
        body, name = (
            (corpus.heldout_text(), f"stdlib:{corpus.corpus_hash()}")
            if str(text) == "stdlib"
            else (Path(text).read_text(encoding="utf-8"), Path(text).name)
        )
        tokens = loaded.tokenizer.encode(body)
        chunks = quality.chunk_tokens(tokens, sequence_length, max_chunks)
        workload = workloads.Workload(f"text:{name}", (), params={"text": name, "chunks": chunks.tolist()})
        losses = quality.token_losses(loaded.model, chunks).reshape(len(chunks), -1)
        rows = [
            {"kind": "perplexity", "request_index": i, "nll_mean": float(chunk.mean()), "eval_tokens": chunk.size}
            for i, chunk in enumerate(losses)
        ]
        frames.append(
            results.to_frame(
                rows,
                **_identity(
                    loaded, workload, run_id=run_id, experiment=experiment, variant=variant, params=base_params
                ),
            )
        )
        summary["perplexity"] = math.exp(float(losses.mean()))
        summary["eval_tokens"] = int(losses.size)

    if task is not None:
        workload = workloads.task(task, count=task_count)
        rows = quality.task_rows(loaded.model, loaded.tokenizer, list(workload.prompts), list(workload.references))
        for i, row in enumerate(rows):
            row.update(kind="task", request_index=i)
        frames.append(
            results.to_frame(
                rows,
                **_identity(
                    loaded,
                    workload,
                    run_id=run_id,
                    experiment=experiment,
                    variant=variant,
                    params={"task": task, **params},
                ),
            )
        )
        summary["task_accuracy"] = sum(r["exact_match"] for r in rows) / len(rows)
        summary["task_f1"] = sum(r["token_f1"] for r in rows) / len(rows)
        summary["diversity"] = quality.diversity([r["prediction"] for r in rows])

    if baseline is not None:
        base = baseline if isinstance(baseline, models.LoadedModel) else models.load(baseline)
        workload = workloads.task(task or "facts", count=fidelity_count, seed=1)
        prompts = workload.token_prompts(base.tokenizer)
        continuations = quality.greedy_continuations(base.model, base.tokenizer, prompts, fidelity_tokens)
        sequences = [p + c for p, c in zip(prompts, continuations)]
        rows = quality.fidelity(base.model, loaded.model, sequences)
        for i, row in enumerate(rows):
            row.update(kind="fidelity", request_index=i)
        fid_params = {
            "baseline": base.model_id,
            "baseline_hash": base.model_hash,
            "fidelity_tokens": fidelity_tokens,
            **params,
        }
        frames.append(
            results.to_frame(
                rows,
                **_identity(loaded, workload, run_id=run_id, experiment=experiment, variant=variant, params=fid_params),
            )
        )
        summary["kl_mean"] = sum(r["kl_mean"] for r in rows) / len(rows)
        summary["greedy_agreement"] = sum(r["greedy_agreement"] * r["positions"] for r in rows) / sum(
            r["positions"] for r in rows
        )
        divergences = [r["first_divergence"] for r in rows if r["first_divergence"] >= 0]
        summary["first_divergence_median"] = float(sorted(divergences)[len(divergences) // 2]) if divergences else -1

    if not frames:
        raise ValueError("nothing to evaluate: give a text, a task or a baseline")
    return pl.concat(frames, how="vertical"), summary


def save(frame: pl.DataFrame, *, params: dict, run_dir: Path | None = None) -> Path:
    return results.write_run(frame, params=params, env=runtime.fingerprint(), run_dir=run_dir)
