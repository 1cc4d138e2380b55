"""Build the embedded model family offline: a BPE tokenizer and small Llama models.

The tokenizer is trained with `tokenizers` on the standard library's docstrings plus the
built-in retrieval task; the models are mlx-lm `llama` models trained with MLX on a mix
of both. The result is a plain mlx-lm directory (`config.json`, `model.safetensors`,
tokenizer files), so `mlx_lm.load`, `generate`, `benchmark`, `convert` and `perplexity`
work on it unchanged.

Builds are deterministic for a seed and cached by the hash of their recipe:

    workbench build-model --preset default
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError
from workbench.paths import atomic_dir, cache_dir
from workbench.workloads import corpus, tasks

BUILD_VERSION = 2
SPECIAL = "<|endoftext|>"


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a built model; its hash names the cache entry."""

    preset: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    vocab_size: int = 2048
    steps: int = 3000
    batch_size: int = 32
    sequence_length: int = 128
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    task_fraction: float = 0.75
    answer_weight: float = 4.0
    seed: int = 0
    # Added after BUILD_VERSION 2; they enter the hash only when they differ from these
    # defaults (which reproduce the earlier data), so existing cache keys stay valid.
    questions: int = 4  # answered questions per task context
    min_facts: int = 2  # facts per training context, drawn uniformly in [min_facts, max_facts]
    max_facts: int = 8
    same_attribute: float = 0.0  # share of task contexts whose facts all have one attribute
    curriculum_steps: int = 0  # the upper bound on facts ramps from min_facts to max_facts over these steps

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"recipe.{field.name} must be >= 0, got {value}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("recipe.hidden_size must be a multiple of num_attention_heads")
        if not 1 <= self.min_facts <= self.max_facts:
            raise ValueError(f"recipe needs 1 <= min_facts <= max_facts, got {self.min_facts}, {self.max_facts}")
        if not 0.0 <= self.same_attribute <= 1.0:
            raise ValueError(f"recipe.same_attribute must be in [0, 1], got {self.same_attribute}")
        if not 0.0 <= self.task_fraction <= 1.0:
            raise ValueError(f"recipe.task_fraction must be in [0, 1], got {self.task_fraction}")

    def tokenizer_key(self) -> dict:
        return {"vocab_size": self.vocab_size, "corpus": corpus.corpus_hash(), "version": BUILD_VERSION}

    def hash(self, *, portable: bool = False) -> str:
        """Cache key. `portable` leaves out the stdlib corpus hash (which moves with the Python
        version), so committed weights built from this recipe are found on any machine."""
        tokenizer = {k: v for k, v in self.tokenizer_key().items() if not (portable and k == "corpus")}
        fields = {k: v for k, v in dataclasses.asdict(self).items() if _ADDED_FIELDS.get(k, object()) != v}
        payload = {**fields, "tokenizer": tokenizer, "version": BUILD_VERSION}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def facts_bound(self, step: int) -> int:
        """The most facts a training context may have at `step` (the curriculum)."""
        if self.curriculum_steps <= 0 or step >= self.curriculum_steps:
            return self.max_facts
        return self.min_facts + (self.max_facts - self.min_facts) * step // self.curriculum_steps

    def model_config(self) -> dict:
        return {
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "max_position_embeddings": 4096,
            "tie_word_embeddings": True,
            "bos_token_id": 0,
            "eos_token_id": 0,
        }


_ADDED_FIELDS = {"questions": 4, "min_facts": 2, "max_facts": 8, "same_attribute": 0.0, "curriculum_steps": 0}

# The embedded family: nano for tests, default for the demo, student (~25% of default) for distillation.
_LONG = {"steps": 2400, "batch_size": 32, "sequence_length": 96, "warmup_steps": 50, "task_fraction": 0.85}
# default: half the learning rate (3e-3 left a 128-wide model at the answer prior's level),
# every fact of a context asked, a curriculum from 2 facts up over 300 steps. 4 heads (head
# dimension 32), so MLX's quantised KV cache (group size 32) applies; 8 heads did no better.
_DEFAULT = {
    **_LONG,
    "steps": 1800,
    "learning_rate": 1.5e-3,
    "task_fraction": 0.9,
    "questions": 8,
    "curriculum_steps": 300,
}
_SIZES: dict[str, tuple[int, int, int, int, dict[str, Any]]] = {  # hidden, layers, heads, intermediate, training
    "nano": (64, 2, 4, 128, {"steps": 100, "batch_size": 8, "warmup_steps": 20}),
    "default": (128, 4, 4, 384, _DEFAULT),
    "student": (64, 3, 4, 192, _LONG),
}
PRESETS = {
    name: Recipe(
        name,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        **training,
    )
    for name, (hidden, layers, heads, intermediate, training) in _SIZES.items()
}


