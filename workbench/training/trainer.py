"""The training loop: AdamW with linear warm-up and cosine decay on a recipe's batches.

Used by `workbench build-model` (cross-entropy) and by distillation (KD loss); the loss is
the only thing that differs.
"""

from __future__ import annotations

import math

from workbench.training.data import AnswerProbe, Batches


def fit(model, recipe, tokenizer, loss_fn, *, progress: bool = True, desc: str | None = None):
    """AdamW with linear warm-up and cosine decay on the recipe's batches; `loss_fn(model, tokens, weights)`."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from tqdm import tqdm

    batches = Batches(recipe, tokenizer)
    warmup = optim.linear_schedule(1e-7, recipe.learning_rate, max(recipe.warmup_steps, 1))
    decay = optim.cosine_decay(recipe.learning_rate, max(recipe.steps - recipe.warmup_steps, 1), 1e-5)
    schedule = optim.join_schedules([warmup, decay], [max(recipe.warmup_steps, 1)])
    optimizer = optim.AdamW(learning_rate=schedule, weight_decay=recipe.weight_decay)
    loss_and_grad = nn.value_and_grad(model, loss_fn)
    state = [model.state, optimizer.state]

    def step(tokens, weights):
        loss, grads = loss_and_grad(model, tokens, weights)
        grads, _ = optim.clip_grad_norm(grads, 1.0)
        optimizer.update(model, grads)
        return loss

    step = mx.compile(step, inputs=state, outputs=state)
    probe = AnswerProbe(tokenizer)
    history = []
    accuracy = math.nan
    bar = tqdm(range(recipe.steps), desc=desc or f"train {recipe.preset}", disable=not progress, mininterval=1.0)
    for i in bar:
        tokens, weights = batches.next(i)
        loss = step(mx.array(tokens), mx.array(weights))
        mx.eval(state, loss)
        history.append(loss.item())
        if (i + 1) % 200 == 0 or i + 1 == recipe.steps:
            accuracy = probe(model)
        if i % 10 == 0:
            bar.set_postfix(loss=f"{sum(history[-10:]) / len(history[-10:]):.3f}", answer_acc=f"{accuracy:.2f}")
    return model, history
