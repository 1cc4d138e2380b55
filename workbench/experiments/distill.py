"""Distillation: a teacher's logits train a smaller student; a control student trains without them.

The student architecture is a build preset (`student`, ~25% of `default`) or any other
preset. KD loss = T^2 * KL(softmax(teacher/T) || softmax(student/T)), mixed with the
answer-weighted cross-entropy as alpha * KD + (1 - alpha) * CE. The control is the same
student, same data, same steps, alpha = 0 — so the gain from KD is measured, not assumed.
Students are saved as mlx-lm directories and cached by (teacher hash, recipe, KD settings).

    workbench run distill --params params/distill.yaml [--model TEACHER] [--json]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from workbench import build, models, results
from workbench.experiments.base import ExperimentConfig, measure_variant
from workbench.paths import cache_dir


@dataclass(frozen=True)
class DistillConfig(ExperimentConfig):
    student: str = "student"
    temperature: float = 2.0
    alpha: float = 0.5
    steps: int = 1200
    learning_rate: float = 3e-3
    batch_size: int = 32

    name = "distill"

    def validate(self):
        self.require(self.student in build.PRESETS, "student", f"must be a preset: {', '.join(build.PRESETS)}")
        self.require(self.temperature > 0, "temperature", "must be > 0")
        self.require(0.0 <= self.alpha <= 1.0, "alpha", "must be in [0, 1]")
        self.require(self.steps >= 1, "steps", "must be >= 1")
        self.require(self.learning_rate > 0, "learning_rate", "must be > 0")
        self.require(self.batch_size >= 1, "batch_size", "must be >= 1")


def kd_loss(teacher, temperature: float, alpha: float):
    import mlx.core as mx
    import mlx.nn as nn

    def loss_fn(model, tokens, weights):
        inputs = tokens[:, :-1]
        logits = model(inputs)
        ce_tok = nn.losses.cross_entropy(logits, tokens[:, 1:])
        ce = (ce_tok * weights).sum() / weights.sum()
        if alpha == 0:
            return ce
        t_logp = nn.log_softmax(mx.stop_gradient(teacher(inputs)) / temperature, axis=-1)
        s_logp = nn.log_softmax(logits / temperature, axis=-1)
        kl = (mx.exp(t_logp) * (t_logp - s_logp)).sum(axis=-1)
        kd = (kl * weights).sum() / weights.sum() * temperature**2
        return alpha * kd + (1 - alpha) * ce

    return loss_fn


def train_student(teacher: models.LoadedModel, config: DistillConfig, *, alpha: float, progress: bool = True) -> Path:
    from tokenizers import Tokenizer

    recipe = dataclasses.replace(
        build.get_recipe(config.student),
        steps=config.steps,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        warmup_steps=min(50, config.steps // 10 + 1),
    )
    key = json.dumps(
        {
            "teacher": teacher.model_hash,
            "recipe": dataclasses.asdict(recipe),
            "temperature": config.temperature,
            "alpha": alpha,
            "version": build.BUILD_VERSION,
        },
        sort_keys=True,
    )
    target = cache_dir() / "students" / f"{config.student}-a{alpha}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (target / "build.json").exists():
        return target
    tokenizer_dir = teacher.path
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    model, history = build.fit(
        build.init_model(recipe),
        recipe,
        tokenizer,
        kd_loss(teacher.model, config.temperature, alpha),
        progress=progress,
        desc=f"{'KD' if alpha else 'control'} student",
    )
    build.save_model_dir(
        target, model, recipe, tokenizer_dir, {"distill": json.loads(key), "final_loss": sum(history[-20:]) / 20}
    )
    return target


def run(config: DistillConfig) -> pl.DataFrame:
    run_id = results.new_run_id("distill")
    teacher = models.load(config.model)
    if teacher.path is None:
        raise models.ModelError("distillation needs a local teacher directory (for its tokenizer)")
    frames = [
        measure_variant(
            teacher,
            config,
            variant="baseline",
            run_id=run_id,
            params={"role": "teacher", "parameters": models.parameter_count(teacher.model)},
        )
    ]
    for variant, alpha in (("student-kd", config.alpha), ("student-control", 0.0)):
        student = models.load(str(train_student(teacher, config, alpha=alpha)))
        params = {
            "role": variant,
            "alpha": alpha,
            "temperature": config.temperature,
            "steps": config.steps,
            "parameters": models.parameter_count(student.model),
        }
        frames.append(measure_variant(student, config, variant=variant, run_id=run_id, params=params, baseline=teacher))
    return pl.concat(frames, how="vertical")