def get_recipe(preset: str) -> Recipe:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


# ---------------------------------------------------------------- tokenizer


def tokenizer_texts(seed: int = 0, task_docs: int = 4000) -> list[str]:
    rng = random.Random(f"facts-tokenizer-{seed}")
    return list(corpus.stdlib_docstrings()[0]) + [tasks.make_training_text(rng) for _ in range(task_docs)]


def build_tokenizer(recipe: Recipe) -> Path:
    """Train (or reuse) the byte-level BPE tokenizer shared by every preset of this vocab."""
    key = hashlib.sha256(json.dumps(recipe.tokenizer_key(), sort_keys=True).encode()).hexdigest()[:16]
    target = cache_dir() / "tokenizers" / key
    if (target / "tokenizer.json").exists():
        return target
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size,
        special_tokens=[SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_texts(), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{SPECIAL} $A", special_tokens=[(SPECIAL, 0)])
    with atomic_dir(target) as tmp:
        tok.save(str(tmp / "tokenizer.json"))
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": SPECIAL,
            "eos_token": SPECIAL,
            "unk_token": SPECIAL,
            "model_max_length": 1 << 30,
            "clean_up_tokenization_spaces": False,
        }
        (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
        (tmp / "special_tokens_map.json").write_text(
            json.dumps({"bos_token": SPECIAL, "eos_token": SPECIAL, "unk_token": SPECIAL}, indent=2)
        )
    return target


# ---------------------------------------------------------------- model


def init_model(recipe: Recipe):
    import mlx.core as mx
    from mlx_lm.models import llama

    mx.random.seed(recipe.seed)
    model = llama.Model(llama.ModelArgs.from_dict(recipe.model_config()))
    mx.eval(model.parameters())
    return model


def save_model_dir(target: Path, model, recipe: Recipe, tokenizer_dir: Path, extra: dict) -> None:
    from mlx_lm.utils import save_config, save_model

    with atomic_dir(target) as tmp:
        save_model(tmp, model)
        save_config(recipe.model_config(), tmp / "config.json")
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(tokenizer_dir / name, tmp / name)
        info = {
            "recipe": dataclasses.asdict(recipe),
            "recipe_hash": recipe.hash(),
            "portable_hash": recipe.hash(portable=True),
            "corpus": corpus.corpus_hash(),
            **extra,
        }
        (tmp / "build.json").write_text(json.dumps(info, indent=2))


def model_path(preset: str) -> Path:
    recipe = get_recipe(preset)
    return cache_dir() / "models" / f"{preset}-{recipe.hash()}"


def preset_dir(preset: str) -> Path:
    """Where `build_model(preset)` finds a preset without building it: the cache entry when built, else the committed
    weights of the same recipe, else the cache entry a build would write (then missing). Serving, benchmarking a
    served model and loading all name a preset by this one directory."""
    target = model_path(preset)
    if (target / "build.json").exists():
        return target
    from workbench.models.assets import find_committed

    return find_committed(get_recipe(preset)) or target


def build_model(preset: str, *, progress: bool = True, force: bool = False) -> Path:
    """Build (or reuse from the cache) a preset; returns its mlx-lm directory."""
    recipe = get_recipe(preset)
    target = model_path(preset)
    if (target / "build.json").exists() and not force:
        return target
    from workbench.models.assets import find_committed

    committed = find_committed(recipe)
    if committed is not None and not force:
        return committed
    from tokenizers import Tokenizer

    start = time.perf_counter()
    tokenizer_dir = build_tokenizer(recipe)
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    from workbench.training.data import AnswerProbe
    from workbench.training.losses import cross_entropy_loss
    from workbench.training.trainer import fit

    model, history = fit(init_model(recipe), recipe, tokenizer, cross_entropy_loss, progress=progress)
    tail = history[-50:] or [math.nan]
    extra = {
        "answer_probe_accuracy": AnswerProbe(tokenizer)(model),
        "build_seconds": round(time.perf_counter() - start, 1),
        "final_loss": sum(tail) / len(tail),
        "initial_loss": history[0] if history else math.nan,
    }
    if target.exists():
        shutil.rmtree(target)
    save_model_dir(target, model, recipe, tokenizer_dir, extra)
    return target
