"""Training losses: answer-weighted next-token cross-entropy, and logit distillation (KD).

KD loss = T^2 * KL(softmax(teacher/T) || softmax(student/T)), mixed with the
answer-weighted cross-entropy as alpha * KD + (1 - alpha) * CE.
"""

from __future__ import annotations


def cross_entropy_loss(model, tokens, weights):
    """Next-token cross-entropy, answer tokens weighted by the recipe's `answer_weight`."""
    import mlx.nn as nn

    losses = nn.losses.cross_entropy(model(tokens[:, :-1]), tokens[:, 1:])
    return (losses * weights).sum() / weights.sum()


def kd_loss(teacher, temperature: float, alpha: float):
    """`loss_fn(model, tokens, weights)` mixing KD against `teacher`'s logits with the weighted cross-entropy."""
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
