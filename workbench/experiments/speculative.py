"""Speculative decoding: a draft model proposes `num_draft_tokens`, the model under test verifies.

The draft is any model with the same tokenizer: the distilled/`student` preset, a
quantised copy of the model (`quantised:4`), or an mlx-lm directory. For each
`num_draft_tokens` the rows give decode tok/s (speedup vs the baseline measured in the
same run), acceptance overall and by draft position (from mlx-lm's `from_draft` flags),
and whether greedy outputs are identical to the baseline's.

    workbench run speculative --params params/speculative.yaml [--model M] [--json]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from workbench import models, results
from workbench.experiments.base import ExperimentConfig, is_generated, load_spec, measure_variant


@dataclass(frozen=True)
class SpeculativeConfig(ExperimentConfig):
    draft: str = "distilled"
    num_draft_tokens: list = field(default_factory=lambda: [1, 2, 3, 4, 6])
    gen_tokens: int = 64

    name = "speculative"

    def model_specs(self) -> list[str]:
        return [self.model] + ([] if is_generated(self.draft) else [self.draft])

    def validate(self):
        self.require(
            len(self.num_draft_tokens) > 0 and all(isinstance(k, int) and 1 <= k <= 32 for k in self.num_draft_tokens),
            "num_draft_tokens",
            "must be a non-empty list of integers in [1, 32]",
        )


def acceptance(from_draft: list[bool], k: int) -> tuple[int, int, list[int], list[int]]:
    """(accepted, proposed, reached[j], accepted_at[j]) from one request's from_draft flags.

    Each verification round emits its accepted draft tokens (True) then one token of the
    model (False); the first token comes from prefill alone."""
    accepted = proposed = 0
    reached, accepted_at = [0] * k, [0] * k
    run = 0
    for flag in from_draft[1:]:
        if flag:
            run += 1
            continue
        proposed += k
        accepted += run
        for j in range(min(run + 1, k)):
            reached[j] += 1
        for j in range(min(run, k)):
            accepted_at[j] += 1
        run = 0
    return accepted, proposed, reached, accepted_at


def run(config: SpeculativeConfig) -> pl.DataFrame:
    run_id = results.new_run_id("speculative")
    target = models.load(config.model)
    draft = load_spec(config.draft, target, config.model)
    if draft.tokenizer.vocab_size != target.tokenizer.vocab_size:
        raise models.ModelError(f"draft {config.draft!r} has another vocabulary than {config.model!r}")
    frames = [measure_variant(target, config, variant="baseline", run_id=run_id, quality=False)]
    for k in config.num_draft_tokens:
        frames.append(
            measure_variant(
                target,
                config,
                variant=f"draft{k}",
                run_id=run_id,
                quality=False,
                params={"draft": draft.model_id, "num_draft_tokens": k},
                generate_kwargs={"draft_model": draft.model, "num_draft_tokens": k},
            )
        )
    return pl.concat(frames, how="vertical")


def acceptance_table(frame: pl.DataFrame) -> pl.DataFrame:
    """Per variant: acceptance rate overall and at each draft position."""
    import json

    out = []
    for variant, group in frame.filter(pl.col("from_draft").is_not_null()).group_by("variant", maintain_order=True):
        k = json.loads(group["params_json"][0])["num_draft_tokens"]
        acc = prop = 0
        reached, accepted_at = [0] * k, [0] * k
        for flags in group["from_draft"].to_list():
            a, p, r, at = acceptance(flags, k)
            acc, prop = acc + a, prop + p
            reached = [x + y for x, y in zip(reached, r)]
            accepted_at = [x + y for x, y in zip(accepted_at, at)]
        for j in range(k):
            out.append(
                {
                    "variant": variant[0],
                    "num_draft_tokens": k,
                    "position": j + 1,
                    "acceptance_rate": acc / prop if prop else None,
                    "position_acceptance": accepted_at[j] / reached[j] if reached[j] else None,
                }
            )
    return pl.DataFrame(out)
