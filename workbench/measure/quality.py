"""Quality measurement: perplexity, fidelity to a baseline model, task score, diversity.

- perplexity: tokenize once, cut into non-overlapping chunks of L tokens (remainder
  dropped), mean cross-entropy of positions 1..L-1 over all chunks, exp of the mean; the
  computation of `mlx_lm.perplexity.eval_ppl`, which is checked against it in the tests.
- fidelity: on the same token sequences, mean KL(baseline || variant) of the next-token
  distributions, greedy (argmax) agreement, first position where the argmaxes differ.
- task score: greedy answers against references, exact match and token F1.
- eval-set scores (`workbench.measure.evalsets`): greedy generation up to `max_tokens`, EOS or a stop
  string (`generate_until`), scored by one of `GENERATION_METRICS`; multiple choice by the
  summed log-probability of each choice's tokens given the prompt (`choice_logprobs`), as
  lm-evaluation-harness scores MMLU: acc = the most likely choice is the answer, acc_norm =
  the same after dividing each choice's log-likelihood by its length in characters.
- diversity: distinct-2 and first-word repetition rate of a set of generations.

With `kv_bits` set, the model under test reads a quantised KV cache from position 0
(mlx-lm's `quantized_kv_start=0`): the forward pass feeds the first token, converts each
layer's cache with `to_quantized`, then feeds the rest, so every later position attends
to quantised keys and values; generation passes `kv_bits` to `stream_generate`.
`kv_bits=None` is the plain forward pass. See docs/quality.md.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from workbench.errors import ConfigError

if TYPE_CHECKING:
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.tokenizer_utils import TokenizerWrapper

KV_BITS = (2, 3, 4, 5, 6, 8)
KV_GROUP_SIZES = (32, 64, 128)


def chunk_tokens(tokens: list[int], sequence_length: int, max_chunks: int | None = None) -> npt.NDArray[np.int32]:
    """Non-overlapping chunks of `sequence_length` tokens; the remainder is dropped."""
    if sequence_length < 2:
        raise ValueError(f"sequence_length must be >= 2, got {sequence_length}")
    n = len(tokens) // sequence_length
    if n == 0:
        raise ValueError(f"text has {len(tokens)} tokens, fewer than one chunk of {sequence_length}")
    if max_chunks is not None:
        n = min(n, max_chunks)
    return np.asarray(tokens[: n * sequence_length], dtype=np.int32).reshape(n, sequence_length)


def check_kv_quantisation(kv_bits: int | None, kv_group_size: int, head_dims: set[int] | None = None) -> None:
    """Refuse KV settings MLX cannot quantise: unsupported bits or group size, or a group that does not
    divide the head dimension (keys and values are quantised along it)."""
    if kv_bits is None:
        return
    if kv_bits not in KV_BITS:
        raise ConfigError(f"kv_bits={kv_bits} is not supported; choose one of {KV_BITS}")
    if kv_group_size not in KV_GROUP_SIZES:
        raise ConfigError(f"kv_group_size={kv_group_size} is not supported; choose one of {KV_GROUP_SIZES}")
    for dim in sorted(head_dims or ()):
        if dim % kv_group_size:
            raise ConfigError(f"kv_group_size={kv_group_size} does not divide the model's head dimension {dim}")


def quantise_cache(cache: list[Any], *, bits: int, group_size: int) -> None:
    """Convert, in place, every layer cache that supports it to a quantised one (as mlx-lm's generation)."""
    check_kv_quantisation(bits, group_size, _cache_dims(cache))
    for i, layer in enumerate(cache):
        if hasattr(layer, "to_quantized"):
            cache[i] = layer.to_quantized(group_size=group_size, bits=bits)


def forward(model: nn.Module, inputs: mx.array, *, kv_bits: int | None = None, kv_group_size: int = 64) -> mx.array:
    """Logits for a (batch, length) token array; with `kv_bits`, attention reads a quantised KV cache
    from the second position on (the first token is fed alone, then the cache is converted)."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    if kv_bits is None:
        logits: mx.array = model(inputs)
        return logits
    cache = make_prompt_cache(model)
    first: mx.array = model(inputs[:, :1], cache=cache)
    quantise_cache(cache, bits=kv_bits, group_size=kv_group_size)
    if inputs.shape[1] == 1:
        return first
    return mx.concatenate([first, model(inputs[:, 1:], cache=cache)], axis=1)


def token_losses(
    model: nn.Module,
    chunks: npt.NDArray[np.int32],
    batch_size: int = 8,
    *,
    kv_bits: int | None = None,
    kv_group_size: int = 64,
) -> npt.NDArray[np.float32]:
    """Cross-entropy of every position 1..L-1 of every chunk, flattened."""
    import mlx.core as mx
    import mlx.nn as nn

    losses = []
    for start in range(0, len(chunks), batch_size):
        batch = mx.array(chunks[start : start + batch_size])
        logits = forward(model, batch[:, :-1], kv_bits=kv_bits, kv_group_size=kv_group_size).astype(mx.float32)
        loss = nn.losses.cross_entropy(logits, batch[:, 1:], reduction="none")
        mx.eval(loss)
        losses.append(np.array(loss).reshape(-1))
    return np.concatenate(losses)


def perplexity(
    model: nn.Module,
    chunks: npt.NDArray[np.int32],
    batch_size: int = 8,
    *,
    kv_bits: int | None = None,
    kv_group_size: int = 64,
) -> dict[str, float]:
    """Perplexity, its standard error (delta method, as mlx-lm) and the token count."""
    losses = token_losses(model, chunks, batch_size, kv_bits=kv_bits, kv_group_size=kv_group_size)
    return {**summarise_losses(losses), "eval_tokens": int(losses.size)}


def summarise_losses(losses: npt.NDArray[np.floating[Any]]) -> dict[str, float]:
    """exp of the mean token loss, its standard error by the delta method (as mlx-lm), the mean loss."""
    mean = float(losses.mean())
    ppl = math.exp(mean)
    se = ppl * float(losses.std(ddof=1)) / math.sqrt(losses.size) if losses.size > 1 else math.nan
    return {"perplexity": ppl, "perplexity_se": se, "nll_mean": mean}


def _log_probs(model: nn.Module, tokens: list[int], **kv: Any) -> mx.array:
    import mlx.core as mx

    logits = forward(model, mx.array(tokens)[None], **kv)[0].astype(mx.float32)
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


def fidelity(
    baseline: nn.Module,
    variant: nn.Module,
    sequences: list[list[int]],
    *,
    kv_bits: int | None = None,
    kv_group_size: int = 64,
) -> list[dict[str, Any]]:
    """Per sequence: mean KL(baseline || variant), greedy agreement, first divergence position.
    `kv_bits` applies to the variant only: the baseline is the reference."""
    import mlx.core as mx

    rows = []
    for tokens in sequences:
        p = _log_probs(baseline, tokens)
        q = _log_probs(variant, tokens, kv_bits=kv_bits, kv_group_size=kv_group_size)
        kl = (mx.exp(p) * (p - q)).sum(axis=-1)
        same = mx.argmax(p, axis=-1) == mx.argmax(q, axis=-1)
        mx.eval(kl, same)
        agreed = np.array(same)
        diverged = np.flatnonzero(~agreed)
        rows.append(
            {
                "kl_mean": float(np.array(kl).mean()),
                "greedy_agreement": float(agreed.mean()),
                "first_divergence": int(diverged[0]) if diverged.size else -1,
                "positions": int(agreed.size),
            }
        )
    return rows


def greedy_continuations(
    model: nn.Module,
    tokenizer: TokenizerWrapper,
    prompts: list[list[int]],
    max_tokens: int,
    *,
    kv_bits: int | None = None,
    kv_group_size: int = 64,
) -> list[list[int]]:
    """Greedy token continuations, stopping at EOS; with `kv_bits`, from a KV cache quantised from position 0."""
    import mlx.core as mx
    from mlx_lm import stream_generate

    kv: dict[str, Any] = {}
    if kv_bits is not None:
        check_kv_quantisation(kv_bits, kv_group_size, head_dims(model))
        kv = {"kv_bits": kv_bits, "kv_group_size": kv_group_size, "quantized_kv_start": 0}
    outputs = []
    for prompt in prompts:
        tokens = [r.token for r in stream_generate(model, tokenizer, mx.array(prompt), max_tokens=max_tokens, **kv)]
        outputs.append([t for t in tokens if t not in tokenizer.eos_token_ids])
    return outputs


def head_dims(model: nn.Module) -> set[int]:
    """The last dimension of every layer's cached keys and values, found by a one-token forward pass."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    model(mx.array([[0]]), cache=cache)
    return _cache_dims(cache)


def _cache_dims(cache: list[Any]) -> set[int]:
    return {a.shape[-1] for c in cache if hasattr(c, "to_quantized") for a in (c.keys, c.values) if a is not None}


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


def task_rows(
    model: nn.Module,
    tokenizer: TokenizerWrapper,
    prompts: list[str],
    references: list[str],
    *,
    max_tokens: int = 6,
    kv_bits: int | None = None,
    kv_group_size: int = 64,
) -> list[dict[str, Any]]:
    """Greedy answer per prompt, scored against its reference."""
    from workbench.workloads.tasks import extract_answer

    encoded = [tokenizer.encode(p) for p in prompts]
    answers = greedy_continuations(model, tokenizer, encoded, max_tokens, kv_bits=kv_bits, kv_group_size=kv_group_size)
    rows = []
    for tokens, reference in zip(answers, references):
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


def diversity(texts: list[str]) -> dict[str, float]:
    """distinct-2 (unique bigrams / bigrams) and the share of texts whose first word repeats another's."""
    bigrams = [tuple(w[i : i + 2]) for w in map(normalise, texts) for i in range(len(w) - 1)]
    firsts = [w[0] for w in map(normalise, texts) if w]
    counts = Counter(firsts)
    return {
        "distinct_2": len(set(bigrams)) / len(bigrams) if bigrams else math.nan,
        "first_word_repetition": sum(c for c in counts.values() if c > 1) / len(firsts) if firsts else math.nan,
    }


def score_exact(prediction: str, reference: str) -> float:
    """Eval-set exact match: equal after stripping surrounding whitespace, nothing else normalised."""
    return float(prediction.strip() == reference.strip())


def score_contains(prediction: str, reference: str) -> float:
    """The reference (stripped) occurs in the prediction, case-sensitively."""
    return float(reference.strip() in prediction)


REGEX_TIMEOUT_S = 0.5  # per item; a sane pattern takes microseconds on a reply, a catastrophic one forever


class ScoreTimeout(Exception):
    """A metric ran past its time limit on one item (a catastrophic user regex); the item scores 0."""


def score_regex(prediction: str, pattern: str, *, timeout_s: float = REGEX_TIMEOUT_S) -> float:
    """The reference is a regular expression that `regex.search` (the `regex` package, `re`'s syntax) finds in the
    prediction (anchor it for a full match), within `timeout_s`; past it, `ScoreTimeout`."""
    import regex

    try:
        return float(regex.search(pattern, prediction, timeout=timeout_s) is not None)
    except TimeoutError:
        raise ScoreTimeout(f"regex timed out after {timeout_s:g} s") from None


GENERATION_METRICS: dict[str, Callable[[str, str], float]] = {
    "exact_match": score_exact,
    "token_f1": token_f1,
    "contains": score_contains,
    "regex": score_regex,
}


def generate_until(
    model: nn.Module,
    tokenizer: TokenizerWrapper,
    prompt: list[int],
    max_tokens: int,
    stop: tuple[str, ...] = (),
    *,
    kv_bits: int | None = None,
    kv_group_size: int = 64,
) -> tuple[str, int]:
    """Greedy text after `prompt` and its token count: up to `max_tokens`, EOS, or the first stop string
    (the text is cut before it); nothing else is cut."""
    import mlx.core as mx
    from mlx_lm import stream_generate

    kv: dict[str, Any] = {}
    if kv_bits is not None:
        check_kv_quantisation(kv_bits, kv_group_size, head_dims(model))
        kv = {"kv_bits": kv_bits, "kv_group_size": kv_group_size, "quantized_kv_start": 0}
    text, count = "", 0
    for response in stream_generate(model, tokenizer, mx.array(prompt), max_tokens=max_tokens, **kv):
        text += response.text
        count += response.token not in tokenizer.eos_token_ids
        cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
        if cut >= 0:
            return text[:cut], count
    return text, count


def choice_logprobs(
    model: nn.Module,
    prompt: list[int],
    continuations: list[list[int]],
    *,
    kv_bits: int | None = None,
    kv_group_size: int = 64,
) -> list[float]:
    """Log-probability of each continuation's tokens following `prompt` (summed over its tokens)."""
    import mlx.core as mx

    scores = []
    for continuation in continuations:
        tokens = prompt + continuation
        log_probs = _log_probs(model, tokens[:-1], kv_bits=kv_bits, kv_group_size=kv_group_size)
        positions = mx.arange(len(prompt) - 1, len(tokens) - 1)
        picked = log_probs[positions, mx.array(continuation)]
        scores.append(cast(float, picked.sum().item()))  # real: mlx types item() as int | float | complex
    return scores
