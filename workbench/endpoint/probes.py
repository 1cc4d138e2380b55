"""Fidelity under load: does a batching server return the same greedy tokens under load as the model in process?

A batched kernel, padding, a quantised KV cache (`kv_bits`) or a draft model can change what a server generates
when it is busy. At each load level a share of the requests are *probes*: greedy (temperature 0), fixed length
(the end-of-sequence ids get a -100 `logit_bias`, as the load's requests), on prompts of their own whose greedy
continuation was computed beforehand in process, with the same model (weights fingerprint) and the same dtype
the server computes in. A reference made with another model or dtype is refused (`check_references`): nothing is
assumed. A probe is sent by the load loop in the place of a request (so at concurrency 8 it is batched with the
others), is not streamed (`mlx_lm.server` returns logprobs only without streaming) and is never a measured row:
latency figures stay those of the measured requests.

Per probe: `identical` (served tokens == the in-process tokens), `first_divergence` (the first position where
they differ, -1 when none) and, where the server returns logprobs, `kl_mean`: the mean over served positions of
KL(in process || served) of the next-token distributions, the in-process side computed by one forward pass over
the prompt and the *served* tokens (so both sides condition on the same prefix at every position). A server
returns only its top-k logprobs (mlx_lm.server: k <= 11), so the KL is that of both distributions coarsened to
k + 1 outcomes (the served top-k tokens and "any other token"): a lower bound of the full-vocabulary KL (data
processing inequality), equal to it when the rest of the vocabulary carries no mass on either side.

    refs = build_references(loaded, texts, max_tokens=32)
    check_references(refs, model_hash=served_hash, dtype=served_dtype)
    probes = [Probe(ref, i) for i, ref in enumerate(refs)]   # placed in a level's prompts by `mix`
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from workbench import stats
from workbench.endpoint.client import EOS_BIAS, RequestOutcome, Target
from workbench.endpoint.replies import MalformedReply, read_capped, reply_cap_bytes
from workbench.errors import ConfigError

if TYPE_CHECKING:
    import mlx.nn as nn
    import numpy as np
    import numpy.typing as npt

    from workbench.endpoint.client import EndpointClient
    from workbench.models.loader import LoadedModel

TOP_LOGPROBS = 10  # mlx_lm.server accepts top_logprobs up to 11


class ProbeReference(BaseModel):
    """A probe prompt and its in-process greedy continuation, with the model and dtype that computed it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_hash: str
    dtype: str
    prompt: str
    prompt_ids: list[int]
    tokens: list[int]
    eos_token_ids: list[int]


def eos_processors(eos_token_ids: list[int]) -> list[Any]:
    """The logit bias the served requests carry, as mlx-lm's own logits processor (the server builds the same)."""
    from mlx_lm.sample_utils import make_logits_processors

    return make_logits_processors(logit_bias={int(t): EOS_BIAS for t in eos_token_ids})


def build_references(loaded: LoadedModel, prompts: list[str], *, max_tokens: int) -> list[ProbeReference]:
    """Greedy continuations of `max_tokens` tokens in process (`stream_generate`, argmax sampling, the EOS bias),
    each prompt encoded as the server encodes a completions prompt (`tokenizer.encode`)."""
    import mlx.core as mx
    from mlx_lm import stream_generate

    eos = sorted(int(t) for t in loaded.tokenizer.eos_token_ids or [])
    out = []
    for text in prompts:
        ids = list(loaded.tokenizer.encode(text))
        steps = stream_generate(
            loaded.model, loaded.tokenizer, mx.array(ids), max_tokens=max_tokens, logits_processors=eos_processors(eos)
        )
        tokens = [int(r.token) for r in steps]
        out.append(
            ProbeReference(
                model_hash=loaded.model_hash, dtype=loaded.dtype, prompt=text, prompt_ids=ids, tokens=tokens,
                eos_token_ids=eos,
            )
        )  # fmt: skip
    return out


def check_references(references: list[ProbeReference], *, model_hash: str, dtype: str | None) -> None:
    """Refuse references computed with another model or dtype than the one being compared (one line)."""
    for ref in references:
        if ref.model_hash != model_hash or ref.dtype != dtype:
            raise ConfigError(
                f"probe references were computed with model {ref.model_hash} in {ref.dtype}, but the served model is "
                f"{model_hash} in {dtype}: fidelity is only compared on the same model and dtype"
            )


@dataclass
class ProbeReply:
    """One send of a probe: timing, the served token ids and, per position, the served top logprobs {id: logprob}."""

    t0: float
    end: float = math.nan
    ok: bool = False
    error: str | None = None
    text: str = ""
    tokens: list[Any] = field(default_factory=list)
    top: list[Any] | None = None


