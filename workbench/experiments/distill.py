"""Distillation: a teacher's logits train a smaller student; a control student trains without them.

The student architecture is a build preset (`student`, ~25% of `default`) or any other
preset. The KD loss and the training loop live in `workbench.training`; this module
measures the result. The control is the same student, same data, same steps, alpha = 0 —
so the gain from KD is measured, not assumed. Teacher and students are timed in
interleaved rounds; both students get perplexity, task accuracy and fidelity to the teacher.

    workbench run distill --params params/distill.yaml [--model TEACHER] [--json]
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import polars as pl
from pydantic import Field

from workbench.errors import ModelError
from workbench.experiments.base import QUALITY_METRICS, Arm, ExperimentConfig, Variant, baseline_variant, measure_arms
from workbench.models import build, loader
from workbench.results import store
from workbench.training.distill import KDSettings, train_student

DEFAULTS = KDSettings()


class Config(ExperimentConfig):
    name: ClassVar[str] = "distill"

    student: str = DEFAULTS.student
    temperature: float = Field(DEFAULTS.temperature, gt=0)
    alpha: float = Field(DEFAULTS.alpha, ge=0.0, le=1.0)
    steps: int = Field(DEFAULTS.steps, ge=1, le=1_000_000)
    learning_rate: float = Field(DEFAULTS.learning_rate, gt=0)
    batch_size: int = Field(DEFAULTS.batch_size, ge=1, le=4096)

    def check(self):
        self.require(self.student in build.PRESETS, "student", f"must be a preset: {', '.join(build.PRESETS)}")

    def settings(self) -> KDSettings:
        return KDSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(KDSettings)})


def student_variant(name: str, config: Config, alpha: float) -> Variant:
    changes = {"student": config.student, "alpha": alpha, "temperature": config.temperature, "steps": config.steps}
    return Variant(name, family="distillation", changes=changes, quality=QUALITY_METRICS)


def run(config: Config) -> pl.DataFrame:
    run_id = store.new_run_id("distill")
    teacher = loader.load(config.model, dtype=config.dtype)
    if teacher.path is None:
        raise ModelError("distillation needs a local teacher directory (for its tokenizer)")
    arms = [
        Arm(
            baseline_variant(), teacher, params={"role": "teacher", "parameters": loader.parameter_count(teacher.model)}
        )
    ]
    for name, alpha in (("student-kd", config.alpha), ("student-control", 0.0)):
        student = loader.load(str(train_student(teacher, config.settings(), alpha=alpha)), dtype=config.dtype)
        variant = student_variant(name, config, alpha)
        params = {"role": name, **variant.changes, "parameters": loader.parameter_count(student.model)}
        arms.append(Arm(variant, student, params=params))
    return measure_arms(arms, config, run_id=run_id)
