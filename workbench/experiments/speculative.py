"""Speculative decoding: a draft model proposes `num_draft_tokens`, the model under test verifies.

The draft is any model with the same tokenizer: the distilled/`student` preset, a
quantised copy of the model (`quantised:4`), or an mlx-lm directory. A draft whose
tokenizer differs from the model's is refused before anything runs (one line, exit 2). For each
`num_draft_tokens` the rows give decode tok/s (speedup vs the baseline measured in the
same run), acceptance overall and by draft position (from mlx-lm's `from_draft` flags),
and whether greedy outputs are identical to the baseline's.

    workbench run speculative --params params/speculative.yaml [--model M] [--json]
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import polars as pl
from pydantic import Field

from workbench.errors import ModelError
from workbench.experiments.base import Arm, ExperimentConfig, Variant, baseline_variant, measure_arms
from workbench.models import loader
from workbench.optimise import derived
from workbench.results import store


class Config(ExperimentConfig):
    name: ClassVar[str] = "speculative"

    draft: str = "distilled"
    num_draft_tokens: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 6], min_length=1, max_length=32)
    gen_tokens: int = Field(64, ge=1, le=8192)

    def model_specs(self) -> list[str]:
        return [self.model, self.draft]

    def check(self):
        self.require(all(1 <= k <= 32 for k in self.num_draft_tokens), "num_draft_tokens", "entries must be in [1, 32]")

    def check_model(self, model_config: dict) -> None:
        check_draft_tokenizer(self.model, self.draft)


def check_draft_tokenizer(model: str, draft: str) -> None:
    """Before any weights load: a local draft must share the model's tokenizer (`loader.check_same_tokenizer`).
    Derived drafts (`quantised:N`, `distilled`) share it by construction; Hugging Face ids are checked once loaded."""
    if derived.is_derived(draft) or draft == model:
        return
    (target, target_id), (other, other_id) = (loader.resolve(spec, build_missing=False) for spec in (model, draft))
    if isinstance(target, Path) and isinstance(other, Path) and target.is_dir() and other.is_dir():
        ours = loader.TokenizerOnly(loader.load_tokenizer(target), target_id)
        theirs = loader.TokenizerOnly(loader.load_tokenizer(other), other_id)
        loader.check_same_tokenizer(ours, theirs, role="draft")


def draft_variant(draft: str, k: int) -> Variant:
    """Greedy speculative decoding is meant to give the target's tokens exactly; verified per run."""
    return Variant(f"draft{k}", family="speculative", changes={"draft": draft, "num_draft_tokens": k}, lossless=True)


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


def run(config: Config) -> pl.DataFrame:
    run_id = store.new_run_id("speculative")
    target = loader.load(config.model, dtype=config.dtype)
    draft = derived.load_spec(config.draft, target, config.model, dtype=config.dtype)
    loader.check_same_tokenizer(target, draft, role="draft")
    if loader.vocab_size(draft) != loader.vocab_size(target):
        raise ModelError(f"draft {config.draft!r} has another vocabulary than {config.model!r}")
    arms = [Arm(baseline_variant(), target)]
    for k in config.num_draft_tokens:
        variant = draft_variant(draft.model_id, k)
        kwargs = {"draft_model": draft.model, "num_draft_tokens": k}
        arms.append(Arm(variant, target, generate_kwargs=kwargs, params=variant.changes))
    return measure_arms(arms, config, run_id=run_id)


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


def summary_extras(frame: pl.DataFrame) -> dict:
    """Acceptance rate overall and by draft position, per variant."""
    table = acceptance_table(frame)
    if table.is_empty():
        return {}
    return {
        variant: {
            "acceptance_rate": group["acceptance_rate"][0],
            "acceptance_by_position": group["position_acceptance"].to_list(),
        }
        for (variant,), group in table.group_by("variant", maintain_order=True)
    }