class Probe:
    """A probe in a load level's list of prompts: `load.run_level_async` sends it with `send_with` (not
    `EndpointClient.send`) and leaves it out of the measured rows (`measured = False`). Each send is a reply."""

    measured = False

    def __init__(self, reference: ProbeReference, index: int, *, top_logprobs: int = TOP_LOGPROBS):
        self.reference = reference
        self.index = index
        self.top_logprobs = top_logprobs
        self.replies: list[ProbeReply] = []

    def body(self, target: Target) -> dict[str, Any]:
        body = {
            "model": target.model,
            "prompt": self.reference.prompt,
            "max_tokens": len(self.reference.tokens),
            "temperature": 0.0,
            "stream": False,
            "logprobs": True,
            "logit_bias": {str(t): EOS_BIAS for t in self.reference.eos_token_ids},
        }
        return body | ({"top_logprobs": self.top_logprobs} if self.top_logprobs else {})

    async def send_with(self, client: EndpointClient, outcome: RequestOutcome) -> None:
        """POST the probe on the load's connection pool; every failure becomes the reply's (and outcome's) error."""
        import aiohttp

        reply = ProbeReply(t0=time.perf_counter())
        outcome.t0 = reply.t0
        self.replies.append(reply)
        url = client.target.base_url + "/v1/completions"
        try:
            body, follow = self.body(client.target), client.target.follow_redirects
            async with client.session.post(url, json=body, headers=client.headers, allow_redirects=follow) as response:
                raw = await read_capped(response.content, reply_cap_bytes(len(self.reference.tokens)))
                if 300 <= response.status < 400:
                    reply.error = f"redirected: http {response.status} to {response.headers.get('Location', '')[:100]}"
                elif response.status >= 400:
                    reply.error = f"http {response.status}: {' '.join(raw[:200].decode(errors='replace').split())}"
                else:
                    read_reply(raw, reply, self.top_logprobs)
        except MalformedReply as exc:
            reply.error = f"malformed: {exc}"
        except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError) as exc:
            reply.error = f"probe failed: {exc.__class__.__name__}: {str(exc)[:80]}"
        reply.end = time.perf_counter()
        reply.ok = reply.error is None
        outcome.end, outcome.ok, outcome.error, outcome.text = reply.end, reply.ok, reply.error, reply.text


def read_reply(raw: bytes, reply: ProbeReply, top_logprobs: int) -> None:
    """mlx_lm.server's non-streamed completion: `logprobs.content` is one entry per generated token, with `id`
    (logprobs only) or `top_logprobs` [{id, logprob}] (then the greedy token is the most probable of them)."""
    try:
        payload = json.loads(raw)
        choice = payload["choices"][0]
        reply.text = choice.get("text") or ""
        content = (choice.get("logprobs") or {}).get("content")
        if not isinstance(content, list) or not content:
            reply.error = "malformed: the reply carries no logprobs.content with token ids"
            return
        if top_logprobs:
            reply.top = [{int(e["id"]): float(e["logprob"]) for e in entry["top_logprobs"]} for entry in content]
            reply.tokens = [max(top, key=top.get) for top in reply.top]
        else:
            reply.tokens = [int(entry["id"]) for entry in content]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError) as exc:
        reply.error = f"malformed: probe reply ({exc.__class__.__name__}: {str(exc)[:60]})"


def coarse_kl(log_p: npt.NDArray[np.floating[Any]], top: dict[int, float]) -> float:
    """KL(p || q) over k + 1 outcomes: the served top-k ids of `top` and the rest; `log_p` a full-vocabulary
    log-distribution (numpy). A lower bound of the full KL; exact when the rest has no mass on either side."""
    import numpy as np

    ids = np.array(list(top), dtype=np.int64)
    p = np.exp(log_p[ids].astype(np.float64))
    q = np.exp(np.array(list(top.values()), dtype=np.float64))
    p_rest, q_rest = max(1.0 - p.sum(), 0.0), max(1.0 - q.sum(), 1e-12)
    kl = float(np.sum(p * (np.log(np.maximum(p, 1e-300)) - np.log(np.maximum(q, 1e-300)))))
    return kl + (p_rest * math.log(p_rest / q_rest) if p_rest > 1e-12 else 0.0)


