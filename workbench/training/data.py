"""Training data for the embedded family: packed task documents and docstring chunks, and a cheap probe.

Deterministic for a recipe's seed, so a build is reproducible.
"""

from __future__ import annotations

import random

from workbench.workloads import corpus, tasks


class Batches:
    """Deterministic packed batches: task documents and docstring chunks, BOS/EOS separated."""

    def __init__(self, recipe, tokenizer):
        import numpy as np

        self.recipe = recipe
        self.tokenizer = tokenizer
        self.rng = random.Random(f"facts-train-{recipe.seed}")
        docs = corpus.stdlib_docstrings()[0]
        ids = []
        for doc in docs:
            ids.extend(tokenizer.encode(doc + "\n").ids[1:] + [0])
        self.text_ids = np.array(ids, dtype=np.int32)

    def _task_row(self, length: int, max_facts: int) -> tuple[list[int], list[bool]]:
        """Packed task documents, BOS-separated, and which tokens are answers."""
        recipe = self.recipe
        shape = {"min_facts": recipe.min_facts, "max_facts": max_facts, "questions": recipe.questions}
        shape["same_attribute"] = recipe.same_attribute
        row: list[int] = []
        answer: list[bool] = []
        while len(row) < length:
            row.append(0)
            answer.append(False)
            for text, is_answer in tasks.make_training_segments(self.rng, **shape):
                ids = self.tokenizer.encode(text, add_special_tokens=False).ids
                row.extend(ids)
                answer.extend([is_answer] * len(ids))
        return row[:length], answer[:length]

    def next(self, step: int = 0):
        """(tokens, loss weights) for `step`: answer tokens weigh `recipe.answer_weight`, others 1."""
        import numpy as np

        length = self.recipe.sequence_length + 1
        rows, answers = [], []
        for _ in range(self.recipe.batch_size):
            if self.rng.random() < self.recipe.task_fraction:
                row, answer = self._task_row(length, self.recipe.facts_bound(step))
            else:
                start = self.rng.randrange(0, len(self.text_ids) - length)
                row, answer = self.text_ids[start : start + length].tolist(), [False] * length
            rows.append(row)
            answers.append(answer)
        tokens = np.array(rows, dtype=np.int32)
        weights = np.where(np.array(answers)[:, 1:], self.recipe.answer_weight, 1.0).astype(np.float32)
        return tokens, weights


class AnswerProbe:
    """Teacher-forced accuracy of the first answer token on held-out task items (cheap progress signal)."""

    def __init__(self, tokenizer, count: int = 64):
        import numpy as np

        items = tasks.make_items(count, seed=12345)
        prompts = [tokenizer.encode(item.prompt).ids for item in items]
        width = max(map(len, prompts))
        # right-padded: causal attention keeps padding out of each prompt's last position
        self.tokens = np.array([p + [0] * (width - len(p)) for p in prompts], dtype=np.int32)
        self.last = np.array([len(p) - 1 for p in prompts])
        self.answers = np.array([tokenizer.encode(" " + item.reference).ids[1] for item in items])

    def __call__(self, model) -> float:
        import mlx.core as mx

        logits = model(mx.array(self.tokens))[mx.arange(len(self.last)), mx.array(self.last), :]
        hits = (mx.argmax(logits, axis=-1) == mx.array(self.answers)).mean()
        return float(hits.item())  # type: ignore[arg-type]
