"""Quality measurement: perplexity, fidelity to a baseline model, task score, diversity.

- perplexity: tokenize once, cut into non-overlapping chunks of L tokens (remainder
  dropped), mean cross-entropy of positions 1..L-1 over all chunks, exp of the mean; the
  computation of `mlx_lm.perplexity.eval_ppl`, which is checked against it in the tests.
- fidelity: on the same token sequences, mean KL(baseline || variant) of the next-token
  distributions, greedy (argmax) agreement, first position where the argmaxes differ.
- task score: greedy answers against references, exact match and token F1.
- diversity: distinct-2 and first-word repetition rate of a set of generations.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np


def chunk_tokens(tokens: list[int], sequence_length: int, max_chunks: int | None = None) -> np.ndarray:
    """Non-overlapping chunks of `sequence_length` tokens; the remainder is dropped."""
    if sequence_length < 2:
        raise ValueError(f"sequence_length must be >= 2, got {sequence_length}")
    n = len(tokens) // sequence_length
    if n == 0:
        raise ValueError(f"text has {len(tokens)} tokens, fewer than one chunk of {sequence_length}")
    if max_chunks is not None:
        n = min(n, max_chunks)
    return np.asarray(tokens[: n * sequence_length], dtype=np.int32).reshape(n, sequence_length)


def token_losses(model, chunks: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Cross-entropy of every position 1..L-1 of every chunk, flattened."""
    import mlx.core as mx
    import mlx.nn as nn

    losses = []
    for start in range(0, len(chunks), batch_size):
        batch = mx.array(chunks[start : start + batch_size])
        logits = model(batch[:, :-1]).astype(mx.float32)
        loss = nn.losses.cross_entropy(logits, batch[:, 1:], reduction="none")
        mx.eval(loss)
        losses.append(np.array(loss).reshape(-1))
    return np.concatenate(losses)


def perplexity(model, chunks: np.ndarray, batch_size: int = 8) -> dict:
    """Perplexity, its standard error (delta method, as mlx-lm) and the token count."""
    losses = token_losses(model, chunks, batch_size)
    mean = float(losses.mean())
    ppl = math.exp(mean)
    se = ppl * float(losses.std(ddof=1)) / math.sqrt(losses.size) if losses.size > 1 else math.nan
    return {"perplexity": ppl, "perplexity_se": se, "nll_mean": mean, "eval_tokens": int(losses.size)}


def _log_probs(model, tokens: list[int]):
    import mlx.core as mx

    logits = model(mx.array(tokens)[None])[0].astype(mx.float32)
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


def fidelity(baseline, variant, sequences: list[list[int]]) -> list[dict]:
    """Per sequence: mean KL(baseline || variant), greedy agreement, first divergence position."""
    import mlx.core as mx

    rows = []
    for tokens in sequences:
        p = _log_probs(baseline, tokens)
        q = _log_probs(variant, tokens)
        kl = (mx.exp(p) * (p - q)).sum(axis=-1)
        same = mx.argmax(p, axis=-1) == mx.argmax(q, axis=-1)
        mx.eval(kl, same)
        same = np.array(same)
        diverged = np.flatnonzero(~same)
        rows.append(
            {
                "kl_mean": float(np.array(kl).mean()),
                "greedy_agreement": float(same.mean()),
                "first_divergence": int(diverged[0]) if diverged.size else -1,
                "positions": int(same.size),
            }
        )
    return rows


def greedy_continuations(model, tokenizer, prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
    """Greedy token continuations, stopping at EOS."""
    import mlx.core as mx
    from mlx_lm import stream_generate

    outputs = []
    for prompt in prompts:
        tokens = [r.token for r in stream_generate(model, tokenizer, mx.array(prompt), max_tokens=max_tokens)]
        outputs.append([t for t in tokens if t not in tokenizer.eos_token_ids])
    return outputs


def normalise(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() else " " for c in text).split()


def exact_match(prediction: str, reference: str) -> float:
    return float(normalise(prediction) == normalise(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalise(prediction), normalise(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def task_rows(model, tokenizer, prompts: list[str], references: list[str], *, max_tokens: int = 6) -> list[dict]:
    """Greedy answer per prompt, scored against its reference."""
    from workbench.tasks import extract_answer

    encoded = [tokenizer.encode(p) for p in prompts]
    rows = []
    for tokens, reference in zip(greedy_continuations(model, tokenizer, encoded, max_tokens), references):
        answer = extract_answer(tokenizer.decode(tokens))
        rows.append(
            {
                "prediction": answer,
                "reference": reference,
                "exact_match": exact_match(answer, reference),
                "token_f1": token_f1(answer, reference),
            }
        )
    return rows


def diversity(texts: list[str]) -> dict:
    """distinct-2 (unique bigrams / bigrams) and the share of texts whose first word repeats another's."""
    bigrams = [tuple(w[i : i + 2]) for w in map(normalise, texts) for i in range(len(w) - 1)]
    firsts = [w[0] for w in map(normalise, texts) if w]
    counts = Counter(firsts)
    return {
        "distinct_2": len(set(bigrams)) / len(bigrams) if bigrams else math.nan,
        "first_word_repetition": sum(c for c in counts.values() if c > 1) / len(firsts) if firsts else math.nan,
    }