def served_log_probs(model: nn.Module, reference: ProbeReference, served: list[int]) -> npt.NDArray[np.float32]:
    """In-process next-token log-distributions (numpy, one per served position) with the EOS bias applied, from
    one forward pass over the prompt and the served tokens."""
    import mlx.core as mx
    import numpy as np

    from workbench.measure.quality import forward

    tokens = reference.prompt_ids + served[:-1]
    logits = forward(model, mx.array(tokens)[None])[0, len(reference.prompt_ids) - 1 :].astype(mx.float32)
    if reference.eos_token_ids:
        logits[:, mx.array(reference.eos_token_ids)] += EOS_BIAS
    log_p = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    mx.eval(log_p)
    return np.array(log_p)


def score(reply: ProbeReply, reference: ProbeReference, model: nn.Module | None = None) -> dict[str, Any]:
    """One reply against its reference: identical, first divergence, positions and (with `model` and logprobs)
    the mean coarsened KL; a failed reply keeps its error."""
    row: dict[str, Any] = {"ok": reply.ok, "error": reply.error, "e2e_s": reply.end - reply.t0 if reply.ok else None}
    if not reply.ok:
        return row
    served, expected = reply.tokens, reference.tokens
    differs = [i for i, (a, b) in enumerate(zip(served, expected)) if a != b]
    first = differs[0] if differs else (-1 if len(served) == len(expected) else min(len(served), len(expected)))
    row |= {"identical": first == -1, "first_divergence": first, "positions": len(served)}
    row |= {"generated_tokens": len(served), "output_tokens": served}
    if model is not None and reply.top and served:
        log_p = served_log_probs(model, reference, served)
        row["kl_mean"] = float(sum(coarse_kl(log_p[i], top) for i, top in enumerate(reply.top)) / len(reply.top))
    return row


def mix(prompts: list[Any], probes: list[Probe]) -> tuple[list[Any], list[int]]:
    """`prompts` with the probes spread evenly among them (a probe never first, so it meets the load), and for
    each position the index of its measured prompt (-1 for a probe)."""
    total = len(prompts) + len(probes)
    slots = {1 + int(k * (total - 1) / len(probes)) for k in range(len(probes))} if prompts else set(range(total))
    out, where, queue, measured = [], [], iter(probes), iter(range(len(prompts)))
    for position in range(total):
        if position in slots:
            out.append(next(queue))
            where.append(-1)
        else:
            index = next(measured)
            out.append(prompts[index])
            where.append(index)
    return out, where


def overlap(reply: ProbeReply, outcomes: list[RequestOutcome]) -> int:
    """How many measured requests were in flight at some point while the probe was."""
    return sum(1 for o in outcomes if o.t0 < reply.end and o.end > reply.t0)


def summarise_probes(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A level's probes: how many, the share identical to in process, the median first divergence over the probes
    that diverged (None when none did), the mean coarsened KL and the measured requests each overlapped."""
    good = [r for r in rows if r.get("ok")]
    diverged = [r["first_divergence"] for r in good if r.get("first_divergence", -1) >= 0]
    kls = [r["kl_mean"] for r in good if r.get("kl_mean") is not None]
    return {
        "probes": len(rows),
        "probes_ok": len(good),
        "identical_share": sum(bool(r.get("identical")) for r in good) / len(good) if good else None,
        "first_divergence_p50": stats.percentile(diverged, 50) if diverged else None,
        "probe_kl_mean": sum(kls) / len(kls) if kls else None,
        "probe_overlap_mean": stats.describe(r.get("overlap_requests") for r in good)["mean"] if good else None,
    }


def probe_rows(
    probes: list[Probe], outcomes: list[RequestOutcome], where: list[int], model: nn.Module | None = None
) -> list[dict[str, Any]]:
    """One `kind="probe"` row per reply (a level run for several trials sends each probe once a trial), scored,
    with the measured requests it overlapped (`outcomes` of the level; `where[i] < 0` marks probe positions)."""
    measured = [o for o in outcomes if where[o.index] >= 0]
    rows = []
    for probe in probes:
        for trial, reply in enumerate(probe.replies):
            row = score(reply, probe.reference, model)
            rows.append({**row, "kind": "probe", "request_index": probe.index, "trial": trial,
                         "overlap_requests": overlap(reply, measured)})  # fmt: skip
    return rows


@dataclass
class ProbePlan:
    """The probes of a run: `per_level` fresh probes for each (round, level) piece, from references computed
    beforehand, and the in-process model (same fingerprint and dtype) that scores the KL."""

    model: object
    references: list[Any]
    per_level: int
    top_logprobs: int = TOP_LOGPROBS

    def for_piece(self, piece: int) -> list[Probe]:
        start = piece * self.per_level
        chosen = self.references[start : start + self.per_level]
        return [Probe(ref, start + k, top_logprobs=self.top_logprobs) for k, ref in enumerate(chosen)]
