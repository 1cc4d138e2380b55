"""Distil a teacher into a student preset: the KD student and its control (same student, alpha = 0).

Students are saved as mlx-lm directories and cached by (teacher hash, recipe, KD settings),
so the `distilled` model spec (a draft for speculative decoding, a tier for serving) and
the distill experiment share one cache entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from workbench.models import build
from workbench.paths import cache_dir


@dataclass(frozen=True)
class KDSettings:
    """What determines a student; the defaults are `params/distill.yaml`'s and the `distilled` spec's."""

    student: str = "student"
    temperature: float = 2.0
    alpha: float = 0.5
    steps: int = 1200
    learning_rate: float = 3e-3
    batch_size: int = 32


def train_student(teacher, settings: KDSettings, *, alpha: float | None = None, progress: bool = True) -> Path:
    """Train (or reuse) a student of `teacher` (a loaded model with a local directory); returns its directory."""
    from tokenizers import Tokenizer

    from workbench.training.losses import kd_loss
    from workbench.training.trainer import fit

    alpha = settings.alpha if alpha is None else alpha
    recipe = dataclasses.replace(
        build.get_recipe(settings.student),
        steps=settings.steps,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        warmup_steps=min(50, settings.steps // 10 + 1),
    )
    key = json.dumps(
        {
            "teacher": teacher.model_hash,
            "recipe": dataclasses.asdict(recipe),
            "temperature": settings.temperature,
            "alpha": alpha,
            "version": build.BUILD_VERSION,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    target = cache_dir() / "students" / f"{settings.student}-a{alpha}-{digest}"
    if (target / "build.json").exists():
        return target
    tokenizer_dir = teacher.path
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    model, history = fit(
        build.init_model(recipe),
        recipe,
        tokenizer,
        kd_loss(teacher.model, settings.temperature, alpha),
        progress=progress,
        desc=f"{'KD' if alpha else 'control'} student",
    )
    extra = {"distill": json.loads(key), "final_loss": sum(history[-20:]) / 20}
    build.save_model_dir(target, model, recipe, tokenizer_dir, extra)
    return target
